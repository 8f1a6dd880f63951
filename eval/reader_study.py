"""Compare readers on question files, offline: ``python -m eval.reader_study QUESTIONS... --index DIR``.

Retrieval and candidate sentences are computed once per turn (the written standalone form of follow-ups);
each reader then only re-scores them, so a comparison of several readers and thresholds takes seconds. For
each file and reader it prints answer accuracy (an answer that contains an expected string, or an abstention
on an unanswerable item), answered precision, abstention recall on unanswerable items, the share of
answerable turns abstained on, and the ceiling (some candidate sentence holds the answer).
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from dataclasses import dataclass
from pathlib import Path

from eval.metrics import contains_any
from eval.questions import load_questions
from index.settings import get_settings
from service.answering.answer import prepare
from service.answering.engine import Engine
from service.answering.reading import CandidateSentence, Question, Reader, make_reader
from service.answering.schemas import Filters


@dataclass
class Case:
    file: str
    question: Question
    sentences: list[CandidateSentence]
    answer_any: list[str]
    unanswerable: bool


def collect(engine: Engine, paths: list[Path]) -> list[Case]:
    index, settings = engine.index, engine.settings
    cases = []
    for path in paths:
        for item in load_questions(path):
            as_of = dt.date.fromisoformat(str(item.date)) if item.date else dt.date.today()
            for turn in item.turns:
                text = turn.standalone or turn.question
                candidates, shown, vector = engine._retrieve(index, text, 10, Filters(), as_of, None)
                # the period the question names ("this week"), as the engine gives it to the reader
                period = (shown.date_from, shown.date_to) if shown.date_from and shown.date_to else None
                asked, sentences = prepare(index, text, vector, candidates, settings, engine.sentence_cache, period)
                cases.append(Case(path.stem, asked, sentences, list(turn.answer_any), item.unanswerable))
    return cases


def evaluate(cases: list[Case], reader: Reader, threshold: float, cutoff: float, max_sentences: int) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for case in cases:
        row = out.setdefault(
            case.file,
            {
                "n": 0,
                "right": 0,
                "answered": 0,
                "answered_right": 0,
                "unans": 0,
                "unans_abst": 0,
                "ans": 0,
                "ans_abst": 0,
                "ceiling": 0,
            },
        )
        row["n"] += 1
        for s in case.sentences:
            s.features.pop("kind_match", None)
            s.features.pop("kind_missing", None)
        ranked = reader.read(case.question, list(case.sentences)) if case.sentences else []
        abstained = not ranked or ranked[0].score < threshold
        chosen = [] if abstained else [s for s in ranked[:max_sentences] if s.score >= ranked[0].score * cutoff]
        text = " ".join(s.text for s in chosen)
        if case.unanswerable:
            row["unans"] += 1
            row["unans_abst"] += abstained
            row["right"] += abstained
        else:
            row["ans"] += 1
            row["ans_abst"] += abstained
            right = not abstained and contains_any(text, case.answer_any)
            row["right"] += right
            row["ceiling"] += any(contains_any(s.text, case.answer_any) for s in case.sentences)
        if not abstained:
            row["answered"] += 1
            row["answered_right"] += (not case.unanswerable) and contains_any(text, case.answer_any)
    return out


def render(name: str, results: dict[str, dict]) -> str:
    lines = []
    for file, r in results.items():
        accuracy = r["right"] / r["n"]
        precision = r["answered_right"] / r["answered"] if r["answered"] else 0.0
        recall = r["unans_abst"] / r["unans"] if r["unans"] else float("nan")
        over = r["ans_abst"] / r["ans"] if r["ans"] else 0.0
        ceiling = r["ceiling"] / r["ans"] if r["ans"] else 0.0
        figures = " | ".join(f"{v:.3f}" for v in (accuracy, precision, recall, over, ceiling))
        lines.append(f"| {name} | {file} | {r['n']} | {figures} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.reader_study", description=__doc__.splitlines()[0])
    parser.add_argument("questions", nargs="+", type=Path)
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--readers", nargs="+", default=["features", "features-trained"])
    parser.add_argument("--thresholds", nargs="+", type=float, default=None)
    args = parser.parse_args(argv)
    settings = get_settings()
    engine = Engine(index_root=args.index)
    started = time.perf_counter()
    cases = collect(engine, args.questions)
    print(f"{len(cases)} turns collected in {time.perf_counter() - started:.1f} s")
    print(
        "| reader | file | turns | accuracy | answered precision | abstention recall | answerable abstained | ceiling |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name in args.readers:
        reader = make_reader(name, settings.reader_dir)
        for threshold in args.thresholds or [settings.abstain_threshold]:
            label = f"{reader.name} @ {threshold:.2f}"
            results = evaluate(cases, reader, threshold, settings.answer_relative_cutoff, settings.answer_max_sentences)
            print(render(label, results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
