"""Retrieval quality of two encoder backends at full scale: the same corpus indexed with each, the same dev sets.

    BYLINE_EMBEDDING_BACKEND=torch .venv/bin/byline ingest ../shared/corpus/news-2023q4.jsonl \\
        ../shared/corpus/seed samples --index data/news-index-torch          # the reference (~15 min)
    .venv/bin/python bench/encoder_quality.py --index data/news-index --reference data/news-index-torch

Each index is read with the backend its manifest names (query and passage vectors must come from the same one)
and run through the eval runner in process (default settings, k=10) on the seed questions and the RealTimeQA dev
set. Issue 6's rule: keep the fastest backend whose Hits stay within one point (0.01) of the PyTorch model's; the
verdict uses Hits@1/5/10 pooled over every answerable turn of both sets (the seed set alone has 40 answerable turns,
so one turn moves it 2.5 points), and the per-set rows are printed beside it.
``make bench-quality`` builds the reference index if it is missing, then runs this.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from _common import NEWS_INDEX, QUESTIONS, ROOT, machine_line, table, write_outputs

from eval.questions import load_questions
from eval.runner import InProcessBackend, evaluate
from index.encoder import Encoder
from index.manifest import read_manifest
from index.publish import current_dir
from index.settings import get_settings

SEED_QUESTIONS = ROOT / "eval" / "questions" / "seed.jsonl"
METRICS = ["hits@1", "hits@5", "hits@10", "mrr@10", "answer_accuracy"]
TOLERANCE = 0.01


POOLED = "both sets, pooled"


def measure(index: Path, question_files: list[Path]) -> tuple[str, dict[str, dict[str, float | None]]]:
    backend = read_manifest(current_dir(index)).embedding.backend
    settings = get_settings().model_copy(update={"embedding_backend": backend, "index_dir": index})
    encoder = Encoder(backend=backend, threads=settings.encoder_threads)
    figures: dict[str, dict[str, float | None]] = {}
    pooled: dict[str, list[float]] = {"hits@1": [], "hits@5": [], "hits@10": []}
    for path in question_files:
        runner = InProcessBackend(index, settings, encoder)
        try:
            report = evaluate(load_questions(path), runner, k=10, questions=str(path), progress=False)
        finally:
            runner.close()
        summary = report.summary.model_dump(by_alias=True)
        figures[path.name] = {name: summary.get(name) for name in METRICS}
        turns = [turn for item in report.items for turn in item.turns if turn.hit_at_1 is not None]
        figures[path.name]["turns"] = len(turns)
        for k, values in pooled.items():
            values.extend(float(getattr(turn, f"hit_at_{k.removeprefix('hits@')}")) for turn in turns)
        print(f"{index} ({backend}) {path.name}: {figures[path.name]}", flush=True)
    # every answerable turn of every set counts once (the seed set alone moves 2.5 points per turn)
    figures[POOLED] = {k: sum(v) / len(v) if v else None for k, v in pooled.items()}
    figures[POOLED]["turns"] = len(pooled["hits@1"])
    return backend, figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=Path, default=NEWS_INDEX, help="the index built with the candidate backend")
    parser.add_argument("--reference", type=Path, default=ROOT / "data" / "news-index-torch")
    parser.add_argument("--md", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    print(machine_line(), flush=True)
    for index in (args.index, args.reference):
        if not (index / "CURRENT").exists():
            print(f"no index at {index}; build it first (see this script's docstring)", file=sys.stderr)
            return 2
    files = [SEED_QUESTIONS] + ([QUESTIONS] if QUESTIONS.exists() else [])
    ref_backend, reference = measure(args.reference, files)
    backend, candidate = measure(args.index, files)
    rows: list[list[object]] = []
    worst = 0.0
    for name in reference:
        for metric in METRICS:
            if metric not in reference[name]:
                continue
            ref, got = reference[name][metric], candidate[name][metric]
            delta = None if ref is None or got is None else got - ref
            if delta is not None and metric.startswith("hits") and name == POOLED:
                worst = min(worst, delta)
            label = f"{name} ({reference[name]['turns']} answerable turns)"
            rows.append([label, metric, ref, got, "-" if delta is None else f"{100 * delta:+.1f} pt"])
    verdict = "within" if worst >= -TOLERANCE else "NOT within"
    markdown = (
        f"### Encoder quality at full scale: {backend} vs {ref_backend}\n\n"
        f"`bench/encoder_quality.py --index {args.index} --reference {args.reference}`; {machine_line()}\n\n"
        + table(["questions", "metric", ref_backend, backend, "difference"], rows)
        + f"\n\nWorst pooled Hits difference {100 * worst:+.1f} points: {verdict} one point of {ref_backend}."
    )
    write_outputs(
        markdown, {"reference": reference, "candidate": candidate, "worst_hits_delta": worst}, args.md, args.json
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
