"""Pydantic models for everything that crosses the API (and the engine's library interface)."""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

MAX_QUESTION_CHARS = 2000
CONVERSATION_ID_PATTERN = r"^[A-Za-z0-9_-]{8,64}$"
_SURROGATE = re.compile("[\ud800-\udfff]")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def no_surrogates(value: str) -> str:
    """Refuse text with a lone surrogate (JSON ``"\\ud800"``): it is not Unicode and cannot be encoded back."""
    if _SURROGATE.search(value):
        raise ValueError("contains a lone surrogate (\\ud800-\\udfff), which is not valid Unicode text")
    return value


def iso_date_only(value: object) -> object:
    """A date given as ``YYYY-MM-DD`` (or a ``date``): no numbers read as Unix times (``0`` -> 1970-01-01)."""
    if isinstance(value, date) or (isinstance(value, str) and _ISO_DATE.fullmatch(value)):
        return value
    raise ValueError("expected a date as YYYY-MM-DD")


Text = Annotated[str, AfterValidator(no_surrogates)]
IsoDate = Annotated[date, BeforeValidator(iso_date_only)]


class Filters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sources: list[Text] | None = Field(default=None, description="Publications, e.g. ['cnn.com'].", max_length=20)
    authors: list[Text] | None = Field(default=None, description="Author names (substring match).", max_length=20)
    date_from: IsoDate | None = Field(default=None, description="Published on or after this date.")
    date_to: IsoDate | None = Field(default=None, description="Published on or before this date.")


class AskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: Text = Field(min_length=1, max_length=MAX_QUESTION_CHARS)
    k: int = Field(default=10, ge=1, le=50, strict=True, description="Passages retrieved behind the answer.")
    filters: Filters = Field(default_factory=Filters)
    as_of: IsoDate | None = Field(default=None, description="The moment the question is asked (default: today).")
    stream: bool = Field(default=False, strict=True, description="Stream the answer as server-sent events.")


class ChatRequest(AskRequest):
    question: Text = Field(min_length=1, max_length=MAX_QUESTION_CHARS, description="The user's message.")
    conversation_id: str | None = Field(
        default=None, pattern=CONVERSATION_ID_PATTERN, description="Omit to start a conversation."
    )


class Quote(BaseModel):
    text: str = Field(description="A sentence used in the answer, exactly as in the article.")
    start: int = Field(description="Character offset in the article's cleaned text.")
    end: int


class Source(BaseModel):
    """A numbered source: the answer's ``[n]`` markers index this list (1-based)."""

    n: int
    article_id: str
    chunk_id: int
    title: str
    url: str | None = None
    source: str | None = None
    published: date | None = None
    quotes: list[Quote] = Field(description="The sentence(s) quoted from this article, with their spans.")
    passage: str = Field(description="The passage around the quotes, for display.")
    passage_start: int
    passage_end: int


class ShortAnswer(BaseModel):
    """The answer in a few words: an exact span of a cited sentence (``article_text[start:end] == text``)."""

    text: str
    source: int = Field(description="The source number (1-based) whose article holds the span.")
    article_id: str
    start: int = Field(description="Character offset in the article's cleaned text.")
    end: int
    kind: str = Field(
        description="What the question asked for: number, age, date, person, place, organisation or name."
    )


class AnswerSentence(BaseModel):
    text: str
    citations: list[int] = Field(description="Source numbers (1-based) supporting this sentence.")


class Related(BaseModel):
    article_id: str
    title: str
    url: str | None = None
    source: str | None = None
    published: date | None = None
    score: float


class Passage(BaseModel):
    """A retrieved passage (chunk) with its ranking evidence."""

    rank: int
    chunk_id: int
    article_id: str
    title: str
    url: str | None = None
    source: str | None = None
    published: date | None = None
    text: str
    start: int
    end: int
    score: float = Field(description="Final ranking score (higher is better).")
    dense_score: float | None = None
    bm25_score: float | None = None


class Timings(BaseModel):
    retrieval_ms: float = 0.0
    answer_ms: float = 0.0
    total_ms: float = 0.0


class Answer(BaseModel):
    question: str
    standalone_question: str = Field(description="The self-contained question actually searched.")
    assumed: str | None = Field(
        default=None,
        description="For a follow-up whose reference was uncertain: the earlier subject it was taken to mean.",
    )
    answer: str = Field(description="Answer text with inline [n] markers, or the abstention message.")
    short_answer: ShortAnswer | None = Field(
        default=None, description="For a factual question: the answer in a few words, quoted from a cited sentence."
    )
    sentences: list[AnswerSentence] = Field(default_factory=list)
    sources: list[Source] = Field(default_factory=list)
    related: list[Related] = Field(default_factory=list, description="Closest articles when abstaining.")
    passages: list[Passage] = Field(default_factory=list, description="The top-k passages behind the answer.")
    abstained: bool = False
    confidence: float = Field(default=0.0, description="Strength of the best evidence; below the threshold -> abstain.")
    signals: dict[str, float] = Field(
        default_factory=dict, description="What the confidence is made of: best sentence cosine, evidence coverage."
    )
    mode: Literal["extractive", "generated"] = "extractive"
    reader: str = Field(default="", description="The reading stage that chose the sentences (see settings.reader).")
    fallback_reason: str | None = Field(default=None, description="Why a language-model answer was not used.")
    as_of: date
    filters: Filters = Field(default_factory=Filters, description="Filters applied (hard: nothing else is used).")
    preferences: Filters = Field(
        default_factory=Filters,
        description="Publications and dates read from the question: favoured in ranking, not enforced.",
    )
    index_version: str
    timings: Timings = Field(default_factory=Timings)


class ChatAnswer(Answer):
    conversation_id: str
    turn: int


class SearchResponse(BaseModel):
    query: str
    as_of: date
    filters: Filters
    preferences: Filters = Field(default_factory=Filters)
    passages: list[Passage]
    index_version: str
    timings: Timings


class ErrorResponse(BaseModel):
    detail: str
