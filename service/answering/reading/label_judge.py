"""Label training questions with the local LLM judge: ``python -m service.answering.reading.label_judge --index DIR``.

The distilled cross-encoder (``train_cross_encoder --labels``) learns from these labels. Questions are
``reading.train``'s question subheadings of the train split (hash-held-out articles and every article a ``--dev``
set points to give no question and no candidate), in a seeded shuffle. Each goes through the real retrieval and
the hand-set feature reader; its best ``--top`` sentences are judged by :class:`~service.answering.reading.judge.Judge`
(the 1.5B by default: yes/no margin, ``reading.judge``). A question's line is appended to ``--out`` as soon as it
is judged, so the job can stop at any time and resume where it stopped (questions already in the file are
skipped). About 1.5 s a sentence with the 1.5B on 2 cores: hours for a few thousand questions, hence not in CI.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

from index.settings import get_settings

LABELS_FILE = "judge-labels.jsonl"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m service.answering.reading.label_judge", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--dev", type=Path, nargs="*", default=[], help="dev sets whose articles are held out")
    parser.add_argument("--out", type=Path, default=None, help=f"default: <settings.reader_dir>/{LABELS_FILE}")
    parser.add_argument("--questions", type=int, default=3000, help="questions to label")
    parser.add_argument("--top", type=int, default=5, help="feature-ranked sentences judged per question")
    parser.add_argument("--model", default=None, help="1.5b | 0.5b (default: settings.llm_reader_model)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args(argv)

    from service.answering.engine import Engine
    from service.answering.reading.judge import Judge
    from service.answering.reading.llm_model import model_path
    from service.answering.reading.scorer import FeatureReader
    from service.answering.reading.train import example_candidates, heading_questions, held_out_articles

    settings = get_settings()
    out = args.out or settings.reader_dir / LABELS_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if out.exists():
        done = {json.loads(line)["question_key"] for line in out.read_text().splitlines() if line.strip()}
    engine = Engine(settings=settings.model_copy(update={"reader": "features"}), index_root=args.index)
    index = engine.index
    held_out, _ = held_out_articles(engine, args.dev)
    train = set(index.articles) - held_out
    examples = heading_questions(engine, train)
    random.Random(args.seed).shuffle(examples)
    judge = Judge(model_path(args.model or settings.llm_reader_model, settings.cache_dir), args.threads)
    first = FeatureReader(None)
    started, labelled = time.perf_counter(), 0
    with out.open("a") as handle:
        for n, example in enumerate(examples[: args.questions]):
            key = f"{example.article_id}:{min(example.positives)[1]}:{example.question}"
            if key in done:
                continue
            asked, sentences = example_candidates(engine, example, held_out, require_answer=False)
            ranked = first.read(asked, sentences)[: args.top]
            if not ranked:
                continue
            margins = judge.margins(example.question, [s.text for s in ranked])
            row = {
                "question_key": key,
                "question": example.question,
                "article_id": example.article_id,
                "candidates": [
                    {
                        "text": s.text,
                        "article_id": s.article_id,
                        "start": s.start,
                        "positive": (s.article_id, s.start) in example.positives,
                        "feature_score": round(s.score, 4),
                        "margin": round(m, 3),
                    }
                    for s, m in zip(ranked, margins, strict=True)
                ],
            }
            handle.write(json.dumps(row) + "\n")
            handle.flush()
            labelled += 1
            if labelled % 20 == 0:
                rate = (time.perf_counter() - started) / labelled
                print(f"  {n + 1}/{args.questions} questions, {rate:.1f} s a question", file=sys.stderr)
    print(f"labelled {labelled} questions into {out} in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
