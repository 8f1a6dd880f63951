"""Server-sent events: event formatting, the answer as ``meta``/``delta``/``sources``/``done`` events, and the
streaming response that reports a mid-stream failure as an ``error`` event."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

from fastapi.encoders import jsonable_encoder
from fastapi.responses import StreamingResponse

from service.answering.schemas import Answer

log = logging.getLogger("byline.service")

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


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


async def _stream(events: Iterator[str]) -> AsyncIterator[bytes]:
    """The events as UTF-8 bytes. Each event is encoded here, inside the ``try``, so that nothing can fail
    after this generator (an event that cannot be encoded, a failing event source): the stream then ends with
    an ``error`` event instead of stopping mid-way; a complete stream ends with its own last event."""
    try:
        for event in events:
            data = event.encode("utf-8")
            yield data
            await asyncio.sleep(0)
    except Exception as exc:  # noqa: BLE001 - the status line is gone; report in-band
        log.exception("stream failed")
        yield sse("error", {"detail": f"the answer stream failed: {type(exc).__name__}"}).encode("utf-8")


def event_stream(events: Iterator[str]) -> StreamingResponse:
    return StreamingResponse(_stream(events), media_type="text/event-stream", headers=SSE_HEADERS)
