"""``/v1/models`` and ``/v1/chat/completions``: the OpenAI-compatible endpoints."""

from __future__ import annotations

import time
import uuid

from fastapi import HTTPException
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from service.answering.schemas import AskRequest
from service.web.deps import ChatDep, SettingsDep, StateDep, check_question
from service.web.openai_compat import (
    MODEL_ID,
    ChatCompletion,
    ChatCompletionRequest,
    CompletionChoice,
    CompletionMessage,
    ModelCard,
    ModelList,
    annotations,
    completion_chunks,
    completion_text,
    completion_usage,
    split_messages,
)
from service.web.routes.v1 import v1_router
from service.web.sse import event_stream

router = v1_router()


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
    try:
        request = AskRequest(question=question, k=body.k, filters=body.filters, as_of=body.as_of)
    except ValidationError as exc:  # e.g. a last message longer than a question may be
        first = exc.errors()[0]
        raise HTTPException(422, detail=f"messages: the question {first.get('msg', 'is invalid')}") from None
    answer = await run_in_threadpool(service.answer_messages, request, earlier)
    state.metrics.observe_answer(answer)
    content = completion_text(answer)
    usage = completion_usage(body.messages, content)
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    if body.stream:
        return event_stream(completion_chunks(answer, body.model, completion_id, created, usage))
    return ChatCompletion(
        id=completion_id,
        created=created,
        model=body.model,
        choices=[
            CompletionChoice(message=CompletionMessage(content=content, annotations=annotations(answer, content)))
        ],
        usage=usage,
        byline=answer,
    )
