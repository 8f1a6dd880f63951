"""``byline serve``, ``byline ask`` and ``byline chat``: the service's commands (composed by ``byline.cli``)."""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from index.settings import Settings, get_settings

if TYPE_CHECKING:
    from service.answering.engine import Engine
    from service.answering.schemas import Answer


def _settings(args: argparse.Namespace) -> Settings:
    settings = get_settings()
    updates: dict[str, object] = {}
    if getattr(args, "index", None):
        updates["index_dir"] = Path(args.index)
    if getattr(args, "host", None):
        updates["host"] = args.host
    if getattr(args, "port", None):
        updates["port"] = args.port
    return settings.model_copy(update=updates) if updates else settings


def _add_index(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--index", type=Path, default=None, help="index directory (default: settings)")


def _iso_date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {value!r}") from exc


def _add_question_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--as-of", type=_iso_date, default=None, metavar="DATE", help="the moment asked (YYYY-MM-DD)")
    parser.add_argument("--source", action="append", default=None, metavar="S", help="only this publication")
    parser.add_argument("-k", "--k", dest="k", type=int, default=10, help="passages retrieved behind the answer (1-50)")


# ==================================================================================================
# serve


def port_problem(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on (in use, no such address, no permission), or None when it can.

    Bound and released at once with the options uvicorn uses, so that a busy port is one clear line before
    anything is loaded, instead of a start-up banner followed by uvicorn's ``Errno 98``.
    """
    import errno
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return f"cannot listen on {host}: {exc.strerror}"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"port {port} on {host} is already in use; stop what is using it or pick another with --port"
            return f"cannot listen on {host}:{port}: {exc.strerror or exc}"
    return None


def serve_add_arguments(parser: argparse.ArgumentParser) -> None:
    _add_index(parser)
    parser.add_argument("--host", default=None, help="address to listen on (default: settings, 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (default: settings, 8000)")
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])


def serve_run(args: argparse.Namespace) -> int:
    import uvicorn

    from service.web.api import create_app
    from service.web.server import uvicorn_options

    settings = _settings(args)
    busy = port_problem(settings.host, settings.port)
    if busy:
        print(f"byline serve: {busy}", file=sys.stderr)
        return 1
    app = create_app(settings)
    print(f"Byline on http://{settings.host}:{settings.port}/ (index {settings.index_dir})", file=sys.stderr)
    # one JSON access line per request comes from the app itself; timeouts, connection limit and forwarded
    # headers come from the settings (service/web/server.py)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=args.log_level,
        access_log=False,
        **uvicorn_options(settings),
    )
    return 0


# ==================================================================================================
# ask


def ask_add_arguments(parser: argparse.ArgumentParser) -> None:
    _add_index(parser)
    parser.add_argument("--json", action="store_true", help="print the answer as JSON")
    _add_question_options(parser)
    parser.add_argument("question", nargs="+", help="the question")


def _engine(settings: Settings) -> Engine:
    from service.answering.engine import Engine

    return Engine(settings=settings)


def ask_run(args: argparse.Namespace) -> int:
    from index.encoder import preload_encoder
    from service.loading import Loading

    preload_encoder()  # the model loads while the engine's modules import

    with Loading("loading the index…"):
        from pydantic import ValidationError

        from index.manifest import IndexError_
        from service.answering.reading.base import ReaderUnavailable
        from service.answering.schemas import AskRequest, Filters

        settings = _settings(args)
        question = " ".join(args.question).strip()
        try:
            request = AskRequest(question=question, k=args.k, as_of=args.as_of, filters=Filters(sources=args.source))
        except ValidationError as exc:
            error: tuple[str, int] | None = (_first_error(exc), 2)
        else:
            try:
                answer = _engine(settings).ask(request)
                error = None
            except (IndexError_, ReaderUnavailable) as exc:
                error = (str(exc), 1)
    if error is not None:
        print(f"byline ask: {error[0]}", file=sys.stderr)
        return error[1]
    if args.json:
        print(answer.model_dump_json(indent=2))
    else:
        print_answer(answer, sys.stdout)
    return 0


def _first_error(exc: Exception) -> str:
    errors = getattr(exc, "errors", lambda: [])()
    if errors:
        first = errors[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        return f"{where}: {first.get('msg')}"
    return str(exc)


def print_answer(answer: Answer, out: TextIO) -> None:
    """The answer with its [n] markers, then the numbered sources with their quotes, then the latency."""
    if answer.standalone_question and answer.standalone_question != answer.question:
        print(f"(searched: {answer.standalone_question})", file=out)
    if answer.assumed:
        print(f"(assumed you mean {answer.assumed})", file=out)
    if answer.abstained:
        print("No answer in the articles.", file=out)
    elif answer.short_answer is not None:
        print(f"Answer: {answer.short_answer.text} [{answer.short_answer.source}]\n", file=out)
    print(answer.answer, file=out)
    if answer.sources:
        print("\nSources:", file=out)
        for source in answer.sources:
            details = ", ".join(
                p for p in (source.source, source.published.isoformat() if source.published else None) if p
            )
            print(f"[{source.n}] {source.title}" + (f" ({details})" if details else ""), file=out)
            if source.url:
                print(f"    {source.url}", file=out)
            for quote in source.quotes:
                print(f'    "{quote.text}"  [chars {quote.start}-{quote.end} of {source.article_id}]', file=out)
    if answer.abstained and answer.related:
        print("\nRelated articles:", file=out)
        for item in answer.related:
            details = ", ".join(p for p in (item.source, item.published.isoformat() if item.published else None) if p)
            print(f"- {item.title}" + (f" ({details})" if details else ""), file=out)
    timings = answer.timings
    print(
        f"\n{timings.total_ms:.0f} ms (retrieval {timings.retrieval_ms:.0f} ms, answer {timings.answer_ms:.0f} ms)"
        f" · index {answer.index_version}",
        file=out,
    )


# ==================================================================================================
# chat


def chat_add_arguments(parser: argparse.ArgumentParser) -> None:
    _add_index(parser)
    _add_question_options(parser)
    parser.add_argument("--conversation", default=None, metavar="ID", help="continue this conversation")


CHAT_HELP = "Ask a question; follow up in your own words. /new starts a new conversation, /quit ends."


def chat_run(args: argparse.Namespace, stdin: TextIO | None = None, stdout: TextIO | None = None) -> int:
    from index.encoder import preload_encoder
    from service.loading import Loading

    preload_encoder()  # the model loads while the engine's modules import
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    loading = Loading("loading the index…")
    try:
        with loading:
            from pydantic import ValidationError

            from index.manifest import IndexError_
            from service.answering.chat import ChatService
            from service.answering.conversations import ConversationNotFound, open_store
            from service.answering.reading.base import ReaderUnavailable
            from service.answering.schemas import ChatRequest, Filters

            settings = _settings(args)
            try:
                engine = _engine(settings)
            except (IndexError_, ReaderUnavailable) as exc:
                loading.stop()
                print(f"byline chat: {exc}", file=sys.stderr)
                return 1
            store = open_store(settings, engine.root)
            service = ChatService(engine, store, settings=settings)
    except KeyboardInterrupt:  # Ctrl-C while loading: nothing was asked yet
        print(file=sys.stderr)
        return 130
    conversation_id: str | None = args.conversation
    if conversation_id and not store.exists(conversation_id):
        print(f"byline chat: no conversation {conversation_id!r}", file=sys.stderr)
        store.close()
        return 1
    interactive = stdin.isatty()
    if interactive:
        print(CHAT_HELP, file=stdout)
    try:
        while True:
            if interactive:
                print("\n> ", end="", file=stdout, flush=True)
            line = stdin.readline()
            if not line:
                break
            question = line.strip()
            if not question:
                continue
            if question in ("/quit", "/exit"):
                break
            if question == "/new":
                conversation_id = None
                print("(new conversation)", file=stdout)
                continue
            if question == "/help":
                print(CHAT_HELP, file=stdout)
                continue
            try:
                request = ChatRequest(
                    question=question,
                    conversation_id=conversation_id,
                    k=args.k,
                    as_of=args.as_of,
                    filters=Filters(sources=args.source),
                )
                answer = service.chat(request)
            except ValidationError as exc:
                print(f"(not asked: {_first_error(exc)})", file=stdout)
                continue
            except ConversationNotFound:
                conversation_id = None
                print("(the conversation was deleted; starting a new one)", file=stdout)
                continue
            conversation_id = answer.conversation_id
            if not interactive:
                print(f"> {question}", file=stdout)
            print_answer(answer, stdout)
            stdout.flush()
    except KeyboardInterrupt:
        print(file=stdout)
    finally:
        store.close()
    if conversation_id:
        print(f"\n(conversation {conversation_id})", file=stdout)
    return 0


# ==================================================================================================
# python -m service


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service", description="Run the Byline HTTP service.")
    serve_add_arguments(parser)
    return serve_run(parser.parse_args(argv))
