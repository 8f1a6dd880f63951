"""Where the time goes, per path: pyinstrument over ingest, search and ask; py-spy over the HTTP server under load.

    .venv/bin/python bench/profile_paths.py [--index data/news-index] [--articles 150] [--questions 60]

For each path the sampled time is attributed two ways and the top rows printed:

- **self time by function** (where the CPU actually is: a BLAS kernel, onnxruntime's ``run``, a regex ...);
- **inclusive time by project function** (which of our own stages owns that time: ``embed_passages``,
  ``vectors.search``, ``compose`` ...), the entry point itself left out.

Paths: ``ingest`` (``run_ingest`` of the first N news articles into a fresh directory), ``search`` / ``ask`` /
``ask all-on`` (``Engine`` over the dev questions, warm: one unprofiled pass first), and ``http``: py-spy (a sampling
profiler outside the process) over a real ``byline serve`` while POST /v1/ask runs at concurrency 4, so the event loop
and the worker threads that run the engine are both seen (pyinstrument follows one thread only).
The query paths need the news index (``make ingest-news``); without it they are skipped with a message.
"""

from __future__ import annotations

import argparse
import itertools
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import date
from pathlib import Path

from _common import CORPUS, NEWS_INDEX, ROOT, load_questions, machine_line, serve, table, write_outputs
from pyinstrument import Profiler
from pyinstrument.frame import Frame
from service_load import run_phase

from index.encoder import get_encoder
from index.settings import get_settings
from ingest.job import run_ingest
from service.answering.engine import Engine
from service.answering.schemas import AskRequest

TOP = 6
HTTP_CONCURRENCY = 4


def _project_key(frame: Frame) -> str | None:
    """``package.module.Class.function`` for frames in our own code (not bench/, not the venv), else None."""
    path = frame.file_path or ""
    if not path.startswith(str(ROOT)) or "/bench/" in path or "/.venv/" in path:
        return None
    module = ".".join(Path(path).relative_to(ROOT).with_suffix("").parts)
    return ".".join(part for part in (module, frame.class_name, frame.function) if part)


def _walk(frame: Frame, parent: str, stack: tuple[str, ...], self_time: dict, inclusive: dict) -> None:
    if frame.is_synthetic_leaf:  # pyinstrument's "[self]" child: time spent in the parent itself
        self_time[parent] += frame.time
        return
    where = f"{frame.file_path_short}:{frame.line_no}" if frame.file_path_short else "built-in"
    name = f"{frame.function} ({where})"
    if not frame.children:
        self_time[name] += frame.time
    key = _project_key(frame)
    if key is not None and key not in stack:  # a recursive or re-entered function counts once
        inclusive[key] += frame.time
        stack = (*stack, key)
    for child in frame.children:
        _walk(child, name, stack, self_time, inclusive)


def profile(label: str, work: Callable[[], object], entry: str) -> tuple[str, dict[str, object]]:
    """pyinstrument over ``work()`` in this process; ``entry`` (the called function itself) is left out."""
    profiler = Profiler(interval=0.001, async_mode="enabled")
    started = time.perf_counter()
    profiler.start()
    work()
    profiler.stop()
    wall = time.perf_counter() - started
    root = profiler.last_session.root_frame() if profiler.last_session else None
    self_time: dict[str, float] = defaultdict(float)
    inclusive: dict[str, float] = defaultdict(float)
    if root is not None:
        _walk(root, "", (), self_time, inclusive)
    inclusive.pop(entry, None)
    total = root.time if root is not None else 0.0
    return report(label, self_time, inclusive, total, wall, unit="s")


