"""Request dependencies: the app's state, settings, engine, chat service and index as ``Annotated`` aliases.

Routes take ``StateDep``, ``SettingsDep``, ``EngineDep``, ``ChatDep`` or ``IndexDep``; the last three answer
503 (with ``Retry-After``) while no index is loaded.
"""

from __future__ import annotations

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


def not_ready(state: ServiceState) -> HTTPException:
    """The 503 answered while no index is loaded, with the reason."""
    reason = state.error or "still loading"
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
