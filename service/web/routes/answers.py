"""``/v1/ask`` (one-shot questions) and ``/v1/chat`` with ``/v1/conversations`` (follow-ups with memory)."""

from __future__ import annotations

from typing import Annotated

from fastapi import HTTPException, Path, Query
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from service.answering.conversations import Conversation, ConversationFull, StoreUnavailable
from service.answering.schemas import (
    CONVERSATION_ID_PATTERN,
    Answer,
    AskRequest,
    ChatAnswer,
    ChatRequest,
    ErrorResponse,
)
from service.web.deps import ChatDep, EngineDep, SettingsDep, StateDep, check_question
from service.web.ownership import OwnerDep
from service.web.routes.v1 import v1_router
from service.web.sse import answer_events, event_stream

SSE_DOC = (
    'With `"stream": true` the answer comes as server-sent events (`text/event-stream`): `meta` '
    '(conversation id, turn, standalone question, index version), `delta` (`{"text": ...}` pieces of the '
    "answer, markers included), `sources` (numbered sources with quotes and spans, related articles, "
    "abstention flag), then `done` (the complete answer JSON). A failure after the stream started comes "
    "as an `error` event."
)

router = v1_router()
ConversationId = Annotated[str, Path(pattern=CONVERSATION_ID_PATTERN, description="The id `/v1/chat` returned.")]


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
    "turns; `standalone_question` shows what was searched. Unknown conversation ids are 404, and so are another "
    "API key's conversations and expired ones; a conversation at its maximum number of turns is 409. " + SSE_DOC,
    responses={
        200: {"content": {"text/event-stream": {}}},
        404: {"model": ErrorResponse},
        409: {"model": ErrorResponse, "description": "The conversation has its maximum number of turns."},
    },
)
async def chat(
    body: ChatRequest, service: ChatDep, state: StateDep, settings: SettingsDep, owner: OwnerDep
) -> ChatAnswer | Response:
    check_question(body.question, settings)
    try:
        prepared = await run_in_threadpool(service.prepare, body, owner)
        answer = await run_in_threadpool(service.complete, prepared)
    except ConversationFull as exc:  # (in complete: another request took the last turn meanwhile)
        raise HTTPException(409, detail=str(exc)) from None
    except StoreUnavailable as exc:
        raise store_unavailable(exc) from None
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
    description="One page of turns, oldest first: `offset` turns skipped, at most `limit` returned (default and "
    "largest page from the settings); `total_turns` counts them all. Another API key's conversation is 404.",
    responses={404: {"model": ErrorResponse}},
)
async def get_conversation(
    conversation_id: ConversationId,
    service: ChatDep,
    settings: SettingsDep,
    owner: OwnerDep,
    offset: Annotated[int, Query(ge=0, le=1_000_000, description="Turns to skip.")] = 0,
    limit: Annotated[int | None, Query(ge=1, description="Turns in the page (default: the settings').")] = None,
) -> Conversation:
    page = settings.conversation_page_size if limit is None else limit
    if page > settings.conversation_max_page_size:
        raise HTTPException(422, detail=f"limit: at most {settings.conversation_max_page_size} turns per page")
    try:
        return await run_in_threadpool(service.history, conversation_id, owner, offset, page)
    except StoreUnavailable as exc:
        raise store_unavailable(exc) from None


@router.delete(
    "/conversations/{conversation_id}",
    status_code=204,
    tags=["conversations"],
    summary="Delete a conversation",
    responses={404: {"model": ErrorResponse}},
)
async def delete_conversation(conversation_id: ConversationId, service: ChatDep, owner: OwnerDep) -> Response:
    try:
        await run_in_threadpool(service.delete, conversation_id, owner)
    except StoreUnavailable as exc:
        raise store_unavailable(exc) from None
    return Response(status_code=204)


def store_unavailable(exc: StoreUnavailable) -> HTTPException:
    """503 while the conversation store (PostgreSQL) cannot be reached; one-shot questions keep answering."""
    return HTTPException(503, detail=f"{exc}; one-shot questions (/v1/ask) still answer", headers={"Retry-After": "5"})
