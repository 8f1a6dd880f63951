"""``byline`` with subcommands ``ingest``, ``serve``, ``ask``, ``chat`` and ``eval``.

Each package owns its own command (``ingest.cli``, ``service.cli``, ``eval.cli``); this module only
composes them, so the one-way imports (ingest and service on index, eval on service) stay intact. Only the
command being run is imported (``byline ask`` does not pay for ingest's or eval's imports).
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version

COMMANDS = {
    "ingest": ("ingest.cli", "read articles and publish a new index version"),
    "serve": ("service.cli:serve", "run the HTTP service and chat page"),
    "ask": ("service.cli:ask", "answer one question with citations"),
    "chat": ("service.cli:chat", "an interactive conversation in the terminal"),
    "eval": ("eval.cli", "run a question set and write a report"),
}


def _resolve(target: str) -> tuple[Callable, Callable]:
    module_name, _, prefix = target.partition(":")
    module = importlib.import_module(module_name)
    prefix = f"{prefix}_" if prefix else ""
    return getattr(module, f"{prefix}add_arguments"), getattr(module, f"{prefix}run")


def _version() -> str:
    try:
        return version("byline")
    except PackageNotFoundError:  # running from a checkout that is not installed
        return "unknown"


def _chosen(argv: Sequence[str]) -> str | None:
    """The command named on the command line (the first word that is not an option), if any."""
    return next((word for word in argv if not word.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="byline", description="Questions over news articles, answered with citations."
    )
    parser.add_argument("--version", action="version", version=f"byline {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = _chosen(argv)
    subparsers: dict[str, argparse.ArgumentParser] = {}
    handlers: dict[str, Callable] = {}
    for name, (target, help_text) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        subparsers[name] = sub
        if name == chosen:
            add_arguments, run = _resolve(target)
            add_arguments(sub)
            handlers[name] = run
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        # argparse hands a subcommand's unknown options to the top-level parser; report them with the
        # subcommand's own usage, which is the one that helps
        subparsers[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        return int(handlers[args.command](args) or 0)
    except KeyboardInterrupt:  # Ctrl-C outside a command's own handling: no traceback
        print(file=sys.stderr)
        return 130
