"""``byline eval QUESTIONS.jsonl [--index DIR | --url URL] [-k 10] [--out DIR] [--limit N]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from eval.questions import QuestionFileError

DEFAULT_OUT = Path("eval-report")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("questions", type=Path, help="question file (JSON lines; own or news-quiz format)")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--index", type=Path, default=None, help="index directory, in-process (default: configured)")
    target.add_argument("--url", default=None, help="a running service, e.g. http://127.0.0.1:8000 (public API only)")
    parser.add_argument("-k", "--k", dest="k", type=int, default=10, help="passages per question (1..50, default 10)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"report directory (default {DEFAULT_OUT})")
    parser.add_argument("--limit", type=int, default=None, help="only the first N items")
    parser.add_argument(
        "--one-turn",
        choices=["ask", "chat"],
        default="ask",
        help="how one-turn items are asked (multi-turn items always go through chat)",
    )
    parser.add_argument("--api-key", default=None, help="API key for --url, if the service requires one")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def format_summary(summary: dict[str, object]) -> str:
    width = max(len(key) for key in summary)
    lines = []
    for key, value in summary.items():
        if key == "groups":
            continue
        if value is None:
            shown = "–"
        elif isinstance(value, float):
            shown = f"{value:.1f}" if key.endswith("_ms") else f"{value:.3f}"
        else:
            shown = str(value)
        lines.append(f"{key:<{width}}  {shown}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if not 1 <= args.k <= 50:
        print("byline eval: --k must be within 1..50", file=sys.stderr)
        return 2
    if args.limit is not None and args.limit < 1:
        print("byline eval: --limit must be at least 1", file=sys.stderr)
        return 2
    from service.loading import Loading

    loading = Loading("loading the index…" if args.url is None else "loading…")
    try:
        with loading:
            import httpx

            from eval.questions import load_questions
            from eval.runner import REPORT_JSON, REPORT_MD, REPORT_PNG, open_backend, run_eval
            from index.manifest import IndexError_

            try:
                load_questions(args.questions)  # a bad file is reported before the index is loaded
            except QuestionFileError as exc:
                loading.stop()
                print(f"byline eval: {exc}", file=sys.stderr)
                return 2
            try:
                backend = open_backend(index_root=args.index, url=args.url, api_key=args.api_key)
            except IndexError_ as exc:
                loading.stop()
                print(f"byline eval: cannot reach the system: {exc}", file=sys.stderr)
                return 1
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    try:
        report = run_eval(
            args.questions,
            args.out,
            index_root=args.index,
            url=args.url,
            k=args.k,
            limit=args.limit,
            one_turn=args.one_turn,
            api_key=args.api_key,
            progress=not args.no_progress,
            backend=backend,
        )
    except QuestionFileError as exc:
        print(f"byline eval: {exc}", file=sys.stderr)
        return 2
    except (IndexError_, httpx.ConnectError) as exc:
        print(f"byline eval: cannot reach the system: {exc}", file=sys.stderr)
        return 1
    print(format_summary(report.summary.model_dump(by_alias=True)))
    print(f"\nreport: {args.out / REPORT_JSON}, {args.out / REPORT_MD}, {args.out / REPORT_PNG}")
    return 0
