"""The OpenAI chat-completions format: request and response models, and conversion to and from Byline's.

The last user message is the question and earlier user/assistant messages are its history; the answer
becomes the message content (``[n]`` markers plus a ``Sources:`` footer) with the structured answer in the
extra field ``byline``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

from fastapi import HTTPException
from pydantic import BaseModel, ConfigDict, Field, field_validator

from index.tokens import count_tokens
from service.answering.chat import sources_footer
from service.answering.schemas import Answer, Filters, IsoDate, no_surrogates
from service.web.sse import sse, text_pieces

MODEL_ID = "byline"


class OpenAIMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None

    @field_validator("content")
    @classmethod
    def _valid_text(cls, content: str | list[dict[str, Any]] | None) -> str | list[dict[str, Any]] | None:
        """422 at the edge for text that is not Unicode (a lone surrogate), in a string or in text parts."""
        parts = [content] if isinstance(content, str) else [p.get("text") for p in content or []]
        for part in parts:
            if isinstance(part, str):
                no_surrogates(part)
        return content


class ChatCompletionRequest(BaseModel):
    """The OpenAI chat-completions request; sampling options (temperature, max_tokens, ...) are accepted
    and ignored, since answers are extracted from the articles."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(default=MODEL_ID, max_length=200)
    messages: list[OpenAIMessage] = Field(min_length=1, max_length=200)
    stream: bool = Field(default=False, strict=True)
    k: int = Field(
        default=10, ge=1, le=50, strict=True, description="Byline extension: passages retrieved behind the answer."
    )
    filters: Filters = Field(default_factory=Filters, description="Byline extension: search filters.")
    as_of: IsoDate | None = Field(default=None, description="Byline extension: the moment the question is asked.")

    @field_validator("model")
    @classmethod
    def _valid_model(cls, model: str) -> str:
        return no_surrogates(model)


class UrlCitation(BaseModel):
    url: str
    title: str
    start_index: int = Field(description="Where the cited text starts in the message content.")
    end_index: int = Field(description="Where it ends (exclusive).")


class Annotation(BaseModel):
    type: Literal["url_citation"] = "url_citation"
    url_citation: UrlCitation


class CompletionMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str
    annotations: list[Annotation] = Field(
        default_factory=list, description="OpenAI's slot for sources: one url_citation per cited sentence with a url."
    )


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
    """A first "Answer: ... [n]" line when there is a short answer, the answer text with its [n] markers, then a
    "Sources:" footer (or the related articles when abstaining)."""
    text = answer.answer
    if answer.short_answer is not None and not answer.abstained:
        text = f"Answer: {answer.short_answer.text} [{answer.short_answer.source}]\n\n{text}"
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


def annotations(answer: Answer, content: str) -> list[Annotation]:
    """A url_citation for each (sentence, source) pair the answer cites where the source has a url, with the
    sentence's span in ``content`` (the short-answer line first, when there is one)."""
    if answer.abstained:
        return []
    urls = {s.n: s for s in answer.sources if s.url}
    cited: list[tuple[str, list[int]]] = []
    if answer.short_answer is not None:
        cited.append((answer.short_answer.text, [answer.short_answer.source]))
    cited.extend((sentence.text, sentence.citations) for sentence in answer.sentences)
    found: list[Annotation] = []
    cursor = 0
    for text, numbers in cited:
        start = content.find(text, cursor) if text else -1
        if start < 0:
            continue
        cursor = start + len(text)
        for n in numbers:
            if n in urls:
                span = UrlCitation(url=urls[n].url or "", title=urls[n].title, start_index=start, end_index=cursor)
                found.append(Annotation(url_citation=span))
    return found


def completion_usage(messages: list[OpenAIMessage], content: str) -> Usage:
    """Token counts (tiktoken) of the request messages and of the completion's content."""
    prompt_tokens = sum(count_tokens(message_text(m)) for m in messages)
    completion_tokens = count_tokens(content)
    return Usage(
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        total_tokens=prompt_tokens + completion_tokens,
    )


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
    final = {"annotations": [a.model_dump() for a in annotations(answer, completion_text(answer))]}
    yield chunk(final, "stop", usage=usage, byline=answer)
    yield sse(None, "[DONE]")
