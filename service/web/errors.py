"""Exception handlers: every error is JSON ``{"detail": ...}``; unexpected failures are logged and answered
with a generic 500 message, never a stack trace."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from index.manifest import IndexError_
from service.answering.conversations import ConversationNotFound

log = logging.getLogger("byline.service")


def add_exception_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(ConversationNotFound, _on_not_found)
    app.add_exception_handler(IndexError_, _on_index_error)
    app.add_exception_handler(sqlite3.Error, _on_store_error)
    app.add_exception_handler(Exception, _on_error)


def _validation_message(errors: list[dict[str, Any]]) -> str:
    parts = []
    for error in errors[:5]:
        loc = [str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path", "header")]
        where = ".".join(loc) or "request"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts) + more


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
        for e in exc.errors()
    ]
    return JSONResponse({"detail": _validation_message(errors), "errors": errors}, status_code=422)


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else jsonable_encoder(exc.detail)
    headers = exc.headers
    if exc.status_code == 405 and (allowed := allowed_methods(request)):
        headers = {**(headers or {}), "Allow": ", ".join(allowed)}
    return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=headers)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app accepts at this path (Starlette lists only the first route's, so a
    path served by a GET route and a DELETE route would answer ``Allow: GET, HEAD``)."""
    methods: set[str] = set()
    for route in _routes(request.app.router.routes):
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)


def _routes(routes: list[Any]) -> Iterator[Any]:
    """The app's routes, flattened (FastAPI keeps an included router as one entry with its own routes)."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _routes(included.routes)
        else:
            yield route


async def _on_not_found(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ConversationNotFound)
    return JSONResponse({"detail": f"no conversation {exc.conversation_id!r}"}, status_code=404)


async def _on_index_error(request: Request, exc: Exception) -> JSONResponse:
    from service.web.deps import public_reason  # deps imports the state, which imports the engine

    log.error("index error: %s", exc)
    return JSONResponse(
        {"detail": f"the index cannot be used: {public_reason(str(exc))}"},
        status_code=503,
        headers={"Retry-After": "5"},
    )


_STORE_REASONS = {"SQLITE_FULL": "its disk is full", "SQLITE_IOERR_WRITE": "a write failed: disk full?"}


async def _on_store_error(request: Request, exc: Exception) -> JSONResponse:
    """The conversation store (SQLite) failed, e.g. on a full disk: 503 for the conversation routes, which are
    the only ones that use it; one-shot questions (``/v1/ask``, ``/v1/chat/completions``) keep answering."""
    assert isinstance(exc, sqlite3.Error)
    name = getattr(exc, "sqlite_errorname", "") or ""
    reason = _STORE_REASONS.get(name) or ("a write failed" if name.startswith("SQLITE_IOERR") else "database error")
    log.error("conversation store error on %s %s: %s (%s)", request.method, request.url.path, exc, name or "?")
    return JSONResponse(
        {
            "detail": f"conversations are unavailable: the conversation store cannot be written ({reason}); "
            "one-shot questions (/v1/ask) still answer"
        },
        status_code=503,
        headers={"Retry-After": "30"},
    )


async def _on_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"detail": "internal error; the failure was logged"}, status_code=500)
