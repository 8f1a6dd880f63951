"""Byline's HTTP service: the JSON API under ``/v1``, an OpenAI-compatible endpoint, and the chat page.

Composition follows the usual FastAPI layout: one typed ``Settings`` object, the engine and the chat
service handed to routes through ``Annotated`` dependencies (``EngineDep``, ``ChatDep``, ``IndexDep``),
and a ``/v1`` router whose router-level dependency checks the API key and the rate limit. The engine
does blocking CPU work, so every engine call runs in the threadpool.

Errors are always JSON ``{"detail": ...}``: 401 (API key), 404 (unknown article or conversation),
413 (body too large), 422 (invalid input, with a readable message), 429 (rate limit, with
``Retry-After``), 503 (index not loaded yet). Unexpected failures are logged and answered with a
generic 500 message, never a stack trace.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import math
import re
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, suppress
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, Security
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from index.manifest import IndexError_
from index.models import Span, is_safe_id
from index.reader import LoadedIndex
from index.settings import Settings, get_settings
from index.tokens import count_tokens
from service.chat import ChatService, sources_footer
from service.conversations import Conversation, ConversationNotFound, ConversationStore
from service.engine import Engine
from service.schemas import Answer, AskRequest, ChatAnswer, ChatRequest, ErrorResponse, Filters, SearchResponse

log = logging.getLogger("byline.service")
access_log = logging.getLogger("byline.access")

STATIC_DIR = Path(__file__).resolve().parent / "static"
API_PREFIX = "/v1"
MODEL_ID = "byline"
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "Missing or wrong API key (when keys are configured)."},
    413: {"model": ErrorResponse, "description": "Request body too large."},
    422: {"model": ErrorResponse, "description": "Invalid input; `detail` says what is wrong."},
    429: {"model": ErrorResponse, "description": "Rate limit exceeded; see the `Retry-After` header."},
    503: {"model": ErrorResponse, "description": "The index is not loaded yet."},
}
SSE_DOC = (
    'With `"stream": true` the answer comes as server-sent events (`text/event-stream`): `meta` '
    '(conversation id, turn, standalone question, index version), `delta` (`{"text": ...}` pieces of the '
    "answer, markers included), `sources` (numbered sources with quotes and spans, related articles, "
    "abstention flag), then `done` (the complete answer JSON). A failure after the stream started comes "
    "as an `error` event."
)


# ==================================================================================================
# metrics, rate limiting, middleware


class Metrics:
    """Prometheus metrics in a registry of the app's own (several apps may live in one process)."""

    def __init__(self, state: ServiceState) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "byline_http_requests", "HTTP requests by route and status.", ["method", "route", "status"],
            registry=self.registry,
        )  # fmt: skip
        self.latency = Histogram(
            "byline_http_request_seconds", "HTTP request latency by route (until the last byte).",
            ["method", "route"], registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )  # fmt: skip
        stage_buckets = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
        self.retrieval = Histogram(
            "byline_retrieval_seconds", "Retrieval time per question.", registry=self.registry, buckets=stage_buckets
        )
        self.answer = Histogram(
            "byline_answer_seconds", "Answer composition time per question.", registry=self.registry,
            buckets=stage_buckets,
        )  # fmt: skip
        self.abstentions = Counter(
            "byline_abstentions", "Questions answered with an abstention.", registry=self.registry
        )
        self.reloads = Counter("byline_index_reloads", "Index versions loaded while serving.", registry=self.registry)
        Gauge("byline_index_chunks", "Chunks in the served index version.", registry=self.registry).set_function(
            lambda: state.index_size()[1]
        )
        Gauge("byline_index_articles", "Articles in the served index version.", registry=self.registry).set_function(
            lambda: state.index_size()[0]
        )
        Gauge(
            "byline_ready", "1 when an index is loaded and questions are answered.", registry=self.registry
        ).set_function(lambda: 1.0 if state.engine is not None else 0.0)

    def observe_answer(self, answer: Answer) -> None:
        self.retrieval.observe(answer.timings.retrieval_ms / 1000)
        self.answer.observe(answer.timings.answer_ms / 1000)
        if answer.abstained:
            self.abstentions.inc()


