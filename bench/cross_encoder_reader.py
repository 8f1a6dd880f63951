"""Cross-encoder reader vs the feature reader on the dev sets: ``python -m bench.cross_encoder_reader --index DIR``.

Candidates exactly as ``eval.reader_study.collect`` builds them (standalone forms). Per set, over the answerable
turns: accuracy of the top-1 sentence and of the top-2 (right when the chosen sentences contain one of
``answer_any``), for the feature reader alone, the cross-encoder over all candidates, and the cross-encoder
reranking the feature reader's top 8 / 12. Also the latency of scoring 8 candidates (p50/p95), and how many
turns have their answer in a training article (dev-set articles are held out from training by construction).
"""

from __future__ import annotations

import argparse
import json
import pickle
import statistics
import time
from pathlib import Path

from eval.metrics import contains_any
from eval.reader_study import Case, collect
from index.settings import get_settings
from service.answering.engine import Engine
from service.answering.reading import Reader, make_reader
from service.answering.reading.cross_encoder import CrossEncoderReader, CrossEncoderScorer
from service.answering.reading.train import held_out_articles

DEV = [
    "eval/questions/news.jsonl",
    "eval/questions/seed.jsonl",
    "eval/questions/news-switch.jsonl",
    "/work/shared/eval/realtimeqa-dev.jsonl",
]


def _fresh(case: Case) -> list:
    for s in case.sentences:
        s.features.pop("kind_match", None)
        s.features.pop("kind_missing", None)
        s.features.pop("cross_encoder", None)
    return list(case.sentences)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cross_encoder_reader", description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--weights", type=Path, nargs="+", required=True, help="cross-encoder directories")
    parser.add_argument("--questions", type=Path, nargs="*", default=[Path(p) for p in DEV])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--cases", type=Path, default=None, help="pickle of the collected turns: reused if present")
    parser.add_argument("--collect-only", action="store_true")
    args = parser.parse_args(argv)
    settings = get_settings()
    engine = Engine(index_root=args.index)
    started = time.perf_counter()
    if args.cases and args.cases.exists():
        cases = pickle.loads(args.cases.read_bytes())
    else:
        cases = [c for c in collect(engine, args.questions) if not c.unanswerable and c.sentences]
        if args.cases:
            args.cases.write_bytes(pickle.dumps(cases))
    if args.collect_only:
        return 0
    print(f"{len(cases)} answerable turns with candidates, collected in {time.perf_counter() - started:.0f} s")
    held, _ = held_out_articles(engine, args.questions)
    in_train = sum(
        any(contains_any(s.text, c.answer_any) and s.article_id not in held for s in c.sentences) for c in cases
    )
    print(f"turns with an answer-bearing candidate from a training article: {in_train} of {len(cases)}")
    readers: list[tuple[str, Reader]] = [
        ("features-untrained", make_reader("features-untrained", settings.reader_dir)),
    ]
    try:
        readers.append(("features-trained", make_reader("features-trained", settings.reader_dir)))
    except ValueError as exc:
        print(f"(no features-trained: {exc})")
    latencies: dict[str, list[float]] = {}
    for directory in args.weights:
        scorer = CrossEncoderScorer(directory, threads=args.threads)
        tag = f"ce-L{scorer.model.encoder.config.num_hidden_layers}"
        base = make_reader("features-untrained", settings.reader_dir)
        readers += [
            (f"{tag} all", CrossEncoderReader(scorer, base, None)),
            (f"{tag} rerank top 8", CrossEncoderReader(scorer, base, 8)),
            (f"{tag} rerank top 12", CrossEncoderReader(scorer, base, 12)),
        ]
        times = []
        for case in cases:
            texts = [s.text for s in case.sentences[:8]]
            t = time.perf_counter()
            scorer.logits(case.question.text, texts)
            times.append((time.perf_counter() - t) * 1000)
        latencies[tag] = times
    rows = []
    print("| reader | set | turns | top-1 | top-2 | ceiling | p50 ms (8) | p95 ms (8) |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, reader in readers:
        per: dict[str, list[int]] = {}
        t_all = time.perf_counter()
        for case in cases:
            ranked = reader.read(case.question, _fresh(case))
            top1 = contains_any(ranked[0].text, case.answer_any)
            top2 = contains_any(" ".join(s.text for s in ranked[:2]), case.answer_any)
            ceiling = any(contains_any(s.text, case.answer_any) for s in case.sentences)
            row = per.setdefault(case.file, [0, 0, 0, 0])
            row[0] += 1
            row[1] += top1
            row[2] += top2
            row[3] += ceiling
        tag = name.split()[0]
        lat = latencies.get(tag)
        p50 = f"{statistics.median(lat):.0f}" if lat else "-"
        p95 = f"{sorted(lat)[int(0.95 * (len(lat) - 1))]:.0f}" if lat else "-"
        total = [sum(r[i] for r in per.values()) for i in range(4)]
        for file, r in [*per.items(), ("all", total)]:
            print(
                f"| {name} | {file} | {r[0]} | {r[1] / r[0]:.3f} | {r[2] / r[0]:.3f} | {r[3] / r[0]:.3f} "
                f"| {p50} | {p95} |"
            )
            rows.append({"reader": name, "set": file, "turns": r[0], "top1": r[1], "top2": r[2], "ceiling": r[3]})
        print(f"  ({name}: {time.perf_counter() - t_all:.0f} s over all turns)", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "latency_ms": latencies}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
