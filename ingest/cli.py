"""``byline ingest PATH... [--index DIR] [--prune] [--rebuild] [--wait] [--engine ray [--ray-address ADDR]]``.

Every PATH must exist (a mistyped path is an error before anything is read or written, so ``--prune``
never removes articles because of a typo). Only one job writes an index at a time: a second one fails
at once naming the job that holds the index, or waits for it with ``--wait``. Everything printed has
its control characters escaped (:func:`ingest.readers.printable`).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from index.manifest import IndexError_
from ingest.readers import printable


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", type=Path, help="files, folders and JSONL files, mixed")
    parser.add_argument("--index", type=Path, default=None, help="index directory (default: settings)")
    parser.add_argument("--prune", action="store_true", help="remove articles not present in PATHs")
    parser.add_argument("--rebuild", action="store_true", help="ignore the published index and build afresh")
    parser.add_argument(
        "--wait", action="store_true", help="if another ingest job is writing the index, wait for it (default: fail)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="where cleaning, chunking and embedding run: this process (default) or Ray (pip install -e '.[ray]')",
    )
    parser.add_argument(
        "--ray-address",
        default=None,
        help="with --engine ray: the Ray cluster to join (default: RAY_ADDRESS, else a local Ray is started)",
    )


def missing_paths(paths: list[Path]) -> list[Path]:
    """The paths that do not exist (a broken symbolic link counts as missing)."""
    return [path for path in paths if not os.path.exists(path)]


def _fail(message: str) -> int:
    print(f"ingest failed: {printable(message)}", file=sys.stderr)
    return 1


def run(args: argparse.Namespace) -> int:
    missing = missing_paths(args.paths)
    if missing:
        names = ", ".join(str(path) for path in missing)
        return _fail(f"no such file or directory: {names}; nothing was read or written")

    from ingest.job import IngestError, run_ingest

    options = {}
    if getattr(args, "engine", "local") == "ray":
        from ingest.ray_engine import run_ingest_ray as run_ingest

        options["address"] = args.ray_address
    try:
        summary = run_ingest(
            args.paths,
            index_root=args.index,
            prune=args.prune,
            rebuild=args.rebuild,
            progress=not args.quiet,
            wait=args.wait,
            **options,
        )
    except (IngestError, IndexError_) as exc:
        return _fail(str(exc))
    print(summary.render())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ingest", description="Ingest articles into the index.")
    add_arguments(parser)
    return run(parser.parse_args(argv))
