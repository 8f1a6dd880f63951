"""The llm reader against the feature reader on the same turns: ``python -m bench.llm_reader``.

Deterministic sample (first N, no randomness): from ``eval/questions/news.jsonl`` the first ``--news-answerable``
answerable turns (standalone forms of follow-ups) and the first ``--news-unanswerable`` unanswerable ones; from
``../shared/eval/realtimeqa-dev.jsonl`` the first ``--realtimeqa`` items. Retrieval and candidate sentences are
computed once per turn (as ``eval.reader_study`` does), then each reader re-scores the same candidates.

Prints, per file and reader: accuracy (an answer holding an expected string, or an abstention on an unanswerable
turn), answered precision, abstention recall on unanswerable turns, answerable turns abstained on, and latency
per question p50/p95: the model call alone, the reader alone, and the total (retrieval + candidates + reader).
For the llm reader also how often it said "none", how often its span was verified, and how often the verified
span holds an expected string. Index: ``data/news-index2`` if it has a ``CURRENT`` file, else ``data/news-index``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import pickle
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from eval.metrics import contains_any
from eval.questions import load_questions
from eval.reader_study import collect as study_collect
from index.settings import PROJECT_ROOT, get_settings
from service.answering.engine import Engine
from service.answering.reading import CandidateSentence, Question, make_reader

NEWS = PROJECT_ROOT / "eval" / "questions" / "news.jsonl"
REALTIMEQA = PROJECT_ROOT.parent / "shared" / "eval" / "realtimeqa-dev.jsonl"


@dataclass
class Case:
    file: str
    question: Question
    sentences: list[CandidateSentence]
    answer_any: list[str]
    unanswerable: bool
    collect_s: float


@dataclass
class Row:
    n: int = 0
    right: int = 0
    answered: int = 0
    answered_right: int = 0
    unans: int = 0
    unans_abst: int = 0
    ans: int = 0
    ans_abst: int = 0
    llm_s: list[float] = field(default_factory=list)
    read_s: list[float] = field(default_factory=list)
    total_s: list[float] = field(default_factory=list)
    said_none: int = 0
    spans: int = 0
    spans_right: int = 0
    outcomes: dict[str, list[int]] = field(default_factory=dict)  # llm outcome -> [answerable, unanswerable]
    replies: list[dict] = field(default_factory=list)
    in_top: int = 0  # answerable turns with an answer-holding sentence among the top N the llm reader shows


def default_index() -> Path:
    second = PROJECT_ROOT / "data" / "news-index2"
    return second if (second / "CURRENT").exists() else PROJECT_ROOT / "data" / "news-index"


def sample(path: Path, answerable: int, unanswerable: int) -> list[tuple[str, dt.date | None, list[str], bool]]:
    """(question, as_of, answer_any, unanswerable) of the first turns of each kind, in file order."""
    out_ans, out_unans = [], []
    for item in load_questions(path):
        for turn in item.turns:
            entry = (turn.standalone or turn.question, item.date, list(turn.answer_any), item.unanswerable)
            (out_unans if item.unanswerable else out_ans).append(entry)
    return out_ans[:answerable] + out_unans[:unanswerable]


def collect(engine: Engine, name: str, turns: list[tuple[str, dt.date | None, list[str], bool]]) -> list[Case]:
    """Each turn through ``eval.reader_study.collect`` (the same candidates and features as the reader study),
    one at a time so that each turn's retrieval time is known."""
    cases = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.jsonl"
        for text, date, answer_any, unanswerable in turns:
            item = {"id": "t", "turns": [{"question": text, "answer_any": answer_any}], "unanswerable": unanswerable}
            if date:
                item["date"] = str(date)
            path.write_text(json.dumps(item) + "\n")
            started = time.perf_counter()
            (study,) = study_collect(engine, [path])
            seconds = time.perf_counter() - started
            cases.append(Case(name, study.question, study.sentences, answer_any, unanswerable, seconds))
    return cases


