"""The question-file format: one JSON object a line, read into typed items.

Two shapes are accepted on each line:

* the project's own format, possibly multi-turn::

    {"id": "...", "turns": [{"question": "...", "evidence": ["..."], "answer_any": ["..."],
                             "standalone": "..."}], "unanswerable": false, "date": "2023-10-01"}

  ``evidence`` are exact phrases of the article text that answers the turn, ``answer_any`` short
  strings any one of which a right answer contains, ``standalone`` the self-contained form of a
  follow-up question. ``unanswerable`` marks an item the corpus cannot answer (every turn of it).
  ``topic_switch`` (optional, default false) marks a later turn that changes subject: it names its own
  subject, must not inherit anything from the earlier turns, and its ``standalone`` equals its ``question``.

* the shared news-quiz format (``{"id", "question", "answer", ..., "date"}``, e.g.
  ``../shared/eval/realtimeqa-dev.jsonl``): read as one turn with ``answer_any=[answer]`` and no
  evidence; its other keys are ignored.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class QuestionFileError(ValueError):
    """A question file that cannot be read; the message names the file and line."""


def _strip_all(values: list[str]) -> list[str]:
    stripped = [value.strip() for value in values]
    if any(not value for value in stripped):
        raise ValueError("empty string in list")
    return stripped


class Turn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1)
    evidence: list[str] = Field(default_factory=list, description="Exact phrases of the answering article text.")
    answer_any: list[str] = Field(default_factory=list, description="A right answer contains one of these.")
    standalone: str | None = Field(default=None, description="The follow-up rewritten to stand on its own.")
    topic_switch: bool = Field(default=False, description="This turn changes subject and leans on no earlier turn.")

    @field_validator("evidence", "answer_any")
    @classmethod
    def _no_empty(cls, values: list[str]) -> list[str]:
        return _strip_all(values)


class QuestionItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    turns: list[Turn] = Field(min_length=1)
    unanswerable: bool = False
    date: dt.date | None = Field(default=None, description="When the question is asked (sent as as_of).")

    @model_validator(mode="after")
    def _consistent(self) -> QuestionItem:
        if self.unanswerable and any(turn.evidence or turn.answer_any for turn in self.turns):
            raise ValueError("an unanswerable item cannot carry evidence or answer_any")
        return self

    @property
    def is_conversation(self) -> bool:
        return len(self.turns) > 1


class QuizItem(BaseModel):
    """One line of the shared news-quiz format; only the keys used here are read."""

    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1)
    question: str = Field(min_length=1)
    answer: str = Field(min_length=1)
    date: dt.date | None = None

    def to_item(self) -> QuestionItem:
        return QuestionItem(
            id=self.id, turns=[Turn(question=self.question, answer_any=[self.answer.strip()])], date=self.date
        )


def parse_item(data: object) -> QuestionItem:
    """One decoded JSON line in either format."""
    if isinstance(data, dict) and "turns" not in data and "question" in data:
        return QuizItem.model_validate(data).to_item()
    return QuestionItem.model_validate(data)


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "item"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def parse_lines(lines: Iterable[str], source: str = "<questions>") -> list[QuestionItem]:
    """Items from JSON lines; blank lines are skipped. Errors name ``source:line``."""
    items: list[QuestionItem] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise QuestionFileError(f"{source}:{number}: not valid JSON: {exc.msg} (column {exc.colno})") from exc
        try:
            item = parse_item(data)
        except ValidationError as exc:
            raise QuestionFileError(f"{source}:{number}: not a question item: {_describe(exc)}") from exc
        if item.id in seen:
            raise QuestionFileError(f"{source}:{number}: duplicate id {item.id!r} (first on line {seen[item.id]})")
        seen[item.id] = number
        items.append(item)
    return items


def load_questions(path: Path | str) -> list[QuestionItem]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise QuestionFileError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    return parse_lines(text.splitlines(), source=str(path))
