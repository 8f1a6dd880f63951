"""The question-file format, and the seed question set written from the seed article."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from conftest import REALTIMEQA, SEED_FILE, SEED_QUESTION, need

from eval.questions import QuestionFileError, load_questions, parse_lines

SEED_QUESTIONS = Path(__file__).resolve().parents[1] / "eval" / "questions" / "seed.jsonl"


def line(**item: object) -> str:
    return json.dumps(item)


# ---------------------------------------------------------------------------------------------- format


def test_own_format_parses() -> None:
    items = parse_lines(
        [
            line(
                id="a",
                turns=[
                    {"question": "Who?", "evidence": ["Pashinyan said"], "answer_any": ["Pashinyan"]},
                    {"question": "And then?", "answer_any": ["x"], "standalone": "What did Pashinyan do then?"},
                ],
                date="2023-10-01",
            ),
            "",
            line(id="b", turns=[{"question": "GDP?"}], unanswerable=True),
        ]
    )
    assert [item.id for item in items] == ["a", "b"]
    first, second = items
    assert first.is_conversation and first.date == date(2023, 10, 1) and not first.unanswerable
    assert first.turns[0].evidence == ["Pashinyan said"] and first.turns[0].answer_any == ["Pashinyan"]
    assert first.turns[1].evidence == [] and first.turns[1].standalone == "What did Pashinyan do then?"
    assert second.unanswerable and second.date is None and second.turns[0].answer_any == []


def test_news_quiz_format_parses_as_one_turn() -> None:
    quiz = line(
        id="20230929_11",
        date="2023-09-28",
        question="Where did the second Republican presidential debate take place?",
        answer="California",
        choices=["Iowa", "Maine", "California", "Ohio"],
        explanation="...",
        search_result_urls=[],
        answer_in_search_results=True,
        articles_containing_answer=3,
    )
    (item,) = parse_lines([quiz])
    assert item.id == "20230929_11" and item.date == date(2023, 9, 28) and not item.unanswerable
    (turn,) = item.turns
    assert turn.question.startswith("Where did the second")
    assert turn.answer_any == ["California"] and turn.evidence == [] and turn.standalone is None


def test_shared_news_quiz_file_loads() -> None:
    items = load_questions(need(REALTIMEQA))
    assert len(items) == 123
    assert all(len(item.turns) == 1 and item.turns[0].answer_any and item.date for item in items)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("{not json", "not valid JSON"),
        (line(id="x", turns=[]), "turns"),
        (line(id="x", turns=[{"question": ""}]), "turns.0.question"),
        (line(id="x", turns=[{"question": "q", "answer_any": [" "]}]), "empty string"),
        (line(id="x", turns=[{"question": "q", "evidnce": ["typo"]}]), "evidnce"),
        (line(id="x", turns=[{"question": "q"}], date="2023-13-01"), "date"),
        (line(id="x", turns=[{"question": "q", "answer_any": ["a"]}], unanswerable=True), "unanswerable item"),
        (line(id="x", question="q"), "answer"),
        ("[1, 2]", "not a question item"),
    ],
)
def test_a_bad_line_is_named_with_its_number(bad: str, message: str) -> None:
    good = line(id="ok", turns=[{"question": "q"}])
    with pytest.raises(QuestionFileError) as raised:
        parse_lines([good, "", bad], source="q.jsonl")
    assert str(raised.value).startswith("q.jsonl:3: ")
    assert message in str(raised.value)


def test_duplicate_ids_are_refused() -> None:
    item = line(id="same", turns=[{"question": "q"}])
    with pytest.raises(QuestionFileError, match=r"q.jsonl:2: duplicate id 'same' \(first on line 1\)"):
        parse_lines([item, item], source="q.jsonl")


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(QuestionFileError, match="cannot read"):
        load_questions(tmp_path / "nope.jsonl")


# ------------------------------------------------------------------------------------------------ seed


def test_seed_questions_have_the_required_shape() -> None:
    items = load_questions(SEED_QUESTIONS)
    assert len(items) >= 30
    conversations = [item for item in items if item.is_conversation]
    assert len(conversations) >= 8
    assert all(2 <= len(item.turns) <= 3 for item in conversations)
    assert all(turn.standalone for item in conversations for turn in item.turns[1:])
    unanswerable = [item for item in items if item.unanswerable]
    assert len(unanswerable) >= 6
    answerable_turns = [turn for item in items if not item.unanswerable for turn in item.turns]
    assert all(turn.evidence and turn.answer_any for turn in answerable_turns)
    assert all(item.date == date(2023, 10, 1) for item in items)
    assert any(turn.question == SEED_QUESTION for item in items for turn in item.turns)


def test_seed_evidence_is_exact_article_text() -> None:
    from ingest.cleaner import clean

    raw = need(SEED_FILE).read_text(encoding="utf-8")
    cleaned = clean(raw.split("\n", 1)[1]).text  # the first line is the title
    missing = []
    for item in load_questions(SEED_QUESTIONS):
        for turn in item.turns:
            missing += [(item.id, e) for e in turn.evidence if e not in cleaned or e not in raw]
            if turn.answer_any:  # a right answer quoting the article can contain an expected string
                assert any(a.casefold() in cleaned.casefold() for a in turn.answer_any), (item.id, turn.answer_any)
    assert not missing
