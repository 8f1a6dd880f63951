"""Where the time goes, per path: pyinstrument over ingest, search, ask (default and all-on) and the HTTP app.

    .venv/bin/python bench/profile_paths.py [--index data/news-index] [--articles 150] [--questions 60]

For each path the sampled time is attributed two ways and the top rows printed:

- **self time by function** (where the CPU actually is: a BLAS kernel, onnxruntime's ``run``, a regex ...);
- **inclusive time by project function** (which of our own stages owns that time: ``embed_passages``,
  ``vectors.search``, ``compose`` ...), the entry point itself left out.

Paths: ``ingest`` (``run_ingest`` of the first N news articles into a fresh directory), ``search`` / ``ask`` /
``ask all-on`` (``Engine`` over the dev questions, warm: one unprofiled pass first), and ``http`` (``POST /v1/ask``
through the real FastAPI app in process, httpx's ASGI transport: middleware, validation, serialisation).
The query paths need the news index (``make ingest-news``); without it they are skipped with a message.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import date
from pathlib import Path

import httpx
from _common import CORPUS, NEWS_INDEX, ROOT, load_questions, machine_line, table, write_outputs
from pyinstrument import Profiler
from pyinstrument.frame import Frame

from index.encoder import get_encoder
from index.settings import get_settings
from ingest.job import run_ingest
from service.api import create_app
from service.engine import Engine
from service.schemas import AskRequest

TOP = 6


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
    total = (root.time if root is not None else 0.0) or 1.0
    inclusive.pop(entry, None)
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
    md = f"#### {label} ({wall:.1f} s wall, {total:.1f} s sampled)\n\n" + table(
        ["#", "self time: function", "share", "inclusive: project function", "share"], rows
    )
    largest = top_incl[0][0] if top_incl else "-"
    data = {
        "wall_s": wall,
        "sampled_s": total,
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
                "service.engine.Engine.search",
            ),
        )
        record(
            "ask",
            profile(
                "ask (default)",
                run(lambda q, d: default.ask(AskRequest(question=q, as_of=d))),
                "service.engine.Engine.ask",
            ),
        )
        record(
            "ask all-on",
            profile(
                "ask (all-on: rerank=sentence)",
                run(lambda q, d: all_on.ask(AskRequest(question=q, as_of=d))),
                "service.engine.Engine.ask",
            ),
        )
        record(
            "http",
            profile(
                "HTTP POST /v1/ask (in-process ASGI)",
                lambda: asyncio.run(_http(default, questions)),
                "service.routes.answers.ask",
            ),
        )

    markdown = "### Profiles (pyinstrument)\n\n" + table(["path", "largest project cost", "wall s"], summary)
    markdown += "\n\n" + "\n\n".join(parts)
    write_outputs(markdown, data, args.md, args.json)
    return 0


async def _http(engine: Engine, questions: list[tuple[str, date]]) -> None:
    app = create_app(engine.settings.model_copy(update={"rate_limit_per_minute": 1_000_000}), engine=engine)
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        for q, d in questions:
            response = await client.post("/v1/ask", json={"question": q, "as_of": d.isoformat()})
            response.raise_for_status()


if __name__ == "__main__":
    sys.exit(main())
