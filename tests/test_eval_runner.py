"""The eval runner: conversation flow and scoring against a scripted backend, then the real engine end to end."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from conftest import SEED_QUESTION

from eval import runner
from eval.questions import QuestionItem, Turn, parse_lines
from service.answering.schemas import (
    Answer,
    AskRequest,
    ChatAnswer,
    ChatRequest,
    Passage,
    Quote,
    ShortAnswer,
    Source,
)

ARTICLE = (
    "Pashinyan said the systems of external security are ineffective. "
    "Moscow said Pashinyan was trying to absolve himself. About 1,900 Russian peacekeepers were there."
)
SUMMARY_KEYS = {
    "n_items",
    "n_turns",
    "hits@1",
    "hits@5",
    "hits@10",
    "mrr@10",
    "answer_accuracy",
    "short_answer_accuracy",
    "short_answer_coverage",
    "citation_validity",
    "citation_support",
    "citation_support_answerable",
    "abstention_precision",
    "abstention_recall",
    "followup_hits@5",
    "standalone_hits@5",
    "latency_p50_ms",
    "latency_p95_ms",
}


def _passage(rank: int, text: str) -> Passage:
    return Passage(rank=rank, chunk_id=rank, article_id="a1", title="t", text=text, start=0, end=0, score=1.0 / rank)


def _answer(
    question: str, sentence: str | None, passages: list[str], as_of: date | None, short: str | None = None
) -> Answer:
    """An answer quoting ``sentence`` of ARTICLE with citation [1], or an abstention when it is None; ``short``:
    the short answer it leads with, a span of ``sentence``."""
    sources, text = [], "The articles do not say."
    if sentence is not None:
        start = ARTICLE.index(sentence)
        quote = Quote(text=sentence, start=start, end=start + len(sentence))
        sources = [
            Source(
                n=1,
                article_id="a1",
                chunk_id=1,
                title="t",
                quotes=[quote],
                passage=sentence,
                passage_start=0,
                passage_end=0,
            )
        ]
        text = f"{sentence} [1]"
    short_answer = None
    if short is not None:
        assert sentence is not None and short in sentence
        start = ARTICLE.index(sentence) + sentence.index(short)
        short_answer = ShortAnswer(
            text=short, source=1, article_id="a1", start=start, end=start + len(short), kind="number"
        )
    return Answer(
        question=question,
        standalone_question=question,
        answer=text,
        short_answer=short_answer,
        sources=sources,
        passages=[_passage(rank, p) for rank, p in enumerate(passages, start=1)],
        abstained=sentence is None,
        as_of=as_of or date.today(),
        index_version="v-test",
    )


FILLER = "Unrelated text about something else."
SCRIPT: dict[str, tuple[str | None, list[str]]] = {
    # question -> (sentence answered with, passages retrieved)
    "What did Pashinyan say?": ("Pashinyan said the systems of external security are ineffective.", [ARTICLE]),
    "How did Moscow respond to him?": (
        "Pashinyan said the systems of external security are ineffective.",
        [FILLER] * 6,
    ),
    "How did Moscow respond to Pashinyan?": (None, [FILLER, ARTICLE]),
    "How many peacekeepers?": ("Pashinyan said the systems of external security are ineffective.", [FILLER, ARTICLE]),
    "What was Armenia's GDP growth?": (None, [FILLER]),
}
PEACEKEEPERS = "About 1,900 Russian peacekeepers were there."
MOSCOW = "Moscow said Pashinyan was trying to absolve himself."
SHORT_SCRIPT: dict[str, tuple[str, str | None]] = {
    # question -> (sentence answered with, short answer it leads with); ARTICLE is the only passage
    "How many Russian peacekeepers were there?": (PEACEKEEPERS, "1,900"),
    "How many peacekeepers were there, roughly?": (PEACEKEEPERS, "900"),  # cut out of "1,900": wrong
    "Who called the security systems ineffective?": (SCRIPT["What did Pashinyan say?"][0], "Pashinyan"),
    "What did Moscow say?": (MOSCOW, None),
}


class ScriptedBackend:
    """Answers from SCRIPT and records every request, as the real backends would receive them."""

    target = "scripted"

    def __init__(self) -> None:
        self.requests: list[AskRequest] = []

    def ask(self, request: AskRequest) -> Answer:
        self.requests.append(request)
        if request.question == "boom":
            raise RuntimeError("engine exploded")
        if request.question in SHORT_SCRIPT:
            sentence, short = SHORT_SCRIPT[request.question]
            return _answer(request.question, sentence, [ARTICLE], request.as_of, short)
        sentence, passages = SCRIPT[request.question]
        return _answer(request.question, sentence, passages, request.as_of)

    def chat(self, request: ChatRequest) -> ChatAnswer:
        answer = self.ask(request)
        turn = sum(isinstance(r, ChatRequest) and r.conversation_id == request.conversation_id for r in self.requests)
        return ChatAnswer(**answer.model_dump(), conversation_id=request.conversation_id or "conv-0001", turn=turn)

    def article_text(self, article_id: str) -> str | None:
        return ARTICLE if article_id == "a1" else None

    def close(self) -> None:
        pass


ITEMS = [
    QuestionItem(
        id="conv",
        date=date(2023, 10, 1),
        turns=[
            Turn(
                question="What did Pashinyan say?",
                evidence=["external security are ineffective"],
                answer_any=["ineffective"],
            ),
            Turn(
                question="How did Moscow respond to him?",
                evidence=["trying to absolve himself"],
                answer_any=["absolve"],
                standalone="How did Moscow respond to Pashinyan?",
            ),
        ],
    ),
    QuestionItem(id="peace", turns=[Turn(question="How many peacekeepers?", evidence=["1,900"], answer_any=["1,900"])]),
    QuestionItem(id="gdp", unanswerable=True, turns=[Turn(question="What was Armenia's GDP growth?")]),
]


def test_a_conversation_is_asked_as_a_user_would() -> None:
    backend = ScriptedBackend()
    record = runner.run_item(ITEMS[0], backend, k=10)
    chats = [r for r in backend.requests if isinstance(r, ChatRequest)]
    asks = [r for r in backend.requests if not isinstance(r, ChatRequest)]
    assert [r.conversation_id for r in chats] == [None, "conv-0001"]  # one conversation, started by the first turn
    assert [r.question for r in asks] == ["How did Moscow respond to Pashinyan?"]  # the standalone form, fresh
    assert all(r.as_of == date(2023, 10, 1) and r.k == 10 for r in backend.requests)
    assert record.conversation_id == "conv-0001"
    first, second = record.turns
    assert first.first_hit_rank == 1 and first.answer_correct and first.citation_valid and first.failure is None
    assert second.first_hit_rank is None and second.hit_at_5 == 0.0 and second.answer_correct is False
    assert second.failure == "retrieval"  # a wrong answer, and no retrieved passage held the evidence
    assert second.standalone is not None and second.standalone.first_hit_rank == 2
    assert second.standalone.hit_at_5 == 1.0
    assert first.latency_ms is not None and first.latency_ms >= 0


def test_failures_are_labelled() -> None:
    backend = ScriptedBackend()
    (turn,) = runner.run_item(ITEMS[1], backend, k=10).turns
    assert type(backend.requests[0]) is AskRequest  # a one-turn item goes through ask
    assert turn.first_hit_rank == 2 and turn.hit_at_1 == 0.0 and turn.hit_at_5 == 1.0 and turn.reciprocal_rank == 0.5
    assert turn.answer_correct is False and turn.citation_valid is True and turn.citation_support == 0.0
    assert turn.failure == "answer selection"  # the evidence was retrieved, the wrong sentence was chosen
    gdp = runner.run_item(ITEMS[2], backend, k=10).turns[0]
    assert gdp.abstained and gdp.answer_correct and gdp.failure is None and gdp.hit_at_1 is None


def test_an_exception_is_recorded_and_the_conversation_stops() -> None:
    item = QuestionItem(
        id="x",
        turns=[Turn(question="boom", answer_any=["a"]), Turn(question="What did Pashinyan say?", answer_any=["b"])],
    )
    record = runner.run_item(item, ScriptedBackend(), k=10)
    assert [t.failure for t in record.turns] == ["error", "error"]
    assert "engine exploded" in (record.turns[0].error or "")
    assert record.turns[1].error == "not asked: turn 1 failed"
    assert record.turns[0].hit_at_5 == 0.0 and record.turns[0].answer_correct is False


def test_summary_figures_on_a_scripted_run(tmp_path: Path) -> None:
    report = runner.evaluate(ITEMS, ScriptedBackend(), k=10, progress=False)
    s = report.summary.model_dump(by_alias=True)
    assert set(s) >= SUMMARY_KEYS
    assert s["n_items"] == 3 and s["n_turns"] == 4 and s["n_errors"] == 0 and s["n_abstained"] == 1
    # answerable turns' first-hit ranks: 1 and None (the conversation), 2 (the peacekeepers)
    assert s["hits@1"] == pytest.approx(1 / 3, abs=1e-4)
    assert s["hits@5"] == s["hits@10"] == pytest.approx(2 / 3, abs=1e-4)
    assert s["mrr@10"] == 0.5
    assert s["followup_hits@5"] == 0.0 and s["standalone_hits@5"] == 1.0
    assert s["abstention_precision"] == 1.0 and s["abstention_recall"] == 1.0
    assert s["citation_validity"] == 1.0  # every answer's quotes are the article text at their spans
    assert s["citation_support"] == s["citation_support_answerable"] == pytest.approx(1 / 3, abs=1e-4)
    assert s["answer_support"] == pytest.approx(1 / 3, abs=1e-4)
    assert s["answer_accuracy"] == 0.5  # the first turn and the abstention right, the other two wrong
    assert set(s["groups"]) == {"answerable", "unanswerable", "followup"}
    assert s["groups"]["unanswerable"]["n_turns"] == 1 and s["groups"]["unanswerable"]["hits@5"] is None
    assert s["groups"]["followup"]["n_turns"] == 1 and s["groups"]["followup"]["n_items"] == 1
    assert report.hits_curve[0] == s["hits@1"] and len(report.hits_curve) == 10

    runner.write_report(report, tmp_path)
    data = json.loads((tmp_path / runner.REPORT_JSON).read_text())
    assert runner.Report.model_validate(data).summary.n_turns == 4
    markdown = (tmp_path / runner.REPORT_MD).read_text()
    assert "| hits@5 |" in markdown and "retrieval" in markdown and "answer selection" in markdown
    assert (tmp_path / runner.REPORT_PNG).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


SHORT_ITEMS = [
    QuestionItem(
        id="short-right",
        turns=[Turn(question="How many Russian peacekeepers were there?", answer_any=["1,900"])],
    ),
    QuestionItem(
        id="short-wrong",
        turns=[Turn(question="How many peacekeepers were there, roughly?", answer_any=["1,900"])],
    ),
    QuestionItem(
        id="short-only",  # the answer lacks the full name, its short answer is a whole word of it
        turns=[Turn(question="Who called the security systems ineffective?", answer_any=["Nikol Pashinyan"])],
    ),
    QuestionItem(id="no-short", turns=[Turn(question="What did Moscow say?", answer_any=["absolve"])]),
]


def test_the_short_answer_is_scored_apart_from_the_answer(tmp_path: Path) -> None:
    from eval.cli import format_summary

    report = runner.evaluate(ITEMS + SHORT_ITEMS, ScriptedBackend(), k=10, progress=False)
    turns = {item.id: item.turns[0] for item in report.items}
    right, wrong, only, none = (turns[i] for i in ("short-right", "short-wrong", "short-only", "no-short"))
    assert (right.short_answer, right.answer_correct, right.short_answer_correct) == ("1,900", True, True)
    assert (wrong.short_answer, wrong.answer_correct, wrong.short_answer_correct) == ("900", True, False)
    assert (only.short_answer, only.answer_correct, only.short_answer_correct) == ("Pashinyan", False, True)
    assert (none.short_answer, none.answer_correct, none.short_answer_correct) == (None, True, None)
    assert turns["gdp"].short_answer_correct is None and turns["gdp"].answer_correct is True
    s = report.summary
    assert s.short_answer_accuracy == pytest.approx(2 / 3, abs=1e-4)  # right, wrong, right; the rest not judged
    # right answers to answerable questions: the conversation's first turn, short-right, short-wrong and no-short;
    # two of them led with a short answer (the right abstention on GDP does not count)
    assert s.short_answer_coverage == 0.5
    assert s.groups["answerable"].short_answer_coverage == 0.5
    assert s.groups["unanswerable"].short_answer_accuracy is None
    assert s.groups["unanswerable"].short_answer_coverage is None

    runner.write_report(report, tmp_path)
    data = json.loads((tmp_path / runner.REPORT_JSON).read_text())
    assert data["summary"]["short_answer_accuracy"] == s.short_answer_accuracy
    assert data["summary"]["short_answer_coverage"] == 0.5
    saved = {item["id"]: item["turns"][0] for item in data["items"]}
    assert saved["short-wrong"]["short_answer"] == "900" and saved["short-wrong"]["short_answer_correct"] is False
    lines = format_summary(data["summary"]).splitlines()
    keys = [line.split()[0] for line in lines]
    assert keys.index("short_answer_accuracy") == keys.index("answer_accuracy") + 1  # printed next to it
    assert lines[keys.index("short_answer_coverage")].split()[1:] == ["0.500"]


# ------------------------------------------------------------------------------------------ end to end

E2E_QUESTIONS = [
    {
        "id": "why-failed",
        "turns": [
            {
                "question": SEED_QUESTION,
                "evidence": ["Russia stabbed Armenia in the back"],
                "answer_any": ["stabbed", "ineffective"],
            }
        ],
        "date": "2023-10-01",
    },
    {
        "id": "peacekeepers",
        "turns": [
            {
                "question": "How many Russian peacekeepers policed the 2020 ceasefire in Nagorno-Karabakh?",
                "evidence": ["approximately 1,900 Russian peacekeepers"],
                "answer_any": ["1,900"],
            },
            {
                "question": "What happened to them last week?",
                "evidence": ["Azeri forces pushed aside the Russian peacekeepers"],
                "answer_any": ["pushed aside"],
                "standalone": "What happened to the Russian peacekeepers in Nagorno-Karabakh last week?",
            },
        ],
        "date": "2023-10-01",
    },
    {
        "id": "gdp",
        "turns": [{"question": "What was Armenia's GDP growth in 2022?"}],
        "unanswerable": True,
        "date": "2023-10-01",
    },
]


def test_runner_in_process_on_the_seed_index(seed_index: Path, encoder, tmp_path: Path) -> None:
    questions = tmp_path / "three.jsonl"
    questions.write_text("\n".join(json.dumps(item) for item in E2E_QUESTIONS) + "\n")
    assert len(parse_lines(questions.read_text().splitlines())) == 3
    out = tmp_path / "report"
    report = runner.run_eval(questions, out, index_root=seed_index, k=10, encoder=encoder, progress=False)

    data = json.loads((out / runner.REPORT_JSON).read_text())
    assert set(data["summary"]) >= SUMMARY_KEYS
    assert set(data["summary"]["groups"]) == {"answerable", "unanswerable", "followup"}
    assert data["summary"]["n_items"] == 3 and data["summary"]["n_turns"] == 4
    assert data["summary"]["n_errors"] == 0, [t["error"] for i in data["items"] for t in i["turns"]]
    assert [item["id"] for item in data["items"]] == ["why-failed", "peacekeepers", "gdp"]
    for key in ("hits@1", "hits@10", "mrr@10", "citation_validity", "latency_p50_ms"):
        assert data["summary"][key] is not None, key
    assert 0 <= data["summary"]["hits@10"] <= 1
    conversation = data["items"][1]
    assert conversation["conversation_id"] and conversation["turns"][1]["standalone"]["question"].startswith("What")
    first = data["items"][0]["turns"][0]
    assert first["answer"] and first["passages"] and "citation_valid" in first
    assert report.summary.citation_validity == 1.0  # the engine's quotes are the article text at their spans
    peacekeepers = conversation["turns"][0]  # a number question: the answer leads with the number
    assert "1,900" in peacekeepers["short_answer"] and peacekeepers["short_answer_correct"] is True
    assert (out / runner.REPORT_MD).read_text().startswith("# Byline evaluation")
    assert (out / runner.REPORT_PNG).stat().st_size > 1000


def test_runner_over_http_gives_the_same_answers(seed_index: Path, encoder, tmp_path: Path) -> None:
    """--url mode through the real app (public API only) agrees with the in-process run, turn by turn."""
    from fastapi.testclient import TestClient

    from service.answering.engine import Engine
    from service.web.api import create_app

    items = parse_lines([json.dumps(item) for item in E2E_QUESTIONS])
    local = runner.InProcessBackend(seed_index, encoder=encoder)
    try:
        in_process = runner.evaluate(items, local, k=10, progress=False)
    finally:
        local.close()
    app = create_app(engine=Engine(index_root=seed_index, encoder=encoder))
    with TestClient(app) as client:
        over_http = runner.evaluate(
            items, runner.HttpBackend("http://testserver", client=client), k=10, mode="http", progress=False
        )
    assert over_http.summary.n_errors == 0
    assert over_http.summary.citation_validity == 1.0  # quotes checked against GET /v1/articles/{id}
    pairs = zip(in_process.items, over_http.items, strict=True)
    for a, b in pairs:
        assert (a.conversation_id is None) == (b.conversation_id is None)
        for x, y in zip(a.turns, b.turns, strict=True):
            assert (x.answer, x.first_hit_rank, x.searched) == (y.answer, y.first_hit_rank, y.searched)
            assert (x.short_answer, x.short_answer_correct) == (y.short_answer, y.short_answer_correct)
    assert any(turn.short_answer for item in over_http.items for turn in item.turns)  # read from the JSON
    assert over_http.summary.short_answer_accuracy == in_process.summary.short_answer_accuracy
    assert over_http.summary.short_answer_coverage == in_process.summary.short_answer_coverage
