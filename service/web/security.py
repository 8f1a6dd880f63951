"""The ``/v1`` guard: API key (when keys are configured) and the per-client rate limit."""

from __future__ import annotations

import hashlib
import hmac
import math
from typing import Annotated

from fastapi import HTTPException, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from service.web.deps import StateDep

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