class RateLimiter:
    """Token buckets of ``per_minute`` requests per client, refilled continuously."""

    def __init__(self, per_minute: int, max_clients: int = 100_000) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.max_clients = max_clients
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def hit(self, client: str) -> float:
        """Take one request from ``client``'s bucket; return 0 when allowed, else seconds to wait."""
        now = time.monotonic()
        with self._lock:
            tokens, stamp = self._buckets.get(client, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - stamp) * self.rate)
            if tokens >= 1.0:
                self._buckets[client] = (tokens - 1.0, now)
                if len(self._buckets) > self.max_clients:
                    self._evict(now)
                return 0.0
            self._buckets[client] = (tokens, now)
            return (1.0 - tokens) / self.rate

    def _evict(self, now: float) -> None:
        full = [
            k for k, (tokens, stamp) in self._buckets.items() if tokens + (now - stamp) * self.rate >= self.capacity
        ]
        for key in full:
            del self._buckets[key]


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=f"request body larger than {limit} bytes")


class BodyLimitMiddleware:
    """413 JSON for bodies over the limit: by Content-Length up front, else while the body is read."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None:
            try:
                too_large = int(declared) > self.max_bytes
            except ValueError:
                too_large = False
            if too_large:
                response = JSONResponse({"detail": f"request body larger than {self.max_bytes} bytes"}, 413)
                await response(scope, receive, send)
                return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, limited_receive, send)


class AccessMiddleware:
    """One JSON log line and the request metrics per HTTP request; a few safety headers on every response."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        request_id = uuid.uuid4().hex[:16]

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                headers.append((b"x-content-type-options", b"nosniff"))
                if scope.get("path") == "/":
                    headers.append((b"content-security-policy", PAGE_CSP.encode()))
                    headers.append((b"referrer-policy", b"no-referrer"))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", None) or (
                "/static" if scope["path"].startswith("/static") else "unmatched"
            )
            self.metrics.requests.labels(scope["method"], route, str(status)).inc()
            self.metrics.latency.labels(scope["method"], route).observe(elapsed)
            client = scope.get("client")
            access_log.info(
                json.dumps(
                    {
                        "method": scope["method"],
                        "path": scope["path"],
                        "route": route,
                        "status": status,
                        "ms": round(elapsed * 1000, 2),
                        "client": client[0] if client else None,
                        "request_id": request_id,
                    }
                )
            )


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


# ==================================================================================================
# application state


class ServiceState:
    """The engine, the chat service and the conversation store of one app, plus its background reloader."""

    def __init__(self, settings: Settings, engine: Engine | None) -> None:
        self.settings = settings
        self.engine: Engine | None = None
        self.chat: ChatService | None = None
        self.store: ConversationStore | None = None
        self.error: str | None = None
        self.limiter = RateLimiter(settings.rate_limit_per_minute)
        self.metrics = Metrics(self)
        self._lock = threading.Lock()
        if engine is not None:
            self.attach(engine)

    def attach(self, engine: Engine) -> None:
        with self._lock:
            if self.store is None:
                self.store = ConversationStore.at_index_root(engine.root)
            self.chat = ChatService(engine, self.store, settings=self.settings)
            self.engine = engine
            self.error = None

    def load(self) -> None:
        """Build the engine from the settings (blocking: loads the encoder and the index)."""
        self.attach(Engine(settings=self.settings))
        log.info(
            "serving index version %s from %s",
            self.engine.index.version if self.engine else "?",
            self.settings.index_dir,
        )

    def index_size(self) -> tuple[int, int]:
        engine = self.engine
        if engine is None:
            return 0, 0
        index = engine.index
        return len(index.articles), len(index.chunks)

    async def run(self) -> None:
        """Load the engine if needed, then look for newly published index versions every ``reload_check_s``."""
        while True:
            try:
                if self.engine is None:
                    await run_in_threadpool(self.load)
                elif await run_in_threadpool(self.engine.reload_if_changed):
                    self.metrics.reloads.inc()
                    log.info("now serving index version %s", self.engine.index.version)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep serving (or keep retrying) whatever happens
                message = f"{type(exc).__name__}: {exc}"
                if message != self.error:
                    log.error("index not loaded: %s", message)
                self.error = message
            await asyncio.sleep(self.settings.reload_check_s)

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


# ==================================================================================================
# dependencies


def get_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.byline
    return state


StateDep = Annotated[ServiceState, Depends(get_state)]


def get_app_settings(state: StateDep) -> Settings:
    return state.settings


SettingsDep = Annotated[Settings, Depends(get_app_settings)]


def _not_ready(state: ServiceState) -> HTTPException:
    reason = state.error or "still loading"
    return HTTPException(503, detail=f"the index is not loaded: {reason}", headers={"Retry-After": "5"})


def get_engine(state: StateDep) -> Engine:
    if state.engine is None:
        raise _not_ready(state)
    return state.engine


