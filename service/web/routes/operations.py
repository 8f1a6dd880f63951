"""``/healthz``, ``/readyz`` and ``/metrics``: outside ``/v1``, without API key or rate limit."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from service.answering.schemas import ErrorResponse
from service.web.deps import StateDep, not_ready, public_reason


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    status: Literal["ready"] = "ready"
    index_version: str
    articles: int
    chunks: int
    reload_error: str | None = Field(
        default=None,
        description="Why the newest published version was refused (the one above keeps serving): a short reason "
        "without paths; the full message is in the service log.",
    )


router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health, summary="The process is up")
async def healthz() -> Health:
    return Health()


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="An index is loaded (503 until then)",
    responses={503: {"model": ErrorResponse}},
)
async def readyz(state: StateDep) -> Readiness:
    engine = state.engine
    if engine is None:
        raise not_ready(state)
    index = engine.index
    return Readiness(
        index_version=index.version,
        articles=len(index.articles),
        chunks=len(index.chunks),
        reload_error=public_reason(getattr(engine, "last_reload_error", None)),
    )


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(state: StateDep) -> Response:
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
