"""Request dependencies: the app's state, settings, engine, chat service and index as ``Annotated`` aliases.

Routes take ``StateDep``, ``SettingsDep``, ``EngineDep``, ``ChatDep`` or ``IndexDep``; the last three answer
503 (with ``Retry-After``) while no index is loaded.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from index.reader import LoadedIndex
from index.settings import Settings
from service.answering.chat import ChatService
from service.answering.engine import Engine
from service.web.state import ServiceState


def get_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.byline
    return state


StateDep = Annotated[ServiceState, Depends(get_state)]


def get_app_settings(state: StateDep) -> Settings:
    return state.settings


SettingsDep = Annotated[Settings, Depends(get_app_settings)]


# an absolute or home-relative file system path (POSIX or Windows), up to the next space, quote or bracket
_PATH = re.compile(r"""(?:(?<![\w.])(?:[A-Za-z]:)?[\\/]|~/)[^\s'"()\[\],;]*""")


def public_reason(message: str | None, limit: int = 200) -> str | None:
    """A load or reload error as shown without a key (``/readyz``, 503 bodies): each file path cut to its file
    name (``/srv/x/versions/v3/vectors.npy (checksum mismatch)`` -> ``vectors.npy of version v3 (checksum
    mismatch)``), at most ``limit`` characters. The full message, paths included, is only in the logs."""
    if message is None:
        return None

    def name_only(match: re.Match[str]) -> str:
        parts = [p for p in re.split(r"[\\/]", match.group(0)) if p]
        if "versions" in parts[:-2]:  # <index>/versions/<version>/[<dir>/]<file>
            at = len(parts) - 1 - parts[::-1].index("versions")
            if at + 2 < len(parts):
                return f"{parts[-1]} of version {parts[at + 1]}"
        return parts[-1] if parts else "<path>"

    reason = " ".join(_PATH.sub(name_only, message).split())
    return reason if len(reason) <= limit else reason[: limit - 1] + "\u2026"


def not_ready(state: ServiceState) -> HTTPException:
    """The 503 answered while no index is loaded, with a short reason (no paths)."""
    reason = public_reason(state.error) or "still loading"
    return HTTPException(503, detail=f"the index is not loaded: {reason}", headers={"Retry-After": "5"})


def get_engine(state: StateDep) -> Engine:
    if state.engine is None:
        raise not_ready(state)
    return state.engine


EngineDep = Annotated[Engine, Depends(get_engine)]


def get_chat(state: StateDep) -> ChatService:
    if state.chat is None:
        raise not_ready(state)
    return state.chat


ChatDep = Annotated[ChatService, Depends(get_chat)]


def get_index(engine: EngineDep) -> LoadedIndex:
    """The one index version this request uses (a later reload does not change it mid-request)."""
    return engine.index


IndexDep = Annotated[LoadedIndex, Depends(get_index)]


def check_question(question: str, settings: Settings) -> None:
    """422 for a blank question or one longer than ``max_question_chars``."""
    if not question.strip():
        raise HTTPException(422, detail="question: must not be blank")
    if len(question) > settings.max_question_chars:
        raise HTTPException(422, detail=f"question: longer than {settings.max_question_chars} characters")
