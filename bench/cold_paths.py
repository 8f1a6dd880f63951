"""The cold paths of issue 14, as ratios from one run: what a user meets before any cache is warm.

    .venv/bin/python bench/cold_paths.py [--index data/news-index] [--questions 20] [--http-questions 20]

1. New-question ``ask`` against ``search`` on the same questions. In process (the engine over ``--index``, the
   news index where it exists), each question is searched, then asked with the sentence-embedding cache emptied
   just before (the strict case: none of its sentences seen before). Over HTTP, against a real ``byline serve`` on
   the same index: each question is sent to ``/v1/search`` and then, for the first time, to ``/v1/ask``.
2. ``byline ask`` as a process (its wall time, on a small index built from the seed article and the samples,
   asked the dev set's first question) against a bare ``python -c "import onnxruntime, numpy, faiss"``; one more
   run under ``-X importtime`` lists the heavy packages it imported.
3. The first ``ask`` after a publish against steady state: the engine over the small index answers a few
   questions until warm; a new version (one article more) is published by ``byline ingest``; the engine reloads
   it (timed apart: the service does this in its background watcher) and each question is asked once more.

Targets (issue 14): new-question ask within 3x of search (p50 and p95); ``byline ask`` within 3x of the bare
import; torch, transformers and sentence_transformers not imported; the first ask after a publish within 2x.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import httpx
from _common import (
    NEWS_INDEX,
    ROOT,
    SAMPLES,
    SEED,
    load_questions,
    machine_line,
    percentile,
    serve,
    table,
    write_outputs,
)

from index.encoder import get_encoder
from index.settings import get_settings
from service.answering.engine import Engine
from service.answering.schemas import AskRequest
from service.answering.sentence_cache import SentenceEmbeddingCache

HEAVY = ("torch", "transformers", "sentence_transformers", "scipy", "spacy")
BARE = "import onnxruntime, numpy, faiss"


def byline_command(*args: str) -> list[str]:
    return [sys.executable, str(Path(sys.executable).with_name("byline")), *args]


def run_env() -> dict[str, str]:
    # The scripts may run from another checkout (before/after comparisons): keep its modules first on the path.
    return dict(
        os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    )


def empty_cache(engine: Engine) -> None:
    """A fresh sentence-embedding cache, also for a reranker holding the old one."""
    engine.sentence_cache = SentenceEmbeddingCache(engine.encoder)
    reranker = getattr(engine.retriever, "reranker", None)
    if reranker is not None and hasattr(reranker, "cache"):
        reranker.cache = engine.sentence_cache


def in_process(engine: Engine, questions: list[tuple[str, date]]) -> dict[str, list[float]]:
    # warm the process (filters, memory maps, ONNX session) on other questions than the timed ones
    for question, as_of in questions[-3:]:
        engine.ask(AskRequest(question=question + " (warm-up)", as_of=as_of))
    samples: dict[str, list[float]] = {"search": [], "ask, new question": [], "ask, asked before": []}
    for question, as_of in questions:
        t0 = time.perf_counter()
        engine.search(question, k=10, as_of=as_of)
        samples["search"].append((time.perf_counter() - t0) * 1000)
        empty_cache(engine)
        t0 = time.perf_counter()
        engine.ask(AskRequest(question=question, as_of=as_of))
        samples["ask, new question"].append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        engine.ask(AskRequest(question=question, as_of=as_of))
        samples["ask, asked before"].append((time.perf_counter() - t0) * 1000)
    return samples


def over_http(index: Path, questions: list[tuple[str, date]]) -> tuple[dict[str, list[float]], float]:
    samples: dict[str, list[float]] = {"search": [], "ask, new question": []}
    with serve(index) as (base_url, _server, _ready, startup_s), httpx.Client(base_url=base_url, timeout=60) as client:
        for question, as_of in questions[-3:]:  # warm-up, as in process
            client.post("/v1/ask", json={"question": question + " (warm-up)", "as_of": as_of.isoformat()})
        for question, as_of in questions:
            t0 = time.perf_counter()
            client.get("/v1/search", params={"q": question, "k": 10, "as_of": as_of.isoformat()}).raise_for_status()
            samples["search"].append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            client.post("/v1/ask", json={"question": question, "as_of": as_of.isoformat()}).raise_for_status()
            samples["ask, new question"].append((time.perf_counter() - t0) * 1000)
    return samples, startup_s


def ingest(paths: list[Path], index: Path) -> float:
    t0 = time.perf_counter()
    command = byline_command("ingest", *map(str, paths), "--index", str(index), "--quiet")
    result = subprocess.run(command, cwd=ROOT, env=run_env(), capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"byline ingest failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - t0


def corpus_files() -> list[Path]:
    files = sorted(p for p in SAMPLES.iterdir() if p.is_file())
    return ([SEED] if SEED.is_dir() else []) + files


def wall(command: list[str]) -> float:
    t0 = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, env=run_env(), capture_output=True, text=True, timeout=300)
    took = time.perf_counter() - t0
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return took


# Runs a console script as ``python <script>`` would, then names the top-level packages left in sys.modules (an
# import that failed, e.g. of an optional dependency, is listed by -X importtime but is not in sys.modules).
PROBE = """
import runpy, sys
sys.argv = sys.argv[1:]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
finally:
    print("IMPORTED " + " ".join(sorted({n.split(".")[0] for n, m in list(sys.modules.items()) if m is not None})),
          file=sys.stderr)
