"""Vector-index scaling on synthetic data: every kind ``index/vectors.py`` can build, at the given sizes.

    .venv/bin/python bench/scale.py --sizes 100000            # quick
    .venv/bin/python bench/scale.py --sizes 100000,1000000    # full

Synthetic normalised 384-d vectors, clustered like sentence embeddings (``--clusters`` Gaussian centres on the
sphere plus noise; ``--clusters 0`` gives uniform random directions, the hardest case for HNSW). Queries come from
the same distribution and are not in the index. For each size and kind (flat, hnsw with the default settings'
``hnsw_m`` / ``hnsw_ef_construction`` / ``hnsw_ef_search``): build time (``vectors.build``, all cores), memory
(RSS growth over the build, and the serialised size), p50/p95 single-query latency of ``vectors.search`` (k=10,
one thread, as served) and recall@10 against exact search. Also what ``choose_kind`` picks with the default
``ann_threshold``.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from pathlib import Path

import faiss
import numpy as np
from _common import machine_line, percentile, rss_mb, table, write_outputs

from index import vectors
from index.manifest import VectorInfo
from index.settings import get_settings

DIM = 384


def synthetic(n: int, clusters: int, seed: int, block: int = 100_000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty((n, DIM), dtype=np.float32)
    centres = None
    if clusters:
        centres = rng.standard_normal((clusters, DIM)).astype(np.float32)
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    for start in range(0, n, block):
        size = min(block, n - start)
        if centres is None:
            part = rng.standard_normal((size, DIM)).astype(np.float32)
        else:
            # noise of norm ~1.2 around a unit centre: cosine to the centre ~0.6, like related passages
            part = centres[rng.integers(0, len(centres), size)] + rng.standard_normal((size, DIM)).astype(
                np.float32
            ) * np.float32(1.2 / np.sqrt(DIM))
        part /= np.linalg.norm(part, axis=1, keepdims=True)
        out[start : start + size] = part
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000", help="comma-separated vector counts")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--clusters", type=int, default=2000, help="0: uniform random directions")
    parser.add_argument("--kinds", default="flat,hnsw")
    parser.add_argument("--md", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    print(machine_line(), flush=True)
    settings = get_settings()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    results = []
    picks = []
    for n in sizes:
        chosen = vectors.choose_kind(n, settings.ann_threshold)
        picks.append(f"{n:,}: choose_kind -> **{chosen.kind}** ({chosen.reason})")
        started = time.perf_counter()
        data = synthetic(n + args.queries, args.clusters, seed=n)
        queries, base = data[: args.queries], data[args.queries :]
        ids = np.arange(1, n + 1, dtype=np.int64)
        print(f"{n:,} vectors generated in {time.perf_counter() - started:.1f} s", flush=True)
        exact: np.ndarray | None = None
        for kind in kinds:
            gc.collect()
            before = rss_mb()
            started = time.perf_counter()
            index = vectors.build(
                base,
                ids,
                VectorInfo(kind=kind, reason="bench"),
                m=settings.hnsw_m,
                ef_construction=settings.hnsw_ef_construction,
            )
            build_s = time.perf_counter() - started
            grown = rss_mb() - before
            serialised_mb = faiss.serialize_index(index).nbytes / 1e6
            for q in queries[:5]:  # warm-up
                vectors.search(index, q, 10, ef_search=settings.hnsw_ef_search)
            latencies = []
            found = np.zeros((len(queries), 10), dtype=np.int64)
            for i, q in enumerate(queries):
                t0 = time.perf_counter()
                got, _ = vectors.search(index, q, 10, ef_search=settings.hnsw_ef_search)
                latencies.append((time.perf_counter() - t0) * 1000)
                found[i, : len(got)] = got
            if exact is None:
                _, exact_idx = faiss.knn(queries, base, 10, metric=faiss.METRIC_INNER_PRODUCT)
                exact = ids[exact_idx]
            recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, exact, strict=True)]))
            row = {
                "n": n,
                "kind": kind,
                "chosen": kind == chosen.kind,
                "build_s": build_s,
                "rss_growth_mb": grown,
                "serialised_mb": serialised_mb,
                "p50_ms": percentile(latencies, 50),
                "p95_ms": percentile(latencies, 95),
                "recall_at_10": recall,
            }
            results.append(row)
            print(
                f"  {kind:5s} build {build_s:.1f} s, +{grown:.0f} MB RSS, p50 {row['p50_ms']:.2f} ms, "
                f"recall@10 {recall:.3f}",
                flush=True,
            )
            del index
        del data, queries, base
        gc.collect()

    params = (
        f"hnsw M={settings.hnsw_m}, efConstruction={settings.hnsw_ef_construction}, efSearch={settings.hnsw_ef_search}"
    )
    data_kind = f"{args.clusters} clusters" if args.clusters else "uniform random directions"
    notes = [
        f"synthetic normalised {DIM}-d vectors ({data_kind}); {args.queries} held-out queries; k=10; {params}; "
        f"search on one thread as served, build on all cores",
        *picks,
    ]
    rows = [
        [
            f"{r['n']:,}",
            r["kind"] + (" (chosen)" if r["chosen"] else ""),
            r["build_s"],
            r["rss_growth_mb"],
            r["serialised_mb"],
            r["p50_ms"],
            r["p95_ms"],
            f"{r['recall_at_10']:.3f}",
        ]
        for r in results
    ]
    markdown = "\n".join(
        [
            "### Vector index scaling (synthetic)",
            "",
            *[f"- {note}" for note in notes],
            "",
            table(
                ["vectors", "kind", "build s", "RSS growth MB", "serialised MB", "p50 ms", "p95 ms", "recall@10"],
                rows,
            ),
            "",
            f"Load average at end {os.getloadavg()[0]:.1f}.",
        ]
    )
    write_outputs(markdown, {"notes": notes, "rows": results}, args.md, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
