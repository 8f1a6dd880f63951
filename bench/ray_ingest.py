"""The Ray engine on this machine: overhead over the local engine, per-actor embedding and driver write throughput.

    .venv/bin/python bench/ray_ingest.py                      # 300 news articles, then the writer at news-index size
    .venv/bin/python bench/ray_ingest.py --articles 100 --md /tmp/ray.md --json /tmp/ray.json

1. The first ``--articles`` news articles are ingested into fresh indexes by the local engine and by the Ray engine
   (on a local Ray started just before, as ``byline ingest --engine ray`` starts it), one run each; the ratio of
   wall times (and of CPU seconds, the driver's plus Ray's processes') is the Ray engine's local-mode overhead,
   split into Ray start, clean and chunk stages (worker and actor start-up included), actor encoder load,
   embedding inside the actors, the rest of the embed stage (scheduling, serialisation, transfer), and the
   driver's write. The two indexes are compared (max |vector diff|).
2. The single writer's parts at a larger size, on a read-only copy of what ``--scale-index`` (default
   data/news-index) holds: SQLite writes, FAISS flat and HNSW builds, BM25 build, in chunks/s.
3. From those: the projected wall time for 1M and 10M articles on N workers (see docs/scale-out.md).

Figures on a shared 2-core machine move with the load from other processes; the load average is printed with them.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import CORPUS, NEWS_INDEX, machine_line, table, write_outputs

from index import bm25, vectors
from index.encoder import Encoder
from index.metadata import METADATA, connect, iter_articles, iter_chunks, write_article, write_chunks
from index.publish import current_dir
from index.reader import VECTOR_DATA, VECTOR_IDS
from index.settings import get_settings
from ingest.job import run_ingest

WORKERS = (1, 8, 32, 128)
ARTICLES = (1_000_000, 10_000_000)


def cpu_s(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def descendants_cpu_s(root: int) -> float:
    """CPU seconds of the live descendants of ``root``, with the children they reaped (cutime, cstime)."""
    parent: dict[int, int] = {}
    times: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(stat.parent.name)
        parent[pid] = int(fields[1])
        times[pid] = sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    below, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, ppid in parent.items() if ppid in frontier} - below
        below |= frontier
    return sum(times[pid] for pid in below) / os.sysconf("SC_CLK_TCK")


def load() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


def first_articles(n: int, target: Path) -> Path:
    with CORPUS.open() as source, target.open("w") as out:
        for _, line in zip(range(n), source, strict=False):
            out.write(line)
    return target


def max_vector_diff(a: Path, b: Path) -> float:
    da, db = current_dir(a), current_dir(b)
    va = dict(zip(np.load(da / VECTOR_IDS).tolist(), np.load(da / VECTOR_DATA), strict=True))
    vb = dict(zip(np.load(db / VECTOR_IDS).tolist(), np.load(db / VECTOR_DATA), strict=True))
    assert va.keys() == vb.keys(), "the two engines stored different chunk ids"
    return max(float(np.abs(va[k] - vb[k]).max()) for k in va)


def engines(n_articles: int, work: Path) -> dict[str, Any]:
    import ray

    from ingest.ray_engine import RayStats, run_ingest_ray, start_ray

    settings = get_settings()
    news = first_articles(n_articles, work / "news.jsonl")
    print(f"load before the local run: {load()}", flush=True)
    started, cpu0 = time.perf_counter(), cpu_s(resource.RUSAGE_SELF)
    encoder = Encoder(backend=settings.embedding_backend, threads=settings.encoder_threads)
    local = run_ingest([news], index_root=work / "local", encoder=encoder, progress=False)
    local_s, local_cpu = time.perf_counter() - started, cpu_s(resource.RUSAGE_SELF) - cpu0
    print(f"local: {local_s:.1f} s; load before the Ray run: {load()}", flush=True)
    stats = RayStats()
    # Ray is started here as the engine would start it, so that its processes' CPU can be read before it stops
    started, cpu0 = time.perf_counter(), cpu_s(resource.RUSAGE_SELF)
    start_ray()
    ray_start_s = time.perf_counter() - started
    on_ray = run_ingest_ray([news], index_root=work / "ray", progress=False, stats=stats)
    ray_s = time.perf_counter() - started
    # the driver, plus Ray's processes (GCS, raylet and the workers and actors it started and reaped)
    ray_cpu = cpu_s(resource.RUSAGE_SELF) - cpu0 + descendants_cpu_s(os.getpid())
    ray.shutdown()
    stats.ray_start_s = ray_start_s
    print(f"ray: {ray_s:.1f} s; load after: {load()}", flush=True)
    busy = sorted(stats.actor_busy_s.values())
    per_actor = {pid: stats.actor_chunks[pid] / stats.actor_busy_s[pid] for pid in stats.actor_busy_s}
    return {
        "articles": n_articles,
        "chunks": local.chunks_embedded,
        "local_s": local_s,
        "local_embed_s": local.embed_seconds,
        "local_chunks_per_s": local.chunks_embedded / local.embed_seconds,
        "ray_s": ray_s,
        "ratio": ray_s / local_s,
        "local_cpu_s": local_cpu,
        "ray_cpu_s": ray_cpu,
        "cpu_ratio": ray_cpu / local_cpu,
        "same_counts": (local.articles_total, local.chunks_total) == (on_ray.articles_total, on_ray.chunks_total),
        "max_vector_diff": max_vector_diff(work / "local", work / "ray"),
        "ray_start_s": stats.ray_start_s,
        "read_s": stats.read_s,
        "clean_s": stats.clean_s,
        "chunk_s": stats.chunk_s,
        "embed_s": stats.embed_s,
        "actor_load_s": max(stats.actor_load_s, default=0.0),
        "actors": len(stats.actor_busy_s),
        "actor_busy_max_s": busy[-1] if busy else 0.0,
        "embed_rest_s": stats.embed_s - (busy[-1] if busy else 0.0) - max(stats.actor_load_s, default=0.0),
        "write_s": stats.write_s,
        "write_chunks_per_s": on_ray.chunks_total / stats.write_s,
        "per_actor_chunks_per_s": sorted(per_actor.values()),
        "blocks": stats.blocks,
        "load": load(),
    }


def writer(scale_index: Path, work: Path) -> dict[str, Any]:
    """The single writer's parts, each timed alone, on what the (read-only) ``scale_index`` holds."""
    settings = get_settings()
    version = current_dir(scale_index)
    with connect(version / METADATA, readonly=True) as conn:
        articles = list(iter_articles(conn))
        chunks = list(iter_chunks(conn))
    matrix = np.load(version / VECTOR_DATA)
    ids = np.load(version / VECTOR_IDS)
    titles = {a.id: a.title for a in articles}
    out: dict[str, Any] = {"index": str(scale_index), "articles": len(articles), "chunks": len(chunks)}

    db = work / "writer.sqlite"
    connect(db).close()
    started = time.perf_counter()
    conn = connect(db)
    try:
        with conn:
            for article in articles:
                write_article(conn, article)
            write_chunks(conn, chunks)
        conn.execute("VACUUM")
    except sqlite3.OperationalError as exc:
        raise SystemExit(f"SQLite write failed: {exc}") from exc
    finally:
        conn.close()
    out["sqlite_s"] = time.perf_counter() - started

    started = time.perf_counter()
    vectors.build(matrix, ids, vectors.choose_kind(len(ids), settings.ann_threshold))
    out["faiss_flat_s"] = time.perf_counter() - started
    hnsw = vectors.choose_kind(settings.ann_threshold + 1, settings.ann_threshold)
    half = len(ids) // 2
    started = time.perf_counter()
    vectors.build(matrix[:half], ids[:half], hnsw, m=settings.hnsw_m, ef_construction=settings.hnsw_ef_construction)
    out["faiss_hnsw_half_s"] = time.perf_counter() - started
    started = time.perf_counter()
    vectors.build(matrix, ids, hnsw, m=settings.hnsw_m, ef_construction=settings.hnsw_ef_construction)
    out["faiss_hnsw_s"] = time.perf_counter() - started

    started = time.perf_counter()
    bm25.build([f"{titles.get(c.article_id, '')}\n{c.text}" for c in chunks])
    out["bm25_s"] = time.perf_counter() - started
    out["sentences_per_chunk"] = sum(len(c.sentences) for c in chunks) / len(chunks)
    out["chunks_per_article"] = len(chunks) / len(articles)
    out["load"] = load()
    return out


