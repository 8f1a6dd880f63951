"""Who owns a conversation: a keyed hash of the API key that created it (never the key), or nobody without keys.

The hash is HMAC-SHA256 under a fixed label, so every replica computes the same owner for the same key and a
stored owner says nothing about the key. A conversation answers only to the key that created it: for any other
key it does not exist (404). A key taken out of ``BYLINE_API_KEYS`` takes its conversations out of reach with it.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Security
from fastapi.security import HTTPAuthorizationCredentials

from service.web.deps import StateDep
from service.web.security import api_key_scheme, bearer_scheme

_LABEL = b"byline conversation owner v1"


def owner_id(api_key: str) -> str:
    """The stored owner for ``api_key``: ``k1:`` and 64 hex digits."""
    return "k1:" + hmac.new(_LABEL, api_key.encode(), hashlib.sha256).hexdigest()


def conversation_owner(
    state: StateDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
    api_key: Annotated[str | None, Security(api_key_scheme)],
) -> str | None:
    """The owner for this request's key; ``None`` when the service has no keys (every conversation is open)."""
    if not state.settings.api_keys:
        return None
    presented = (bearer.credentials if bearer else None) or api_key
    if not presented:  # the /v1 guard has answered 401 already; never fall back to "no owner"
        raise HTTPException(401, detail="missing API key", headers={"WWW-Authenticate": "Bearer"})
    return owner_id(presented)


OwnerDep = Annotated[str | None, Depends(conversation_owner)]

__all__ = ["OwnerDep", "conversation_owner", "owner_id"]
