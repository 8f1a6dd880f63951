"""Follow-up resolution (spaCy tagger and entities, no language model) on hand-written conversation turns."""

from __future__ import annotations

from datetime import date

import pytest

from service.answering.followup import FollowupResolver, HistoryTurn, Resolution, resolve_followup
from service.answering.schemas import Answer, Quote, ShortAnswer, Source


def turn(question: str, *, short: str = "", quotes: tuple[str, ...] = (), cited: tuple[str, ...] = ()) -> HistoryTurn:
    return HistoryTurn(
        question=question, standalone=question, short_answer=short, quotes=quotes, cited_article_ids=cited
    )


RUBIO = turn("How many days did NASA astronaut Frank Rubio spend in space on his record mission?", cited=("rubio",))
BUTLER = turn(
    "Who did Gavin Newsom appoint to fill Dianne Feinstein's Senate seat?",
    short="Laphonza Butler",
    quotes=("Gov. Gavin Newsom named Laphonza Butler to fill the seat of the late Dianne Feinstein.",),
)
OSCARS = turn("Who will host the 96th Academy Awards?", short="Jimmy Kimmel")
RITE_AID = turn("Why did Rite Aid file for bankruptcy?")
MCCARTHY = turn("How many Democrats voted to remove Kevin McCarthy as speaker?")
KIPTUM = turn("What was Kelvin Kiptum's time at the 2023 Chicago Marathon?")
TIANGONG = turn("Which spacecraft carried three Chinese astronauts to the Tiangong space station in November 2022?")
SAG = turn("How long did the SAG-AFTRA actors strike last?", cited=("sag-1", "sag-2"))


def resolve(question: str, *history: HistoryTurn) -> Resolution:
    return resolve_followup(question, list(history))


@pytest.mark.parametrize(
    ("history", "question", "expected"),
    [
        (RUBIO, "How old is he?", "How old is Frank Rubio?"),
        (RUBIO, "Why did his mission last so long?", "Why did Frank Rubio's mission last so long?"),
        (BUTLER, "How old is she?", "How old is Laphonza Butler?"),  # a "Who ...?" turn: the person answered
        (OSCARS, "When does it air?", "When does the 96th Academy Awards air?"),
        (RITE_AID, "How much debt did they have in June?", "How much debt did Rite Aid have in June?"),
        (MCCARTHY, "And how many Republicans?", "How many Republicans voted to remove Kevin McCarthy as speaker?"),
        (turn("How did Moscow respond to Pashinyan?"), "Why?", "Why did Moscow respond to Pashinyan?"),
        (
            TIANGONG,
            "How long is the station expected to last?",
            "How long is the Tiangong space station expected to last?",
        ),
    ],
)
def test_references_become_readable_questions(history: HistoryTurn, question: str, expected: str) -> None:
    resolution = resolve(question, history)
    assert resolution.standalone == expected
    assert resolution.method == "resolved" and resolution.changed


def test_every_follow_up_carries_the_recent_questions_and_cited_articles_for_the_reader() -> None:
    resolution = resolve("How old is he?", RUBIO)
    assert resolution.context == "" and resolution.prefer_articles == []  # sure: the search is the question's
    assert resolution.conversation == RUBIO.question and resolution.cited == ["rubio"]


def test_a_person_read_from_an_answer_is_named_as_assumed() -> None:
    assert resolve("How old is she?", BUTLER).assumed == "Laphonza Butler"
    assert resolve("How old is he?", RUBIO).assumed is None  # the user named him: nothing assumed


def test_a_who_question_without_an_answer_does_not_pick_a_person_from_its_own_words() -> None:
    unanswered = turn(BUTLER.question)
    resolution = resolve("How old is she?", unanswered)
    assert resolution.standalone.startswith("How old is she, regarding") and resolution.assumed


def test_a_class_noun_becomes_the_organisation_or_place_an_earlier_turn_named_and_says_so() -> None:
    resolution = resolve("Who is the union's president?", SAG)
    assert resolution.standalone == "Who is SAG-AFTRA's president?"
    assert resolution.assumed == "SAG-AFTRA" and resolution.context  # assumed: the history joins the search
    malang = turn("How many people died in the stadium crush at the soccer match in Malang, Indonesia?")
    assert resolve("What did the country's president order afterwards?", malang).standalone == (
        "What did Indonesia's president order afterwards?"  # of "Malang, Indonesia", the country
    )
    assert resolve("Who is the club's manager?", malang).standalone.endswith(", regarding Malang and Indonesia?")
    fined = turn("How big was the civil penalty the CFPB ordered Wells Fargo to pay?")
    assert resolve("What did the agency's director call the bank?", fined).standalone == (
        "What did CFPB's director call Wells Fargo?"  # two class nouns, two organisations
    )


def test_a_follow_up_that_names_nothing_says_which_subject_it_assumed() -> None:
    ellipsis = resolve("And the previous world record?", KIPTUM)
    subject = "Kelvin Kiptum and the 2023 Chicago Marathon"
    assert ellipsis.standalone == f"What about the previous world record, regarding {subject}?"
    assert ellipsis.assumed == subject


def test_the_earlier_questions_go_to_retrieval_and_cited_articles_are_preferred() -> None:
    resolution = resolve("Who is the union's president?", RUBIO, SAG)
    assert resolution.context == f"{RUBIO.question} {SAG.question}"
    assert resolution.prefer_articles == ["sag-1", "sag-2", "rubio"]