def project(
    e: dict[str, Any], w: dict[str, Any], per_actor: float | None = None
) -> tuple[list[list[object]], dict[str, Any]]:
    """wall ~ (clean + chunk + embed) / N + driver read + writer (SQLite + FAISS HNSW + BM25), stage after stage."""
    n = w["chunks"]
    per_actor = per_actor or float(np.median(e["per_actor_chunks_per_s"]))  # chunks/s inside one 1-CPU actor
    prep_per_article = max(e["local_s"] - e["local_embed_s"] - e["write_s"], 0.0) / e["articles"]  # clean + chunk
    read_per_article = e["read_s"] / e["articles"]
    sqlite_rate = n / w["sqlite_s"]
    bm25_rate = n / w["bm25_s"]
    # HNSW build ~ n log n (each insertion searches the graph); the half-size build checks that: measured exponent b
    b = float(np.log(w["faiss_hnsw_s"] / w["faiss_hnsw_half_s"]) / np.log(n / (n // 2)))
    model = {
        "chunks_per_article": w["chunks_per_article"],
        "per_actor_chunks_per_s": per_actor,
        "prep_s_per_article": prep_per_article,
        "read_s_per_article": read_per_article,
        "sqlite_chunks_per_s": sqlite_rate,
        "bm25_chunks_per_s": bm25_rate,
        "hnsw_exponent": b,
    }
    rows: list[list[object]] = []
    for articles in ARTICLES:
        chunks = articles * w["chunks_per_article"]
        hnsw_s = w["faiss_hnsw_s"] * (chunks * np.log(chunks)) / (n * np.log(n))
        writer_s = chunks / sqlite_rate + hnsw_s + chunks / bm25_rate
        for workers in WORKERS:
            work_s = articles * prep_per_article / workers + chunks / (per_actor * workers)
            wall = work_s + articles * read_per_article + writer_s
            bound = "embedding" if work_s > writer_s else "single writer"
            rows.append(
                [
                    f"{articles:,}",
                    f"{chunks / 1e6:.1f}M",
                    workers,
                    f"{work_s / 3600:.1f}",
                    f"{writer_s / 3600:.1f}",
                    f"{hnsw_s / 3600:.1f}",
                    f"{wall / 3600:.1f}",
                    bound,
                ]
            )
    return rows, model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=int, default=300)
    parser.add_argument("--scale-index", type=Path, default=NEWS_INDEX)
    parser.add_argument(
        "--reference-rate",
        type=float,
        default=58.5,
        help="chunks/s per CPU for a second projection (58.5: half of the bare encoder's 117 chunks/s on this idle "
        "2-core machine, bench/RESULTS.md 2026-11-25)",
    )
    parser.add_argument("--md", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if not CORPUS.exists():
        print(f"{CORPUS} is not present", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    try:
        e = engines(args.articles, work)
        w = writer(args.scale_index, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows, model = project(e, w)
    reference_rows, _ = project(e, w, args.reference_rate)
    overhead = [
        ["local engine, wall", f"{e['local_s']:.1f}", f"embedding {e['local_embed_s']:.1f} s"],
        ["ray engine, wall", f"{e['ray_s']:.1f}", f"ratio {e['ratio']:.2f}"],
        ["local engine, CPU (process)", f"{e['local_cpu_s']:.1f}", ""],
        ["ray engine, CPU (driver + Ray's processes)", f"{e['ray_cpu_s']:.1f}", f"ratio {e['cpu_ratio']:.2f}"],
        ["  Ray start (local instance)", f"{e['ray_start_s']:.1f}", ""],
        ["  read (driver)", f"{e['read_s']:.1f}", ""],
        ["  clean stage (tasks; worker start-up included)", f"{e['clean_s']:.1f}", ""],
        ["  chunk stage (actor pool; start-up, encoder load)", f"{e['chunk_s']:.1f}", ""],
        ["  embed stage", f"{e['embed_s']:.1f}", f"{e['blocks']} blocks, {e['actors']} actors"],
        ["    actor encoder load", f"{e['actor_load_s']:.1f}", ""],
        ["    busiest actor inside the encoder", f"{e['actor_busy_max_s']:.1f}", ""],
        ["    rest: actor spawn, scheduling, serialisation", f"{e['embed_rest_s']:.1f}", ""],
        ["  write + publish (driver)", f"{e['write_s']:.1f}", f"{e['write_chunks_per_s']:.0f} chunks/s"],
    ]
    writer_rows = [
        ["SQLite (articles + chunks, VACUUM)", f"{w['sqlite_s']:.2f}", f"{w['chunks'] / w['sqlite_s']:.0f}"],
        ["FAISS flat", f"{w['faiss_flat_s']:.2f}", f"{w['chunks'] / w['faiss_flat_s']:.0f}"],
        ["FAISS HNSW (m, efC from settings)", f"{w['faiss_hnsw_s']:.2f}", f"{w['chunks'] / w['faiss_hnsw_s']:.0f}"],
        ["BM25 (bm25s)", f"{w['bm25_s']:.2f}", f"{w['chunks'] / w['bm25_s']:.0f}"],
    ]
    markdown = "\n".join(
        [
            "## Ray ingest (bench/ray_ingest.py)",
            "",
            machine_line(),
            "",
            f"{e['articles']} news articles, {e['chunks']} chunks; same counts: {e['same_counts']}, "
            f"max |vector diff| {e['max_vector_diff']:.2g}; load average (1/5/15 min) after: {e['load']}",
            "",
            table(["stage", "s", "note"], overhead),
            "",
            "Embedding inside each actor (1 CPU, 1 encoder thread): "
            + ", ".join(f"{r:.1f}" for r in e["per_actor_chunks_per_s"])
            + f" chunks/s; local engine (all cores): {e['local_chunks_per_s']:.1f} chunks/s.",
            "",
            f"Single writer at {w['chunks']:,} chunks ({w['articles']:,} articles; load after: {w['load']}):",
            "",
            table(["part", "s", "chunks/s"], writer_rows),
            "",
            "Projection: wall ~ (clean + chunk + embed) / N + driver read + SQLite + FAISS HNSW + BM25 "
            f"(per actor {model['per_actor_chunks_per_s']:.1f} chunks/s, {model['chunks_per_article']:.1f} "
            f"chunks/article, HNSW time ~ n log n; between half and full size: n^{model['hnsw_exponent']:.2f}):",
            "",
            table(["articles", "chunks", "N", "workers h", "writer h", "of which HNSW h", "wall h", "bound"], rows),
            "",
            f"The same with {args.reference_rate:.1f} chunks/s per actor (an idle CPU) and this run's writer rates:",
            "",
            table(
                ["articles", "chunks", "N", "workers h", "writer h", "of which HNSW h", "wall h", "bound"],
                reference_rows,
            ),
        ]
    )
    write_outputs(markdown, {"engines": e, "writer": w, "model": model}, args.md, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
