"""Encoder backends side by side: torch vs ONNX Runtime fp32 vs ONNX Runtime int8, in one process and one run.

    .venv/bin/python bench/encoder_backends.py [--passages 600] [--queries 50] [--rounds 3] [--threads 0]

Measures, on the same real passages (about 200 tiktoken tokens each, cut from the first articles of the news
corpus) and the same questions (the first of the RealTimeQA dev set):
- passages/s at batch 32 (best of ``--rounds`` rounds; the rounds interleave the backends so that load from other
  processes hits all of them alike), and the ratio to torch;
- single-query latency: median of ``embed_query`` over the queries and rounds;
- quality against torch: mean and minimum cosine of passage and query vectors, and the overlap of each query's
  top-10 nearest passages with torch's top-10;
- the export time of each ONNX variant (into a fresh cache directory unless ``--cache-dir`` is given).

On a shared machine absolute numbers move with the load; compare the ratios within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

from index.encoder import BACKENDS, MODEL_SHA256, Encoder  # noqa: E402
from index.onnx_backend import META_FILE, MODEL_FILE, export_dir  # noqa: E402
from index.tokens import get_encoding  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
CORPUS = SHARED / "corpus" / "news-2023q4.jsonl"
QUESTIONS = SHARED / "eval" / "realtimeqa-dev.jsonl"
WINDOW_TOKENS = 200
MIN_TOKENS = 120
ONNX_VARIANTS = {"onnx": "fp32", "onnx-int8": "int8"}


def load_passages(path: Path, count: int, window: int = WINDOW_TOKENS) -> list[str]:
    """Consecutive windows of whole words, about ``window`` tiktoken tokens each, from the first articles."""
    encoding = get_encoding()
    passages: list[str] = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            words = str(json.loads(line).get("text", "")).split()
            current: list[str] = []
            tokens = 0
            for word in words:
                current.append(word)
                tokens += len(encoding.encode(" " + word, disallowed_special=()))
                if tokens >= window:
                    passages.append(" ".join(current))
                    current, tokens = [], 0
            if tokens >= MIN_TOKENS:
                passages.append(" ".join(current))
            if len(passages) >= count:
                return passages[:count]
    raise SystemExit(f"{path} holds only {len(passages)} passages, {count} wanted")


def load_questions(path: Path, count: int) -> list[str]:
    with path.open(encoding="utf-8") as handle:
        questions = [str(json.loads(line)["question"]) for line in handle if line.strip()]
    if len(questions) < count:
        raise SystemExit(f"{path} holds only {len(questions)} questions, {count} wanted")
    return questions[:count]


def top_k(queries: np.ndarray, passages: np.ndarray, k: int) -> np.ndarray:
    scores = queries @ passages.T
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean([len(set(x) & set(y)) / len(x) for x, y in zip(a, b, strict=True)]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--passages", type=int, default=600)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="timed passes over the passages per backend")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads for every backend (0: default)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="reuse ONNX exports here (default: fresh)")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--md", type=Path, default=None, help="also write a markdown section here")
    args = parser.parse_args(argv)
    backends = [name.strip() for name in args.backends.split(",") if name.strip()]
    if backends[0] != "torch":
        raise SystemExit("the first backend must be torch: quality is measured against it")

    passages = load_passages(CORPUS, args.passages)
    queries = load_questions(QUESTIONS, args.queries)

    with tempfile.TemporaryDirectory(prefix="byline-onnx-bench-") as scratch:
        cache_dir = args.cache_dir or Path(scratch)
        encoders: dict[str, Encoder] = {}
        load_s: dict[str, float] = {}
        for name in backends:
            started = time.perf_counter()
            encoders[name] = Encoder(name, threads=args.threads, cache_dir=cache_dir)
            load_s[name] = time.perf_counter() - started
        export_s: dict[str, float | None] = {}
        model_mb: dict[str, float | None] = {}
        for name in encoders:
            export_s[name] = model_mb[name] = None
            if name in ONNX_VARIANTS:
                directory = export_dir(cache_dir, MODEL_SHA256, ONNX_VARIANTS[name])
                meta = json.loads((directory / META_FILE).read_text())
                export_s[name] = float(meta["export_seconds"]) if args.cache_dir is None else None
                model_mb[name] = (directory / MODEL_FILE).stat().st_size / 1e6

        wordpieces = encoders["torch"].count_wordpieces(passages)
        print(
            f"{len(passages)} passages (mean {np.mean(wordpieces):.0f} word pieces, {sum(w > 254 for w in wordpieces)}"
            f" truncated at 256), {len(queries)} queries, batch {args.batch_size}, threads {args.threads or 'default'},"
            f" {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start",
            flush=True,
        )

        # Warm up (first-run allocations, thread pools), then timed rounds with the backends interleaved.
        for encoder in encoders.values():
            encoder.embed(passages[: args.batch_size], batch_size=args.batch_size)
        times: dict[str, list[float]] = {name: [] for name in encoders}
        vectors: dict[str, np.ndarray] = {}
        for round_no in range(args.rounds):
            for name, encoder in encoders.items():
                started = time.perf_counter()
                vectors[name] = encoder.embed(passages, batch_size=args.batch_size)
                times[name].append(time.perf_counter() - started)
                rate = len(passages) / times[name][-1]
                print(f"  round {round_no + 1} {name:10s} {rate:6.1f} passages/s", flush=True)

        # Single queries: each backend's block of queries in turn (interleaving query by query would measure one
        # runtime's idle worker threads stealing the other's cores), over the same rounds.
        latencies: dict[str, list[float]] = {name: [] for name in encoders}
        query_vectors: dict[str, np.ndarray] = {}
        for _ in range(args.rounds):
            for name, encoder in encoders.items():
                encoder.embed_query("warm up")
                block = []
                for query in queries:
                    started = time.perf_counter()
                    block.append(encoder.embed_query(query))
                    latencies[name].append(time.perf_counter() - started)
                query_vectors[name] = np.stack(block)
        load_end = os.getloadavg()[0]

    reference = vectors["torch"]
    reference_q = query_vectors["torch"]
    reference_top = top_k(reference_q, reference, 10)
    rows = []
    for name in encoders:
        qv = query_vectors[name]
        cos_p = (vectors[name] * reference).sum(axis=1)
        cos_q = (qv * reference_q).sum(axis=1)
        rows.append(
            {
                "backend": name,
                "passages_per_s": len(passages) / min(times[name]),
                "passages_per_s_median": len(passages) / statistics.median(times[name]),
                "speedup": min(times["torch"]) / min(times[name]),
                "query_ms": 1000 * statistics.median(latencies[name]),
                "query_ratio": statistics.median(latencies["torch"]) / statistics.median(latencies[name]),
                "cos_passages_mean": float(cos_p.mean()),
                "cos_passages_min": float(cos_p.min()),
                "cos_queries_mean": float(cos_q.mean()),
                "top10_overlap": overlap(top_k(qv, vectors[name], 10), reference_top),
                "load_s": load_s[name],
                "export_s": export_s[name],
                "model_mb": model_mb[name],
            }
        )

    print(f"\nload average {load_end:.1f} at end; passages/s = best of {args.rounds} rounds (median in brackets)\n")
    header = (
        f"{'backend':10s} {'passages/s':>17s} {'vs torch':>8s} {'query ms':>8s} {'vs torch':>8s} {'cos psg':>8s}"
        f" {'min psg':>8s} {'cos qry':>8s} {'top10':>6s} {'export s':>8s} {'load s':>6s} {'MB':>5s}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        export = f"{row['export_s']:.1f}" if row["export_s"] is not None else "-"
        size = f"{row['model_mb']:.0f}" if row["model_mb"] is not None else "-"
        rate = f"{row['passages_per_s']:.1f} ({row['passages_per_s_median']:.1f})"
        print(
            f"{row['backend']:10s} {rate:>17s} {row['speedup']:7.2f}x {row['query_ms']:8.1f} {row['query_ratio']:7.2f}x"
            f" {row['cos_passages_mean']:8.4f} {row['cos_passages_min']:8.4f} {row['cos_queries_mean']:8.4f}"
            f" {row['top10_overlap']:6.3f} {export:>8s} {row['load_s']:6.1f} {size:>5s}"
        )
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "args": {k: str(v) for k, v in vars(args).items()}}, indent=2))
    if args.md:
        args.md.write_text(markdown(rows, args, load_end) + "\n", encoding="utf-8")
    return 0


def markdown(rows: list[dict], args: argparse.Namespace, load_end: float) -> str:
    from _common import table

    body = table(
        [
            "backend",
            "passages/s (median)",
            "vs torch",
            "query ms",
            "cos passages (min)",
            "cos queries",
            "top-10",
            "export s",
        ],
        [
            [
                r["backend"],
                f"{r['passages_per_s']:.1f} ({r['passages_per_s_median']:.1f})",
                f"{r['speedup']:.2f}x",
                r["query_ms"],
                f"{r['cos_passages_mean']:.4f} ({r['cos_passages_min']:.4f})",
                f"{r['cos_queries_mean']:.4f}",
                f"{r['top10_overlap']:.3f}",
                "-" if r["export_s"] is None else f"{r['export_s']:.1f}",
            ]
            for r in rows
        ],
    )
    return (
        f"### Encoder backends\n\n`bench/encoder_backends.py --passages {args.passages} --queries {args.queries} "
        f"--rounds {args.rounds}`: passages/s = best of the rounds at batch {args.batch_size}; quality against torch "
        f"on the same passages; load average {load_end:.1f} at the end.\n\n{body}"
    )


if __name__ == "__main__":
    sys.exit(main())
