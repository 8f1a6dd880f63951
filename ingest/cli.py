"""``byline ingest PATH... [--index DIR] [--prune] [--rebuild]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from index.manifest import IndexError_


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", type=Path, help="files, folders and JSONL files, mixed")
    parser.add_argument("--index", type=Path, default=None, help="index directory (default: settings)")
    parser.add_argument("--prune", action="store_true", help="remove articles not present in PATHs")
    parser.add_argument("--rebuild", action="store_true", help="ignore the published index and build afresh")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from ingest.job import IngestError, run_ingest

    try:
        summary = run_ingest(
            args.paths, index_root=args.index, prune=args.prune, rebuild=args.rebuild, progress=not args.quiet
        )
    except (IngestError, IndexError_) as exc:
        print(f"ingest failed: {exc}", file=sys.stderr)
        return 1
    print(summary.render())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ingest", description="Ingest articles into the index.")
    add_arguments(parser)
    return run(parser.parse_args(argv))