@pytest.mark.parametrize(
    ("history", "question"),
    [
        (SAG, "How many races in a row did Max Verstappen win to set the Formula One record?"),
        (RUBIO, "Where was the winning ticket for the $1.73 billion Powerball jackpot sold?"),
        (OSCARS, "Who is Israel's new national security minister?"),
    ],
)
def test_a_topic_switch_inherits_nothing(history: HistoryTurn, question: str) -> None:
    resolution = resolve(question, history)
    assert resolution.method == "switch"
    assert (resolution.standalone, resolution.context, resolution.prefer_articles) == (question, "", [])
    assert resolution.assumed is None and resolution.conversation == "" and resolution.cited == []


def test_they_can_be_a_plural_subject_without_a_determiner_but_not_an_object() -> None:
    fusion = turn("Where did US scientists achieve a net energy gain from nuclear fusion?")
    assert resolve("How do they do it?", fusion).standalone == "How do US scientists do it?"
    signs = turn("Which protest group put up fake jellyfish warning signs on Mallorca beaches?")
    assert "signs" not in resolve("Why did they do it?", signs).standalone


def test_a_name_from_the_conversation_is_not_a_switch() -> None:
    alaska = turn("How much will Alaska Airlines pay to acquire Hawaiian Airlines?")
    resolution = resolve("Who is Hawaiian's CEO?", alaska)
    assert resolution.method != "switch" and resolution.standalone == "Who is Hawaiian's CEO?"
    # sure of itself (no context in the search), yet the reader's coverage counts the conversation
    assert resolution.context == "" and resolution.conversation == alaska.question


def test_no_history_and_no_brackets() -> None:
    assert resolve("How old is he?") == Resolution(standalone="How old is he?")
    for history, question in [(SAG, "And what about their contract?"), (KIPTUM, "Why?"), (RITE_AID, "Tell me more.")]:
        assert "(" not in resolve(question, history).standalone


def test_resolution_is_deterministic() -> None:
    first = resolve("Why did they turn on him?", MCCARTHY, turn("And how many Republicans?"))
    assert all(
        resolve("Why did they turn on him?", MCCARTHY, turn("And how many Republicans?")) == first for _ in range(3)
    )


def test_history_turn_from_an_answer() -> None:
    answer = Answer(
        question="How old is she?",
        standalone_question="How old is Laphonza Butler?",
        answer="Butler is 44. [1]",
        short_answer=ShortAnswer(text="44", source=1, article_id="seed", start=10, end=12, kind="number"),
        sources=[
            Source(
                n=1,
                article_id="seed",
                chunk_id=3,
                title="Newsom picks Butler",
                quotes=[Quote(text="Butler is 44.", start=0, end=13)],
                passage="Butler is 44.",
                passage_start=0,
                passage_end=13,
            )
        ],
        as_of=date(2023, 10, 1),
        index_version="v1",
    )
    history_turn = HistoryTurn.from_answer(answer.question, answer)
    assert history_turn.searched == "How old is Laphonza Butler?"
    assert history_turn.quotes == ("Butler is 44.",) and history_turn.short_answer == "44"
    assert history_turn.cited_article_ids == ("seed",)


def test_rewriter_hook_overrides_and_falls_back() -> None:
    seen: list[Resolution] = []

    def rewriter(question: str, turns: object, resolved: Resolution) -> str | None:
        seen.append(resolved)
        return "How old is the astronaut Frank Rubio?"

    resolution = FollowupResolver(rewriter=rewriter).resolve("How old is he?", [RUBIO])
    assert resolution.standalone == "How old is the astronaut Frank Rubio?" and resolution.method == "llm"
    assert seen[0].standalone == "How old is Frank Rubio?" and resolution.context == ""  # sure: no context

    def broken(question: str, turns: object, resolved: Resolution) -> str | None:
        raise TimeoutError("model server down")

    fallback = FollowupResolver(rewriter=broken).resolve("How old is he?", [RUBIO])
    assert fallback.standalone == "How old is Frank Rubio?" and fallback.method == "resolved"
    switch = FollowupResolver(rewriter=rewriter).resolve("Who is Israel's new national security minister?", [RUBIO])
    assert switch.method == "switch"  # a switch is never handed to the rewriter


def test_an_llm_rewrite_must_keep_the_question_and_add_only_names_from_the_history() -> None:
    from index.settings import Settings
    from service.answering.followup_llm import acceptable, make_rewriter

    history = [turn("Who won the 2023 Nobel Prize in Literature?", short="Jon Fosse")]
    assert acceptable("How old is he?", "How old is Jon Fosse?", history)
    assert not acceptable("How old is he?", "How old is the Norwegian writer Jon Fosse?", history)  # new words
    assert not acceptable("How old is he?", "What age is Jon Fosse?", history)  # dropped the user's words
    assert not acceptable("How old is he?", "", history)
    assert not acceptable("How old is he?", "How old is he?", history)  # an echo adds nothing
    assert make_rewriter(Settings()) is None  # opt-in: BYLINE_FOLLOWUP_REWRITER=llm


def test_the_resolver_errors_seen_on_the_chat_page() -> None:
    """The cases of issue 13, each of which the rule resolver got wrong."""
    station = resolve("How long is it expected to last?", TIANGONG)
    assert station.standalone == "How long is the Tiangong space station expected to last?"
    drescher = turn("Who is the president of SAG-AFTRA?", short="Fran Drescher")
    assert resolve("What did she say about the studios?", SAG, drescher).standalone == (
        "What did Fran Drescher say about the studios?"
    )
    assert "SAG-AFTRA" in resolve("Who is the union's president?", SAG).standalone
    soccer = turn("Why did the Canadian women's soccer team protest before the SheBelieves Cup?")
    assert "do it" in resolve("Why did they do it?", soccer).standalone  # an action, never "do <a name>"
