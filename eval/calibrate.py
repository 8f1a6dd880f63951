"""Calibrate the abstention threshold on question files: ``python -m eval.calibrate QUESTIONS... [--index DIR]``.

Asks every turn's self-contained form (``standalone`` or the question) in-process with abstention switched
off, and records the reader's score of the best sentence and whether the answer would be right. A turn
*should be answered* when that answer is right; it *should be abstained on* when the corpus cannot answer it
or the answer would be wrong. The threshold chosen maximises balanced accuracy over those two groups (the mean
of the answer rate on the first and the abstention rate on the second), so it trades wrong answers against
lost right ones evenly. Prints the setting for ``BYLINE_ABSTAIN_THRESHOLD`` and the figures at it.
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

import numpy as np

from eval.metrics import answer_correct
from eval.questions import load_questions
from index.settings import get_settings
from service.answering.engine import Engine
from service.answering.schemas import AskRequest


def collect(engine: Engine, paths: list[Path]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per turn: the reader's best score, whether answering would be right, whether the corpus can answer it."""
    scores, right, answerable = [], [], []
    for path in paths:
        for item in load_questions(path):
            as_of = dt.date.fromisoformat(str(item.date)) if item.date else None
            for turn in item.turns:
                if not item.unanswerable and not turn.answer_any:
                    continue  # nothing to judge the answer by
                answer = engine.ask(AskRequest(question=turn.standalone or turn.question, as_of=as_of))
                scores.append(answer.signals.get("reader_score", 0.0))
                right.append(
                    bool(answer_correct(answer.answer, turn.answer_any, False, False)) and not item.unanswerable
                )
                answerable.append(not item.unanswerable)
    return np.array(scores), np.array(right), np.array(answerable)


def best_threshold(scores: np.ndarray, right: np.ndarray) -> tuple[float, float]:
    """(threshold, balanced accuracy) over answer-if-right / abstain-otherwise; ties prefer answering."""
    best = (0.0, -1.0)
    for threshold in np.unique(np.round(np.concatenate([[0.0], scores]), 4)):
        answered = scores >= threshold
        rate_answer = answered[right].mean() if right.any() else 1.0
        rate_abstain = (~answered[~right]).mean() if (~right).any() else 1.0
        score = (rate_answer + rate_abstain) / 2
        if score > best[1] + 1e-9:
            best = (float(threshold), float(score))
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.calibrate", description=__doc__.splitlines()[0])
    parser.add_argument("questions", nargs="+", type=Path)
    parser.add_argument("--index", type=Path, default=None)
    args = parser.parse_args(argv)
    settings = get_settings().model_copy(update={"abstain_threshold": 0.0})
    engine = Engine(settings=settings, index_root=args.index)
    scores, right, answerable = collect(engine, args.questions)
    threshold, balanced = best_threshold(scores, right)
    answered = scores >= threshold
    print(
        f"reader: {engine.reader.name}; turns: {len(scores)} ({int(answerable.sum())} answerable, "
        f"{int((~answerable).sum())} unanswerable; {int(right.sum())} answered right without abstention)"
    )
    print(f"BYLINE_ABSTAIN_THRESHOLD={threshold:.4f} (balanced accuracy {balanced:.3f})")
    print(
        f"  at it: answered {int(answered.sum())}, of them right {int((answered & right).sum())}; "
        f"unanswerable abstained {int((~answered & ~answerable).sum())}/{int((~answerable).sum())}; "
        f"answerable abstained {int((~answered & answerable).sum())}/{int(answerable.sum())}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
