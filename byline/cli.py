"""``byline`` with subcommands ``ingest``, ``serve``, ``ask``, ``chat`` and ``eval``.

Each package owns its own command (``ingest.cli``, ``service.cli``, ``eval.cli``); this module only
composes them, so the one-way imports (ingest and service on index, eval on service) stay intact.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="byline", description="Questions over news articles, answered with citations."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    handlers = {}
    for name, (target, help_text) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        add_arguments, run = _resolve(target)
        add_arguments(sub)
        handlers[name] = run
    args = parser.parse_args(argv)
    return int(handlers[args.command](args) or 0)
