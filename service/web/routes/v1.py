"""The ``/v1`` JSON API's router settings: its prefix, the API-key and rate-limit guard, the error responses."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from service.answering.schemas import ErrorResponse
from service.web.security import guard

API_PREFIX = "/v1"
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "The request body could not be parsed (e.g. it is not UTF-8)."},
    401: {"model": ErrorResponse, "description": "Missing or wrong API key (when keys are configured)."},
    413: {"model": ErrorResponse, "description": "Request body too large."},
    422: {"model": ErrorResponse, "description": "Invalid input; `detail` says what is wrong."},
    429: {"model": ErrorResponse, "description": "Rate limit exceeded; see the `Retry-After` header."},
    503: {"model": ErrorResponse, "description": "The index is not loaded yet."},
}


def v1_router() -> APIRouter:
    """A router for one area of the ``/v1`` API. The prefix is the router's own (not added when included),
    so each route's path, used as the metrics and access-log label, is the full ``/v1/...`` path."""
    return APIRouter(prefix=API_PREFIX, dependencies=[Depends(guard)], responses=ERROR_RESPONSES)
