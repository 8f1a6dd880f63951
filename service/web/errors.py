"""Exception handlers: every error is JSON ``{"detail": ...}``; unexpected failures are logged and answered
with a generic 500 message, never a stack trace."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from index.manifest import IndexError_
from service.answering.conversations import ConversationNotFound

log = logging.getLogger("byline.service")


def add_exception_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(ConversationNotFound, _on_not_found)
    app.add_exception_handler(IndexError_, _on_index_error)
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
    return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)


async def _on_not_found(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ConversationNotFound)
    return JSONResponse({"detail": f"no conversation {exc.conversation_id!r}"}, status_code=404)


async def _on_index_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("index error: %s", exc)
    return JSONResponse({"detail": f"the index cannot be used: {exc}"}, status_code=503, headers={"Retry-After": "5"})


async def _on_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"detail": "internal error; the failure was logged"}, status_code=500)
