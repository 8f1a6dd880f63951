"""``python -m eval QUESTIONS.jsonl ...``: the same as ``byline eval``."""

from __future__ import annotations

import argparse
import sys

from eval.cli import add_arguments, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval", description="Run a question set and write a report.")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
