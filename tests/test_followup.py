"""Follow-up resolution on hand-written conversations: deterministic, no language model."""

from __future__ import annotations

from datetime import date

import pytest

from service.answering.followup import FollowupResolver, HistoryTurn, Resolution, entities, resolve_followup
from service.answering.schemas import Answer, Quote, Source

SEED_QUESTION = "Why does Pashinyan say Russia failed Armenia?"
SEED_QUOTES = (
    "Armenian Prime Minister Nikol Pashinyan said the Russian peacekeepers in Nagorno-Karabakh had failed.",
    "Moscow has rejected the criticism.",
)


def seed_turn(cited: tuple[str, ...] = ("armenia-russia",)) -> HistoryTurn:
    return HistoryTurn(
        question=SEED_QUESTION,
        standalone=SEED_QUESTION,
        answer_text="In his assessment, Russia stabbed Armenia in the back. [1]",
        quotes=SEED_QUOTES,
        cited_article_ids=cited,
    )


def resolve(question: str, *history: HistoryTurn) -> str:
    return resolve_followup(question, list(history)).standalone


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("How did Moscow respond to him?", "How did Moscow respond to Pashinyan?"),
        ("What did he say next?", "What did Pashinyan say next?"),
        ("Did he say that Russia lied?", "Did Pashinyan say that Russia lied?"),
        ("What did his government do?", "What did Pashinyan's government do?"),
        ("Why?", SEED_QUESTION),
    ],
)
def test_person_pronouns_and_bare_question_words(question: str, expected: str) -> None:
    assert resolve(question, seed_turn()) == expected


def test_ellipsis_carries_the_topics_of_the_previous_turn() -> None:
    standalone = resolve("And the peacekeepers?", seed_turn())
    assert standalone.startswith("What about the peacekeepers")
    for name in ("Pashinyan", "Russia", "Armenia"):
        assert name in standalone


@pytest.mark.parametrize("question", ["What happened next?", "Tell me more.", "Is that true?", "What about Turkey?"])
def test_continuations_without_a_topic_are_augmented(question: str) -> None:
    standalone = resolve(question, seed_turn())
    assert standalone != question
    assert "Pashinyan" in standalone


@pytest.mark.parametrize(
    "question",
    [
        "What is the Lachin corridor?",
        "Who is Ilham Aliyev?",
        "How did the Kremlin react to the ceasefire?",
        "How much will the Riverside Avenue bike lanes cost?",
    ],
)
def test_self_contained_questions_are_unchanged(question: str) -> None:
    resolution = resolve_followup(question, [seed_turn()])
    assert resolution.standalone == question
    assert resolution.method == "unchanged"
    assert not resolution.changed


def test_no_history_means_no_change() -> None:
    resolution = resolve_followup("How did Moscow respond to him?", [])
    assert resolution == Resolution(standalone="How did Moscow respond to him?")


def test_it_and_they_take_the_one_noun_phrase_they_can_mean() -> None:
    corridor = HistoryTurn(question="What is the Lachin corridor?")
    assert resolve("When was it blockaded?", corridor) == "When was the Lachin corridor blockaded?"
    assert resolve("Who controls it?", corridor) == "Who controls the Lachin corridor?"
    peacekeepers = HistoryTurn(
        question="And the peacekeepers?", standalone="What about the peacekeepers (Pashinyan, Russia, Armenia)?"
    )
    standalone = resolve("What did they do?", seed_turn(), peacekeepers)
    assert standalone.startswith("What did the peacekeepers do")
    assert "Pashinyan" in standalone  # the named context stays with a common noun phrase


def test_he_reaches_back_past_a_turn_about_something_else() -> None:
    moscow = HistoryTurn(
        question="How did Moscow respond to him?",
        standalone="How did Moscow respond to Pashinyan?",
        quotes=("Vladimir Putin meets with Nikol Pashinyan", "Moscow hit back immediately, saying Pashinyan erred."),
    )
    peacekeepers = HistoryTurn(
        question="And the peacekeepers?",
        standalone="What about the peacekeepers (Pashinyan, Moscow, Armenia, Russia)?",
    )
    assert resolve("What did he say next?", seed_turn(), moscow, peacekeepers) == "What did Pashinyan say next?"
    assert resolve("Did Putin call him?", seed_turn(), moscow) == "Did Putin call Pashinyan?"


def test_titled_full_names_from_the_question_are_people() -> None:
    turn = HistoryTurn(question="What did President Joe Biden announce about Gaza?")
    assert resolve("Why did he do it?", turn).startswith("Why did Joe Biden do")


def test_prefer_articles_are_the_recent_citations_newest_first() -> None:
    older = seed_turn(("a1", "a2"))
    newer = HistoryTurn(question="And the peacekeepers?", cited_article_ids=("a3", "a1"))
    resolution = resolve_followup("What did he say next?", [older, newer])
    assert resolution.prefer_articles == ["a3", "a1", "a2"]
    # also for a self-contained question in the same conversation (a preference, not a filter)
    assert resolve_followup("Who is Ilham Aliyev?", [older]).prefer_articles == ["a1", "a2"]


def test_resolution_is_deterministic() -> None:
    history = [seed_turn()]
    first = resolve_followup("And the peacekeepers?", history)
    assert all(resolve_followup("And the peacekeepers?", history) == first for _ in range(5))


def test_entities_strip_titles_demonyms_and_question_words() -> None:
    names = [e.text for e in entities("Why does Armenian Prime Minister Nikol Pashinyan say Russia's ties failed?")]
    assert names == ["Nikol Pashinyan", "Russia"]
    assert [e.text for e in entities("What did the Bank of England say?")] == ["Bank of England"]


def test_history_turn_from_an_answer() -> None:
    answer = Answer(
        question="How did Moscow respond to him?",
        standalone_question="How did Moscow respond to Pashinyan?",
        answer="Moscow hit back. [1]",
        sources=[
            Source(
                n=1,
                article_id="seed",
                chunk_id=3,
                title="Armenia and Russia",
                quotes=[Quote(text="Moscow hit back.", start=10, end=26)],
                passage="Moscow hit back.",
                passage_start=10,
                passage_end=26,
            )
        ],
        as_of=date(2023, 10, 1),
        index_version="v1",
    )
    turn = HistoryTurn.from_answer(answer.question, answer)
    assert turn.searched == "How did Moscow respond to Pashinyan?"
    assert turn.quotes == ("Moscow hit back.",)
    assert turn.cited_article_ids == ("seed",)


def test_rewriter_hook_overrides_and_falls_back() -> None:
    history = [seed_turn()]
    seen: list[Resolution] = []

    def rewriter(question: str, turns: object, rules: Resolution) -> str | None:
        seen.append(rules)
        return "How did the Kremlin answer Nikol Pashinyan?"

    resolution = FollowupResolver(rewriter=rewriter).resolve("How did Moscow respond to him?", history)
    assert resolution.standalone == "How did the Kremlin answer Nikol Pashinyan?"
    assert resolution.method == "llm"
    assert seen[0].standalone == "How did Moscow respond to Pashinyan?"

    def broken(question: str, turns: object, rules: Resolution) -> str | None:
        raise TimeoutError("model server down")

    fallback = FollowupResolver(rewriter=broken).resolve("How did Moscow respond to him?", history)
    assert fallback.standalone == "How did Moscow respond to Pashinyan?"
    assert fallback.method == "rules"