def report(
    label: str, self_time: dict[str, float], inclusive: dict[str, float], total: float, wall: float, unit: str
) -> tuple[str, dict[str, object]]:
    """The top rows of both attributions as a markdown table, shares of everything sampled."""
    total = total or 1.0
    top_self = sorted(self_time.items(), key=lambda kv: -kv[1])[:TOP]
    top_incl = sorted(inclusive.items(), key=lambda kv: -kv[1])[:TOP]
    rows = [
        [
            i + 1,
            s[0] if s else "",
            f"{100 * s[1] / total:.0f}%" if s else "",
            c[0] if c else "",
            f"{100 * c[1] / total:.0f}%" if c else "",
        ]
        for i, (s, c) in enumerate(itertools.zip_longest(top_self, top_incl))
    ]
    sampled = f"{total:.1f} s sampled" if unit == "s" else f"{total:.0f} samples"
    md = f"#### {label} ({wall:.1f} s wall, {sampled})\n\n" + table(
        ["#", "self time: function", "share", "inclusive: project function", "share"], rows
    )
    largest = top_incl[0][0] if top_incl else "-"
    data = {
        "wall_s": wall,
        "sampled": total,
        "largest_project": largest,
        "top_self": top_self,
        "top_inclusive": top_incl,
    }
    print(md, flush=True)
    return md, data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=Path, default=NEWS_INDEX)
    parser.add_argument("--articles", type=int, default=150, help="news articles ingested in the ingest profile")
    parser.add_argument("--questions", type=int, default=60, help="dev questions per query path")
    parser.add_argument("--http-seconds", type=float, default=20.0, help="py-spy sampling time of the HTTP path")
    parser.add_argument("--md", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    print(machine_line(), flush=True)

    encoder = get_encoder()
    encoder.embed_query("warm-up")
    parts: list[str] = []
    data: dict[str, object] = {}
    summary: list[list[object]] = []

    def record(name: str, result: tuple[str, dict[str, object]]) -> None:
        parts.append(result[0])
        data[name] = result[1]
        summary.append([name, result[1]["largest_project"], f"{result[1]['wall_s']:.1f}"])

    with tempfile.TemporaryDirectory(prefix="byline-profile-") as scratch:
        subset = Path(scratch) / "subset.jsonl"
        with CORPUS.open(encoding="utf-8") as src, subset.open("w", encoding="utf-8") as dst:
            dst.writelines(itertools.islice((line for line in src if line.strip()), args.articles))
        settings = get_settings()

        def ingest() -> object:
            return run_ingest(
                [subset], index_root=Path(scratch) / "index", settings=settings, encoder=encoder, progress=False
            )

        record(
            f"ingest ({args.articles} articles)",
            profile(f"ingest, first {args.articles} news articles", ingest, "ingest.job.run_ingest"),
        )

    if not (args.index / "CURRENT").exists():
        note = f"query paths skipped: no index at {args.index} (run `make ingest-news`)"
        print(note, flush=True)
        parts.append(note)
    else:
        questions = [(q, date.fromisoformat(d)) for q, d in load_questions(limit=args.questions)]
        base = get_settings().model_copy(update={"index_dir": args.index})
        default = Engine(base, args.index, encoder)
        all_on = Engine(base.model_copy(update={"rerank": "sentence"}), args.index, encoder)
        all_on.sentence_cache = default.sentence_cache
        for q, d in questions:  # warm: sentence cache filled as in a running service
            default.ask(AskRequest(question=q, as_of=d))
            all_on.ask(AskRequest(question=q, as_of=d))

        def run(fn: Callable[[str, date], object]) -> Callable[[], None]:
            return lambda: [fn(q, d) for q, d in questions] and None

        record(
            "search",
            profile(
                "search (hybrid, k=10)",
                run(lambda q, d: default.search(q, k=10, as_of=d)),
                "service.answering.engine.Engine.search",
            ),
        )
        record(
            "ask",
            profile(
                "ask (default)",
                run(lambda q, d: default.ask(AskRequest(question=q, as_of=d))),
                "service.answering.engine.Engine.ask",
            ),
        )
        record(
            "ask all-on",
            profile(
                "ask (all-on: rerank=sentence)",
                run(lambda q, d: all_on.ask(AskRequest(question=q, as_of=d))),
                "service.answering.engine.Engine.ask",
            ),
        )
        record("http", http_profile(args.index, questions, args.http_seconds))

    markdown = "### Profiles (pyinstrument)\n\n" + table(["path", "largest project cost", "wall s"], summary)
    markdown += "\n\n" + "\n\n".join(parts)
    write_outputs(markdown, data, args.md, args.json)
    return 0


def http_profile(index: Path, questions: list[tuple[str, date]], seconds: float) -> tuple[str, dict[str, object]]:
    """py-spy over the real ``byline serve`` process while POST /v1/ask runs at concurrency 4: every thread of the
    server (event loop and the worker threads that run the engine), idle waits left out."""
    label = f"HTTP POST /v1/ask, real server under load (py-spy, concurrency {HTTP_CONCURRENCY}, {seconds:.0f} s)"
    pyspy = Path(sys.executable).with_name("py-spy")
    pairs = [(q, d.isoformat()) for q, d in questions]
    with tempfile.TemporaryDirectory(prefix="byline-pyspy-") as scratch, serve(index) as (url, server, _, _):
        run_phase(url, pairs, HTTP_CONCURRENCY, 5, 30)  # warm-up
        raw = Path(scratch) / "http.txt"
        command = [str(pyspy), "record", "--pid", str(server.pid), "--format", "raw", "--output", str(raw)]
        command += ["--duration", str(int(seconds)), "--rate", "250", "--nonblocking", "--full-filenames"]
        try:
            recorder = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        except OSError as exc:
            return f"#### {label}\n\nnot profiled: py-spy could not start ({exc})", {
                "largest_project": "-",
                "wall_s": 0.0,
            }
        load = run_phase(url, pairs, HTTP_CONCURRENCY, seconds, 30)
        _, err = recorder.communicate(timeout=seconds + 120)
        if recorder.returncode != 0 or not raw.exists():
            note = f"not profiled: py-spy exited {recorder.returncode}: {err.strip()[-300:]}"
            return f"#### {label}\n\n{note}", {"largest_project": "-", "wall_s": 0.0}
        self_time, inclusive, total = collapse(raw.read_text(encoding="utf-8"))
    md, data = report(label, self_time, inclusive, total, seconds, unit="samples")
    md += f"\n\nLoad while sampled: {load['requests']} requests, {load['rps']:.1f} req/s, {load['errors']} errors."
    return md, data


_FRAME = re.compile(r"^(?P<function>.*) \((?P<path>.*):(?P<line>\d+)\)$")


def collapse(text: str) -> tuple[dict[str, float], dict[str, float], float]:
    """Self samples per leaf function and inclusive samples per project function, from py-spy's raw output."""
    self_time: dict[str, float] = defaultdict(float)
    inclusive: dict[str, float] = defaultdict(float)
    total = 0.0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = float(count)
        total += samples
        frames = [_FRAME.match(frame) for frame in stack.split(";")]
        leaf = frames[-1]
        if leaf is not None:
            self_time[f"{leaf['function']} ({_short(leaf['path'])}:{leaf['line']})"] += samples
        seen: set[str] = set()
        for frame in frames:
            if frame is None:
                continue
            key = _project_path_key(frame["path"], frame["function"])
            if key is not None and key not in seen:
                seen.add(key)
                inclusive[key] += samples
    return self_time, inclusive, total


def _short(path: str) -> str:
    marker = "site-packages/"
    return path.split(marker, 1)[1] if marker in path else Path(path).name


def _project_path_key(path: str, function: str) -> str | None:
    if not path.startswith(str(ROOT)) or "/bench/" in path or "/.venv/" in path:
        return None
    return ".".join(Path(path).relative_to(ROOT).with_suffix("").parts) + f".{function}"


if __name__ == "__main__":
    sys.exit(main())