"""


def imported_heavy(index: Path, question: str) -> dict[str, float]:
    """Heavy packages ``byline ask`` imported, each with the cumulative import time (ms) of its modules that were
    imported from outside it (``-X importtime`` lists children before their parent, indented by depth)."""
    command = [
        sys.executable,
        "-X",
        "importtime",
        "-c",
        PROBE,
        *byline_command("ask", "--index", str(index), question)[1:],
    ]
    result = subprocess.run(command, cwd=ROOT, env=run_env(), capture_output=True, text=True, timeout=300)
    imported: set[str] = set()
    entries = []
    for line in result.stderr.splitlines():
        if line.startswith("IMPORTED "):
            imported = set(line.split()[1:])
        elif line.startswith("import time:") and "|" in line:
            _, cumulative, raw = line[len("import time:") :].split("|")
            if cumulative.strip().isdigit():
                name = raw.strip()
                entries.append(((len(raw) - len(raw.lstrip())) // 2, name.split(".")[0], int(cumulative) / 1000))
    found: dict[str, float] = {}
    stack: list[str] = []  # top-level package of each enclosing import, outermost first
    for depth, package, ms in reversed(entries):  # parents before children
        del stack[depth:]
        if package in HEAVY and package in imported and package not in stack:
            found[package] = found.get(package, 0.0) + ms
        stack.append(package)
    return found


def process_start(index: Path, question: str, rounds: int) -> tuple[list[float], list[float], dict[str, float]]:
    bare = [sys.executable, "-c", BARE]
    ask = byline_command("ask", "--index", str(index), question)
    wall(ask)  # first run: page cache, ONNX export cache check
    bare_s, ask_s = [], []
    for _ in range(rounds):  # interleaved, so load from other processes hits both alike
        bare_s.append(wall(bare))
        ask_s.append(wall(ask))
    return bare_s, ask_s, imported_heavy(index, question)


def after_publish(
    index: Path, files: list[Path], questions: list[str], rounds: int
) -> tuple[list[float], list[float], float, float]:
    settings = get_settings().model_copy(update={"index_dir": index})
    engine = Engine(settings, index, get_encoder())
    as_of = date.today()
    for question in questions:  # until warm
        engine.ask(AskRequest(question=question, as_of=as_of))
    steady = []
    for _ in range(rounds):
        for question in questions:
            t0 = time.perf_counter()
            engine.ask(AskRequest(question=question, as_of=as_of))
            steady.append((time.perf_counter() - t0) * 1000)
    publish_s = ingest(files, index)
    t0 = time.perf_counter()
    if not engine.reload_if_changed():
        raise RuntimeError("the engine did not pick up the newly published version")
    reload_s = time.perf_counter() - t0
    first = []
    for question in questions:
        t0 = time.perf_counter()
        engine.ask(AskRequest(question=question, as_of=as_of))
        first.append((time.perf_counter() - t0) * 1000)
    return steady, first, reload_s, publish_s


def summary(name: str, values: list[float], reference: list[float] | None) -> list[object]:
    p50, p95 = percentile(values, 50), percentile(values, 95)
    ratio = ""
    if reference:
        ratio = f"{p50 / percentile(reference, 50):.2f}x / {p95 / percentile(reference, 95):.2f}x"
    return [name, len(values), p50, p95, max(values), ratio]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=Path, default=None, help="default: data/news-index if built, else data/index")
    parser.add_argument("--questions", type=int, default=20, help="in-process questions")
    parser.add_argument("--http-questions", type=int, default=20, help="HTTP questions (0: skip HTTP)")
    parser.add_argument("--process-rounds", type=int, default=3)
    parser.add_argument("--publish-questions", type=int, default=5)
    parser.add_argument("--md", type=Path, default=None, help="write the markdown section here")
    parser.add_argument("--json", type=Path, default=None, help="write the raw results here")
    args = parser.parse_args(argv)

    print(machine_line(), flush=True)
    index = args.index or (NEWS_INDEX if (NEWS_INDEX / "CURRENT").exists() else ROOT / "data" / "index")
    pool = [(q, date.fromisoformat(d)) for q, d in load_questions()]
    questions = pool[: args.questions]
    http_questions = pool[args.questions : args.questions + args.http_questions]  # never asked in process
    data: dict[str, object] = {}
    rows: list[list[object]] = []
    notes: list[str] = [f"backend {get_settings().embedding_backend}"]
    verdicts: list[str] = []

    encoder = get_encoder()
    settings = get_settings().model_copy(update={"index_dir": index})
    engine = Engine(settings, index, encoder)
    notes.append(f"index {index} ({len(engine.index.articles):,} articles, {len(engine.index.chunks):,} chunks)")
    local = in_process(engine, questions)
    data["in_process"] = local
    for name in ("search", "ask, new question", "ask, asked before"):
        rows.append(summary(f"in process: {name}", local[name], None if name == "search" else local["search"]))
    new_p50 = percentile(local["ask, new question"], 50) / percentile(local["search"], 50)
    new_p95 = percentile(local["ask, new question"], 95) / percentile(local["search"], 95)
    verdicts.append(f"in process new-question ask / search: p50 {new_p50:.2f}x, p95 {new_p95:.2f}x (target <= 3x)")
    del engine

    if args.http_questions:
        remote, startup_s = over_http(index, http_questions)
        data["http"] = remote
        rows.append(summary("HTTP: search", remote["search"], None))
        rows.append(summary("HTTP: ask, new question", remote["ask, new question"], remote["search"]))
        h50 = percentile(remote["ask, new question"], 50) / percentile(remote["search"], 50)
        h95 = percentile(remote["ask, new question"], 95) / percentile(remote["search"], 95)
        verdicts.append(f"HTTP new-question ask / search: p50 {h50:.2f}x, p95 {h95:.2f}x (target <= 3x)")
        notes.append(f"`byline serve` ready in {startup_s:.1f} s")

    with tempfile.TemporaryDirectory(prefix="byline-cold-") as scratch:
        small = Path(scratch) / "index"
        files = corpus_files()
        build_s = ingest(files[:-1], small)
        notes.append(f"small index: {', '.join(p.name for p in files[:-1])} (built in {build_s:.1f} s)")
        small_engine = Engine(get_settings().model_copy(update={"index_dir": small}), small, encoder)
        titles = sorted(a.title for a in small_engine.index.articles.values())
        del small_engine
        # questions about the small index's own articles (their titles), so that answers are found
        publish_questions = [f"What happened: {title}?" for title in titles][: args.publish_questions]

        # a real question (the dev set's first): what it asks decides which stages run, e.g. entity reading
        bare_s, ask_s, heavy = process_start(small, pool[0][0], args.process_rounds)
        data |= {"bare_import_s": bare_s, "byline_ask_s": ask_s, "heavy_imports_ms": heavy}
        ratio = statistics.median(ask_s) / statistics.median(bare_s)
        rows.append([f"process: bare `{BARE}` (s)", len(bare_s), statistics.median(bare_s), "", max(bare_s), ""])
        rows.append(
            ["process: `byline ask` (s)", len(ask_s), statistics.median(ask_s), "", max(ask_s), f"{ratio:.2f}x"]
        )
        shown = ", ".join(f"{name} {ms:.0f} ms" for name, ms in heavy.items()) or "none"
        verdicts.append(f"`byline ask` / bare import, median wall: {ratio:.2f}x (target <= 3x)")
        verdicts.append(f"heavy packages `byline ask` imported (cumulative import time): {shown}")

        steady, first, reload_s, publish_s = after_publish(small, files, publish_questions, rounds=3)
        data |= {"steady_ms": steady, "first_after_publish_ms": first, "reload_s": reload_s}
        rows.append(summary("after publish: steady ask", steady, None))
        rows.append(summary("after publish: first ask", first, steady))
        p_ratio = percentile(first, 50) / percentile(steady, 50)
        worst = max(first) / percentile(steady, 50)
        verdicts.append(
            f"first ask after a publish / steady ask: p50 {p_ratio:.2f}x, max {worst:.2f}x of steady p50 (target <= 2x)"
        )
        notes.append(
            f"publish: `byline ingest` with {files[-1].name} added, {publish_s:.1f} s; engine reload (background in"
            f" the service) {reload_s * 1000:.0f} ms"
        )

    markdown = "\n".join(
        [
            "### Cold paths (issue 14)",
            "",
            *[f"- {note}" for note in notes],
            "",
            table(["path", "n", "p50 (ms; process: median s)", "p95", "max", "vs reference p50 / p95"], rows),
            "",
            *[f"- {v}" for v in verdicts],
            f"- load average at end {os.getloadavg()[0]:.1f}",
        ]
    )
    data["verdicts"] = verdicts
    write_outputs(markdown, data, args.md, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