EngineDep = Annotated[Engine, Depends(get_engine)]


def get_chat(state: StateDep) -> ChatService:
    if state.chat is None:
        raise _not_ready(state)
    return state.chat


ChatDep = Annotated[ChatService, Depends(get_chat)]


def get_index(engine: EngineDep) -> LoadedIndex:
    """The one index version this request uses (a later reload does not change it mid-request)."""
    return engine.index


IndexDep = Annotated[LoadedIndex, Depends(get_index)]

bearer_scheme = HTTPBearer(auto_error=False, description="API key as a bearer token (when keys are configured).")
api_key_scheme = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key (when keys are configured).")


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def guard(
    request: Request,
    state: StateDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
    api_key: Annotated[str | None, Security(api_key_scheme)],
) -> str:
    """API key (when configured) and rate limit, for every /v1 route; returns the rate-limit identity."""
    keys = state.settings.api_keys
    presented = (bearer.credentials if bearer else None) or api_key
    if keys:
        matches = [hmac.compare_digest(presented.encode(), k.encode()) for k in keys] if presented else [False]
        if not any(matches):
            # failed attempts count against the caller's address, so keys cannot be guessed at full speed
            wait = state.limiter.hit(f"fail:{client_address(request)}")
            if wait:
                raise _too_many(wait)
            detail = "missing API key" if not presented else "invalid API key"
            raise HTTPException(401, detail=detail, headers={"WWW-Authenticate": "Bearer"})
        identity = "key:" + hashlib.sha256((presented or "").encode()).hexdigest()[:16]
    else:
        identity = f"ip:{client_address(request)}"
    wait = state.limiter.hit(identity)
    if wait:
        raise _too_many(wait)
    return identity


def _too_many(wait: float) -> HTTPException:
    seconds = max(1, math.ceil(wait))
    return HTTPException(
        429, detail=f"rate limit exceeded; retry in {seconds} s", headers={"Retry-After": str(seconds)}
    )


def check_question(question: str, settings: Settings) -> None:
    if not question.strip():
        raise HTTPException(422, detail="question: must not be blank")
    if len(question) > settings.max_question_chars:
        raise HTTPException(422, detail=f"question: longer than {settings.max_question_chars} characters")


# ==================================================================================================
# response models (beyond service.schemas)


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    status: Literal["ready"] = "ready"
    index_version: str
    articles: int
    chunks: int
    reload_error: str | None = Field(
        default=None, description="Why the newest published version was refused (the one above keeps serving)."
    )


class ArticleSummary(BaseModel):
    id: str
    title: str
    url: str | None = None
    authors: list[str] = Field(default_factory=list)
    published: date | None = None
    source: str | None = None
    section: str | None = None
    chunks: int = Field(description="Passages this article is split into.")


class ArticlePage(BaseModel):
    total: int = Field(description="Articles matching the filters.")
    offset: int
    limit: int
    items: list[ArticleSummary]
    index_version: str


class ArticleDetail(ArticleSummary):
    text: str = Field(description="The cleaned article text; every span of the API indexes into it.")
    captions: list[Span] = Field(default_factory=list, description="Spans of photo captions in `text`.")
    index_version: str


class OpenAIMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None


