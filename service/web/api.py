"""Byline's HTTP service: the JSON API under ``/v1``, an OpenAI-compatible endpoint, and the chat page.

This module only assembles the app; each job lives in a module of its own:

- ``service.web.state``: the engine, chat service and conversation store of one app, and the index reloader;
- ``service.web.deps``: ``Annotated`` dependencies for routes (``StateDep``, ``SettingsDep``, ``EngineDep``,
  ``ChatDep``, ``IndexDep``);
- ``service.web.security`` / ``service.web.ratelimit``: the ``/v1`` guard (API key, rate limit);
- ``service.web.middleware``: body limit, access log, safety headers; ``service.web.metrics``: Prometheus;
- ``service.web.errors``: exception handlers; ``service.web.sse``: server-sent events;
- ``service.web.openai_compat``: the OpenAI chat-completions format;
- ``service.web.routes``: the routes by area (answers, articles, openai under ``/v1``; operations, page).

The engine does blocking CPU work, so every engine call runs in the threadpool. Errors are always JSON
``{"detail": ...}``: 401 (API key), 404 (unknown article or conversation), 413 (body too large), 422
(invalid input, with a readable message), 429 (rate limit, with ``Retry-After``), 503 (index not loaded
yet). Unexpected failures are logged and answered with a generic 500 message, never a stack trace.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.middleware.cors import CORSMiddleware

from index.settings import Settings, get_settings
from service.answering.engine import Engine
from service.web.errors import add_exception_handlers
from service.web.middleware import AccessMiddleware, BodyLimitMiddleware, access_log
from service.web.routes import answers, articles, docs, openai, operations, page
from service.web.routes.page import STATIC_DIR
from service.web.state import ServiceState

__all__ = ["create_app"]

OPENAPI_TAGS = [
    {"name": "answers", "description": "One-shot questions."},
    {"name": "conversations", "description": "Follow-up questions with remembered turns."},
    {"name": "search", "description": "Ranked passages without an answer."},
    {"name": "articles", "description": "The indexed articles."},
    {"name": "openai", "description": "OpenAI-compatible endpoints."},
    {"name": "operations", "description": "Health, readiness and metrics."},
]


def configure_logging() -> None:
    """JSON access lines on stderr (one per request), plain lines for the rest of byline's loggers."""
    if not access_log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        access_log.addHandler(handler)
        access_log.setLevel(logging.INFO)
        access_log.propagate = False
    service_log = logging.getLogger("byline")
    if not service_log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        service_log.addHandler(handler)
        service_log.setLevel(logging.INFO)


def create_app(settings: Settings | None = None, engine: Engine | None = None) -> FastAPI:
    """The service. With ``engine`` given it is ready at once; otherwise the engine loads in the background
    (``/readyz`` answers 503 until it has) and keeps retrying while there is no usable index."""
    settings = settings or (engine.settings if engine is not None else get_settings())
    configure_logging()
    state = ServiceState(settings, engine)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(state.run(), name="byline-index-reloader")
        try:
            yield
        finally:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
            state.close()

    app = FastAPI(
        title="Byline",
        summary="Conversational question answering over news articles, with citations a reader can check.",
        version="0.1.0",
        description=(
            "Every answer sentence carries `[n]` markers into a numbered list of sources; each source quotes "
            "the article's sentence(s) with character spans into `GET /v1/articles/{id}` text. When the "
            "articles do not answer, the response abstains and lists related articles.\n\n"
            "Authentication (only when API keys are configured): `Authorization: Bearer <key>` or "
            "`X-API-Key: <key>`."
        ),
        lifespan=lifespan,
        openapi_tags=OPENAPI_TAGS,
        docs_url=None,  # served by routes/docs.py from the installed Swagger UI files, not a CDN
        redoc_url=None,  # likewise
    )
    app.state.byline = state
    for area in (answers, articles, openai, operations, page, docs):
        app.include_router(area.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.mount(docs.ASSETS_URL, StaticFiles(directory=docs.ASSETS_DIR), name="docs-assets")
    add_exception_handlers(app)

    # middleware: the last added runs first (CORS outermost, then the access log, then the body limit)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(AccessMiddleware, metrics=state.metrics)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=[origin.rstrip("/") for origin in settings.cors_origins],
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type"],
            expose_headers=["Retry-After", "X-Request-Id"],
            max_age=600,
        )
    return app
