"""Extractive answers: markers resolve, quotes are exact article spans, weak evidence abstains."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.answering.answer import ABSTENTION, markers, validate_markers
from service.answering.schemas import AskRequest
from tests.conftest import SEED_QUESTION


def test_validate_markers_drops_numbers_that_point_nowhere() -> None:
    text = "One [1]. Two [2][5]. Three [0] and [3]."
    assert validate_markers(text, 2) == "One [1]. Two [2]. Three and."
    assert markers(validate_markers(text, 2)) == [1, 2]
    assert validate_markers("No markers.", 0) == "No markers."


@pytest.fixture(scope="module")
def engine(seed_index: Path, encoder):
    from service.answering.engine import Engine

    return Engine(index_root=seed_index, encoder=encoder)


def check_answer(engine, answer) -> None:
    """Every marker resolves to a returned source, and every quote is the article text at its span."""
    assert set(markers(answer.answer)) <= set(range(1, len(answer.sources) + 1))
    for sentence in answer.sentences:
        assert sentence.citations and all(1 <= n <= len(answer.sources) for n in sentence.citations)
    for source in answer.sources:
        text = engine.index.article_text(source.article_id)
        assert text[source.passage_start : source.passage_end] == source.passage
        for quote in source.quotes:
            assert text[quote.start : quote.end] == quote.text
            assert source.passage_start <= quote.start < quote.end <= source.passage_end


def test_seed_question_is_answered_from_the_seed_article(engine) -> None:
    answer = engine.ask(AskRequest(question=SEED_QUESTION))
    assert not answer.abstained
    check_answer(engine, answer)
    assert "stabbed Armenia in the back" in answer.answer or "ineffective" in answer.answer
    assert answer.sources[0].title.startswith("Armenia and Russia")
    assert 1 <= len(answer.sentences) <= engine.settings.answer_max_sentences


@pytest.mark.parametrize(
    "question",
    ["What is the boiling point of tungsten?", "Who won the 1998 Tour de France?", "Who composed the opera Turandot?"],
)
def test_unanswerable_questions_abstain(engine, question: str) -> None:
    answer = engine.ask(AskRequest(question=question))
    assert answer.abstained
    assert answer.sources == [] and markers(answer.answer) == []
    assert answer.answer.startswith(ABSTENTION)
    assert answer.related  # the closest articles are listed separately


def test_many_questions_keep_spans_exact(engine) -> None:
    for question in [
        "How many Russian peacekeepers were in Nagorno-Karabakh?",
        "What did the Russian Foreign Ministry say?",
        "Who is Daniel R. DePetris?",
        "What happened in the Lachin corridor?",
    ]:
        answer = engine.ask(AskRequest(question=question))
        check_answer(engine, answer)


def test_a_follow_ups_context_can_only_raise_a_passages_coverage(engine) -> None:
    """A short follow-up names little of its topic: with the conversation's earlier question as context, each
    passage's coverage is the higher of the two, and the passages about that topic gain."""
    from datetime import date

    from service.answering.answer import prepare
    from service.answering.schemas import Filters

    question, context = "What did the ministry say?", "How did Russia react to Armenia joining the ICC?"
    candidates, _, vector = engine._retrieve(engine.index, question, 10, Filters(), date(2023, 10, 1), None, context)

    def coverage(with_context: str) -> dict[tuple[str, int], float]:
        _, sentences = prepare(
            engine.index, question, vector, candidates, engine.settings, engine.sentence_cache, context=with_context
        )
        return {(s.article_id, s.start): s.passage_coverage for s in sentences}

    alone, joined = coverage(""), coverage(context)
    assert alone.keys() == joined.keys() and alone
    assert all(joined[k] >= alone[k] for k in alone)
    assert any(joined[k] > alone[k] + 0.1 for k in alone)