def evaluate(
    cases: list[Case], reader, threshold: float, cutoff: float, max_sentences: int, top_n: int
) -> dict[str, Row]:
    from service.answering.reading.llm import llm_span

    out: dict[str, Row] = {}
    for case in cases:
        row = out.setdefault(case.file, Row())
        row.n += 1
        for s in case.sentences:
            s.features.pop("kind_match", None)
            s.features.pop("kind_missing", None)
        started = time.perf_counter()
        ranked = reader.read(case.question, list(case.sentences)) if case.sentences else []
        read_s = time.perf_counter() - started
        row.read_s.append(read_s)
        row.llm_s.append(getattr(reader, "last_seconds", 0.0) if case.sentences else 0.0)
        row.total_s.append(case.collect_s + read_s)
        if ranked and ranked[0].features.get("llm_none"):
            row.said_none += 1
        if outcome := getattr(reader, "last_outcome", ""):
            row.outcomes.setdefault(outcome, [0, 0])[case.unanswerable] += 1
            row.replies.append(
                {
                    "question": case.question.text,
                    "unanswerable": case.unanswerable,
                    "answer_any": case.answer_any,
                    "outcome": outcome,
                    "reply": getattr(reader, "last_reply", ""),
                    "shown": [s.text for s in ranked[:top_n]] if outcome != "picked" else [],
                }
            )
        if ranked and (span := llm_span(ranked[0])) is not None:
            row.spans += 1
            text = ranked[0].text[span[0] - ranked[0].start : span[1] - ranked[0].start]
            row.spans_right += (not case.unanswerable) and contains_any(text, case.answer_any)
        abstained = not ranked or ranked[0].score < threshold
        chosen = [] if abstained else [s for s in ranked[:max_sentences] if s.score >= ranked[0].score * cutoff]
        text = " ".join(s.text for s in chosen)
        right = not abstained and not case.unanswerable and contains_any(text, case.answer_any)
        if case.unanswerable:
            row.unans += 1
            row.unans_abst += abstained
            row.right += abstained
        else:
            row.ans += 1
            row.ans_abst += abstained
            row.right += right
            row.in_top += any(contains_any(s.text, case.answer_any) for s in ranked[:top_n])
        if not abstained:
            row.answered += 1
            row.answered_right += right
    return out


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def render(label: str, results: dict[str, Row]) -> list[str]:
    lines = []
    for file, r in results.items():
        accuracy = r.right / r.n
        precision = r.answered_right / r.answered if r.answered else 0.0
        recall = f"{r.unans_abst / r.unans:.3f}" if r.unans else "-"
        over = r.ans_abst / r.ans if r.ans else 0.0
        ms = [1000 * _pct(v, q) for v in (r.llm_s, r.read_s, r.total_s) for q in (50, 95)]
        lines.append(
            f"| {label} | {file} | {r.n} | {accuracy:.3f} | {precision:.3f} ({r.answered_right}/{r.answered}) | "
            f"{recall} | {over:.3f} | " + " | ".join(f"{m:.0f}" for m in ms) + f" | {r.said_none} | "
            f"{r.spans} ({r.spans_right} right) | {r.in_top}/{r.ans} |"
        )
        if r.outcomes:
            tally = ", ".join(f"{k} {a}+{u}" for k, (a, u) in sorted(r.outcomes.items()))
            lines.append(f"<!-- {label} {file} llm outcomes (answerable+unanswerable): {tally} -->")
    return lines


def _load_cases(path: Path | None, key: tuple) -> list[Case] | None:
    """Turns collected by an earlier run with the same index and sample (our own file: pickle is fine)."""
    if path is None or not path.exists():
        return None
    stored_key, cases = pickle.loads(path.read_bytes())
    return cases if stored_key == key else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.llm_reader", description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, default=None)
    parser.add_argument("--news-answerable", type=int, default=30)
    parser.add_argument("--news-unanswerable", type=int, default=10)
    parser.add_argument("--realtimeqa", type=int, default=40)
    parser.add_argument("--readers", nargs="+", default=["features", "llm"])
    parser.add_argument("--cases", type=Path, default=None, help="keep the collected turns here (a pickle, reused)")
    parser.add_argument("--llm-model", default=None, help="0.5b | 1.5b (default: settings.llm_reader_model)")
    parser.add_argument("--replies", type=Path, default=None, help="write the llm replies here (JSONL)")
    parser.add_argument("--thresholds", type=float, nargs="+", default=None, help="extra thresholds (features only)")
    parser.add_argument("--threshold", type=float, default=None, help="abstain below (default: settings)")
    args = parser.parse_args(argv)
    settings = get_settings()
    if args.llm_model:
        settings = settings.model_copy(update={"llm_reader_model": args.llm_model})
    threshold = settings.abstain_threshold if args.threshold is None else args.threshold
    root = args.index or default_index()
    engine = Engine(index_root=root)
    started = time.perf_counter()
    key = (str(root), engine.index.version, args.news_answerable, args.news_unanswerable, args.realtimeqa)
    cases = _load_cases(args.cases, key)
    if cases is None:
        cases = collect(engine, "news", sample(NEWS, args.news_answerable, args.news_unanswerable))
        if REALTIMEQA.exists() and args.realtimeqa:
            cases += collect(engine, "realtimeqa-dev", sample(REALTIMEQA, args.realtimeqa, 0))
        if args.cases:
            args.cases.write_bytes(pickle.dumps((key, cases)))
    seconds = time.perf_counter() - started
    print(f"index {root} ({engine.index.version}); {len(cases)} turns collected in {seconds:.1f} s")
    print(
        f"abstain below {threshold}; llm: {settings.llm_reader_model}, {settings.llm_reader_threads} thread(s), "
        f"top {settings.llm_reader_candidates}"
    )
    header = (
        "| reader | file | turns | accuracy | answered precision | abstention recall | answerable abstained | "
        "LLM p50 ms | LLM p95 ms | reader p50 ms | reader p95 ms | total p50 ms | total p95 ms | said none | "
        "verified spans | answer in top N |"
    )
    print(header)
    print("|" + " --- |" * 2 + " ---: |" * 14)
    for name in args.readers:
        loaded = time.perf_counter()
        reader = make_reader(name, settings.reader_dir, settings)
        load_s = time.perf_counter() - loaded
        extra = args.thresholds if args.thresholds and not name.startswith("llm") else []
        for value in [threshold, *extra]:
            label = reader.name if value == threshold else f"{reader.name} @ {value:g}"
            results = evaluate(
                cases,
                reader,
                value,
                settings.answer_relative_cutoff,
                settings.answer_max_sentences,
                settings.llm_reader_candidates,
            )
            for line in render(label, results):
                print(line, flush=True)
            if args.replies and name.startswith("llm"):
                with args.replies.open("a") as out:
                    for row in results.values():
                        for reply in row.replies:
                            out.write(json.dumps({"reader": reader.name, **reply}) + "\n")
        print(f"<!-- {reader.name}: loaded in {load_s:.1f} s -->", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