class ChatCompletionRequest(BaseModel):
    """The OpenAI chat-completions request; sampling options (temperature, max_tokens, ...) are accepted
    and ignored, since answers are extracted from the articles."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(default=MODEL_ID, max_length=200)
    messages: list[OpenAIMessage] = Field(min_length=1, max_length=200)
    stream: bool = False
    k: int = Field(default=10, ge=1, le=50, description="Byline extension: passages retrieved behind the answer.")
    filters: Filters = Field(default_factory=Filters, description="Byline extension: search filters.")
    as_of: date | None = Field(default=None, description="Byline extension: the moment the question is asked.")


class CompletionMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class CompletionChoice(BaseModel):
    index: int = 0
    message: CompletionMessage
    finish_reason: Literal["stop"] = "stop"


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage
    byline: Answer = Field(
        description="Byline extension: the structured answer (numbered sources with quotes and character "
        "spans, passages, abstention, related articles, index version, timings). The `[n]` markers in the "
        "message content index `byline.sources`."
    )


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "byline"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


# ==================================================================================================
# server-sent events


def sse(event: str | None, data: Any) -> str:
    payload = data if isinstance(data, str) else json.dumps(jsonable_encoder(data), ensure_ascii=False)
    head = f"event: {event}\n" if event else ""
    return head + "".join(f"data: {line}\n" for line in payload.split("\n")) + "\n"


def text_pieces(text: str) -> Iterator[str]:
    """The answer text in small pieces (a word with its trailing space); joined, they give the text back."""
    yield from re.findall(r"\S+\s*|\s+", text)


def answer_events(answer: Answer, meta: dict[str, Any]) -> Iterator[str]:
    yield sse("meta", meta)
    for piece in text_pieces(answer.answer):
        yield sse("delta", {"text": piece})
    yield sse(
        "sources",
        {"sources": answer.sources, "related": answer.related, "abstained": answer.abstained},
    )
    yield sse("done", answer)


async def _stream(events: Iterator[str]) -> AsyncIterator[str]:
    try:
        for event in events:
            yield event
            await asyncio.sleep(0)
    except Exception as exc:  # noqa: BLE001 - the status line is gone; report in-band
        log.exception("stream failed")
        yield sse("error", {"detail": f"the answer stream failed: {type(exc).__name__}"})


def event_stream(events: Iterator[str]) -> StreamingResponse:
    return StreamingResponse(_stream(events), media_type="text/event-stream", headers=SSE_HEADERS)


# ==================================================================================================
# OpenAI-compatible helpers


def message_text(message: OpenAIMessage) -> str:
    if message.content is None:
        return ""
    if isinstance(message.content, str):
        return message.content
    return "\n".join(str(part.get("text", "")) for part in message.content if part.get("type") in (None, "text"))


def split_messages(messages: list[OpenAIMessage]) -> tuple[str, list[tuple[str, str]]]:
    """The last user message is the question; earlier user/assistant exchanges are its history."""
    dialogue = [m for m in messages if m.role in ("user", "assistant")]
    if not dialogue or dialogue[-1].role != "user":
        raise HTTPException(422, detail="messages: the last message must be from the user")
    question = message_text(dialogue[-1]).strip()
    earlier: list[tuple[str, str]] = []
    pending: str | None = None
    for message in dialogue[:-1]:
        if message.role == "user":
            if pending is not None:
                earlier.append((pending, ""))
            pending = message_text(message).strip()
        elif pending is not None:
            earlier.append((pending, message_text(message)))
            pending = None
    if pending is not None:
        earlier.append((pending, ""))
    return question, [(q, a) for q, a in earlier if q]


def completion_text(answer: Answer) -> str:
    """Answer text with its [n] markers, then a "Sources:" footer (or the related articles when abstaining)."""
    text = answer.answer
    footer = sources_footer(answer)
    if footer:
        text += "\n\n" + footer
    elif answer.abstained and answer.related:
        lines = ["Related articles:"]
        for item in answer.related:
            details = ", ".join(p for p in (item.source, item.published.isoformat() if item.published else None) if p)
            lines.append(
                f"- {item.title}"
                + (f" \u2014 {details}" if details else "")
                + (f" \u2014 {item.url}" if item.url else "")
            )
        text += "\n\n" + "\n".join(lines)
    return text


def completion_chunks(answer: Answer, model: str, completion_id: str, created: int, usage: Usage) -> Iterator[str]:
    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        body = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }
        return sse(None, body)

    yield chunk({"role": "assistant", "content": ""})
    for piece in text_pieces(completion_text(answer)):
        yield chunk({"content": piece})
    yield chunk({}, "stop", usage=usage, byline=answer)
    yield sse(None, "[DONE]")


# ==================================================================================================
# routes


def build_router() -> APIRouter:
    router = APIRouter(prefix=API_PREFIX, dependencies=[Depends(guard)], responses=ERROR_RESPONSES)

    @router.post(
        "/ask",
        response_model=Answer,
        tags=["answers"],
        summary="Answer one question with citations",
        description="A cited answer from the articles, or an abstention with related articles. " + SSE_DOC,
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    async def ask(body: AskRequest, engine: EngineDep, state: StateDep, settings: SettingsDep) -> Answer | Response:
        check_question(body.question, settings)
        answer = await run_in_threadpool(engine.ask, body)
        state.metrics.observe_answer(answer)
        if body.stream:
            meta = {"standalone_question": answer.standalone_question, "index_version": answer.index_version}
            return event_stream(answer_events(answer, meta))
        return answer

    @router.post(
        "/chat",
        response_model=ChatAnswer,
        tags=["conversations"],
        summary="Ask within a conversation",
        description="Omit `conversation_id` to start a conversation; send it back to follow up. A follow-up "
        '("How did Moscow respond to him?") is resolved into a self-contained question from the earlier '
        "turns; `standalone_question` shows what was searched. Unknown conversation ids are 404. " + SSE_DOC,
        responses={200: {"content": {"text/event-stream": {}}}, 404: {"model": ErrorResponse}},
    )
    async def chat(
        body: ChatRequest, service: ChatDep, state: StateDep, settings: SettingsDep
    ) -> ChatAnswer | Response:
        check_question(body.question, settings)
        prepared = await run_in_threadpool(service.prepare, body)
        answer = await run_in_threadpool(service.complete, prepared)
        state.metrics.observe_answer(answer)
        if body.stream:
            meta = {
                "conversation_id": answer.conversation_id,
                "turn": answer.turn,
                "standalone_question": answer.standalone_question,
                "index_version": answer.index_version,
            }
            return event_stream(answer_events(answer, meta))
        return answer

    @router.get(
        "/conversations/{conversation_id}",
        response_model=Conversation,
        tags=["conversations"],
        summary="A conversation's turns, with their answers and citations",
        responses={404: {"model": ErrorResponse}},
    )
    async def get_conversation(conversation_id: str, service: ChatDep) -> Conversation:
        return await run_in_threadpool(service.history, conversation_id)

    @router.delete(
        "/conversations/{conversation_id}",
        status_code=204,
        tags=["conversations"],
        summary="Delete a conversation",
        responses={404: {"model": ErrorResponse}},
    )
    async def delete_conversation(conversation_id: str, service: ChatDep) -> Response:
        await run_in_threadpool(service.delete, conversation_id)
        return Response(status_code=204)

    @router.get("/search", response_model=SearchResponse, tags=["search"], summary="Ranked passages for a query")
    async def search(
        engine: EngineDep,
        settings: SettingsDep,
        q: Annotated[str, Query(min_length=1, max_length=2000, description="The query.")],
        k: Annotated[int, Query(ge=1, le=100, description="Passages to return.")] = 10,
        source: Annotated[list[str] | None, Query(description="Publication(s), e.g. cnn.com; repeatable.")] = None,
        author: Annotated[list[str] | None, Query(description="Author name(s), substring match; repeatable.")] = None,
        date_from: Annotated[date | None, Query(description="Published on or after (YYYY-MM-DD).")] = None,
        date_to: Annotated[date | None, Query(description="Published on or before (YYYY-MM-DD).")] = None,
        as_of: Annotated[date | None, Query(description="The moment of the query (default today).")] = None,
    ) -> SearchResponse:
        check_question(q, settings)
        if date_from and date_to and date_from > date_to:
            raise HTTPException(422, detail="date_from: after date_to")
        filters = Filters(sources=source or None, authors=author or None, date_from=date_from, date_to=date_to)
        return await run_in_threadpool(engine.search, q, k, filters, as_of)

    @router.get("/articles", response_model=ArticlePage, tags=["articles"], summary="Indexed articles (metadata)")
    async def list_articles(
        index: IndexDep,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        source: Annotated[str | None, Query(max_length=200, description="Only this publication.")] = None,
        author: Annotated[str | None, Query(max_length=200, description="Author name, substring match.")] = None,
        q: Annotated[str | None, Query(max_length=200, description="Words in the title.")] = None,
        date_from: Annotated[date | None, Query()] = None,
        date_to: Annotated[date | None, Query()] = None,
    ) -> ArticlePage:
        return await run_in_threadpool(_article_page, index, offset, limit, source, author, q, date_from, date_to)

    @router.get(
        "/articles/{article_id}",
        response_model=ArticleDetail,
        tags=["articles"],
        summary="One article: metadata, cleaned text and caption spans",
        responses={404: {"model": ErrorResponse}},
    )
    async def get_article(article_id: str, index: IndexDep) -> ArticleDetail:
        if not is_safe_id(article_id):
            raise HTTPException(422, detail="article_id: not a valid article id")
        article = await run_in_threadpool(index.article_with_text, article_id)
        if article is None:
            raise HTTPException(404, detail=f"no article {article_id!r}")
        return ArticleDetail(
            **_summary(index, article.id).model_dump(),
            text=article.text,
            captions=article.captions,
            index_version=index.version,
        )

    @router.get("/models", response_model=ModelList, tags=["openai"], summary="OpenAI-compatible model list")
    async def models() -> ModelList:
        return ModelList(data=[ModelCard(id=MODEL_ID, created=0)])

    @router.post(
        "/chat/completions",
        response_model=ChatCompletion,
        tags=["openai"],
        summary="OpenAI-compatible chat completions",
        description=(
            "Point any OpenAI client at `/v1`. The last user message is the question; earlier user and "
            "assistant messages are the history used to resolve a follow-up (nothing is stored). The message "
            "content is the answer with `[n]` markers followed by a `Sources:` footer; the structured answer is "
            "in the extra top-level field `byline` (see the schema). With `stream: true` the response is "
            "`chat.completion.chunk` events; the last chunk (finish_reason `stop`) carries `byline` and "
            "`usage`, then `data: [DONE]`."
        ),
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    async def chat_completions(
        body: ChatCompletionRequest, service: ChatDep, state: StateDep, settings: SettingsDep
    ) -> ChatCompletion | Response:
        question, earlier = split_messages(body.messages)
        check_question(question, settings)
        request = AskRequest(question=question, k=body.k, filters=body.filters, as_of=body.as_of)
        answer = await run_in_threadpool(service.answer_messages, request, earlier)
        state.metrics.observe_answer(answer)
        content = completion_text(answer)
        prompt_tokens = sum(count_tokens(message_text(m)) for m in body.messages)
        completion_tokens = count_tokens(content)
        usage = Usage(
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_tokens=prompt_tokens + completion_tokens,
        )
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        if body.stream:
            return event_stream(completion_chunks(answer, body.model, completion_id, created, usage))
        return ChatCompletion(
            id=completion_id,
            created=created,
            model=body.model,
            choices=[CompletionChoice(message=CompletionMessage(content=content))],
            usage=usage,
            byline=answer,
        )

    return router


def _summary(index: LoadedIndex, article_id: str) -> ArticleSummary:
    article = index.articles[article_id]
    return ArticleSummary(
        id=article.id,
        title=article.title,
        url=article.url,
        authors=article.authors,
        published=article.published,
        source=article.source,
        section=article.section,
        chunks=len(index.chunks_of(article.id)),
    )


def _article_page(
    index: LoadedIndex,
    offset: int,
    limit: int,
    source: str | None,
    author: str | None,
    q: str | None,
    date_from: date | None,
    date_to: date | None,
) -> ArticlePage:
    wanted_source = source.lower().removeprefix("www.") if source else None
    words = q.lower().split() if q else []
    matching = []
    for article in index.articles.values():
        if wanted_source and (article.source or "").lower().removeprefix("www.") != wanted_source:
            continue
        if author and not any(author.lower() in a.lower() for a in article.authors):
            continue
        if words and not all(w in article.title.lower() for w in words):
            continue
        if (date_from or date_to) and article.published is None:
            continue
        if date_from and article.published and article.published < date_from:
            continue
        if date_to and article.published and article.published > date_to:
            continue
        matching.append(article)
    # newest first; undated last; then by title for a stable order
    matching.sort(key=lambda a: (a.published is None, -(a.published.toordinal() if a.published else 0), a.title, a.id))
    items = [_summary(index, a.id) for a in matching[offset : offset + limit]]
    return ArticlePage(total=len(matching), offset=offset, limit=limit, items=items, index_version=index.version)


# ==================================================================================================
# error handlers


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


# ==================================================================================================
# the app


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
        openapi_tags=[
            {"name": "answers", "description": "One-shot questions."},
            {"name": "conversations", "description": "Follow-up questions with remembered turns."},
            {"name": "search", "description": "Ranked passages without an answer."},
            {"name": "articles", "description": "The indexed articles."},
            {"name": "openai", "description": "OpenAI-compatible endpoints."},
            {"name": "operations", "description": "Health, readiness and metrics."},
        ],
    )
    app.state.byline = state
    app.include_router(build_router())

    @app.get("/healthz", response_model=Health, tags=["operations"], summary="The process is up")
    async def healthz() -> Health:
        return Health()

    @app.get(
        "/readyz",
        response_model=Readiness,
        tags=["operations"],
        summary="An index is loaded (503 until then)",
        responses={503: {"model": ErrorResponse}},
    )
    async def readyz() -> Readiness:
        engine_now = state.engine
        if engine_now is None:
            raise _not_ready(state)
        index = engine_now.index
        return Readiness(
            index_version=index.version,
            articles=len(index.articles),
            chunks=len(index.chunks),
            reload_error=getattr(engine_now, "last_reload_error", None),
        )

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(ConversationNotFound, _on_not_found)
    app.add_exception_handler(IndexError_, _on_index_error)
    app.add_exception_handler(Exception, _on_error)

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
