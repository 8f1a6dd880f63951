"""Calibrate the abstention rule on question files: ``python -m eval.calibrate QUESTIONS... [--index DIR]``.

Asks every turn's self-contained form (``standalone`` or the question) in-process, collects the two
signals behind an answer's confidence (best sentence cosine, evidence coverage) for answerable and
unanswerable turns, and grid-searches the weight and threshold that maximise balanced accuracy
(mean of the answer rate on answerable turns and the abstention rate on unanswerable ones). Prints the
best settings for ``BYLINE_ABSTAIN_DENSE_WEIGHT`` / ``BYLINE_ABSTAIN_THRESHOLD``.
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

import numpy as np

from eval.questions import load_questions
from service.answering.engine import Engine
from service.answering.schemas import AskRequest


def collect(engine: Engine, paths: list[Path]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    dense, coverage, answerable = [], [], []
    for path in paths:
        for item in load_questions(path):
            as_of = dt.date.fromisoformat(str(item.date)) if item.date else None
            for turn in item.turns:
                answer = engine.ask(AskRequest(question=turn.standalone or turn.question, as_of=as_of))
                dense.append(answer.signals.get("best_sentence_cosine", 0.0))
                coverage.append(answer.signals.get("coverage", 0.0))
                answerable.append(not item.unanswerable)
    return np.array(dense), np.array(coverage), np.array(answerable)


def best_rule(dense: np.ndarray, coverage: np.ndarray, answerable: np.ndarray) -> tuple[float, float, float]:
    """(weight, threshold, balanced accuracy) maximising balanced accuracy; ties prefer answering."""
    best = (0.5, 0.0, -1.0)
    for weight in np.linspace(0, 1, 21):
        confidence = weight * dense + (1 - weight) * coverage
        for threshold in np.unique(np.round(confidence, 4)):
            answered = confidence >= threshold
            rate_answer = answered[answerable].mean() if answerable.any() else 1.0
            rate_abstain = (~answered[~answerable]).mean() if (~answerable).any() else 1.0
            score = (rate_answer + rate_abstain) / 2
            if score > best[2] + 1e-9:
                best = (float(weight), float(threshold), float(score))
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.calibrate", description=__doc__.splitlines()[0])
    parser.add_argument("questions", nargs="+", type=Path)
    parser.add_argument("--index", type=Path, default=None)
    args = parser.parse_args(argv)
    engine = Engine(index_root=args.index)
    dense, coverage, answerable = collect(engine, args.questions)
    weight, threshold, score = best_rule(dense, coverage, answerable)
    print(f"turns: {len(answerable)} ({int(answerable.sum())} answerable, {int((~answerable).sum())} unanswerable)")
    print(
        f"BYLINE_ABSTAIN_DENSE_WEIGHT={weight:.2f} BYLINE_ABSTAIN_THRESHOLD={threshold:.4f} "
        f"(balanced accuracy {score:.3f})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
