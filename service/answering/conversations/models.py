"""What a conversation store keeps and returns: turns, pages of turns, limits, errors and the follow-up budget.

Shared by every store implementation, so SQLite and PostgreSQL give the same models and the same errors.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, Field

from index.tokens import count_tokens
from service.answering.followup import HistoryTurn
from service.answering.schemas import Answer

DEFAULT_PAGE_SIZE = 20
HISTORY_MAX_TURNS = 20  # the follow-up resolver reads at most this many of the newest turns (then the token budget)
_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


class ConversationNotFound(LookupError):
    """No conversation with this id for this owner (never created, deleted, expired, another key's, or malformed)."""

    def __init__(self, conversation_id: str) -> None:
        super().__init__(f"no conversation {conversation_id!r}")
        self.conversation_id = conversation_id


class ConversationFull(Exception):
    """The conversation already has the maximum number of turns."""

    def __init__(self, conversation_id: str, max_turns: int) -> None:
        super().__init__(
            f"conversation {conversation_id!r} has reached the maximum of {max_turns} turns; start a new conversation"
        )
        self.conversation_id = conversation_id
        self.max_turns = max_turns


class StoreUnavailable(RuntimeError):
    """The conversation store cannot be reached (e.g. PostgreSQL is down); the message names no secrets."""


@dataclass(frozen=True)
class StoreLimits:
    """``max_turns`` per conversation; ``idle_expiry_s`` after its last turn a conversation is gone (0 = never)."""

    max_turns: int = 200
    idle_expiry_s: float = 30 * 86400.0

    @classmethod
    def from_settings(cls, settings: object) -> StoreLimits:
        return cls(
            max_turns=int(getattr(settings, "conversation_max_turns", cls.max_turns)),
            idle_expiry_s=float(getattr(settings, "conversation_idle_expiry_s", cls.idle_expiry_s)),
        )


class ConversationTurn(BaseModel):
    turn: int = Field(description="1-based position in the conversation.")
    question: str = Field(description="The user's message as sent.")
    standalone_question: str = Field(description="The self-contained question that was searched.")
    answer: Answer = Field(description="The answer as it was given, with its sources and quotes.")
    created_at: datetime


class Conversation(BaseModel):
    """One page of a conversation's turns, oldest first."""

    id: str
    created_at: datetime
    updated_at: datetime = Field(description="Time of the last turn; the conversation expires when idle too long.")
    total_turns: int = Field(description="How many turns the conversation has in all.")
    offset: int = Field(description="Turns skipped before this page.")
    limit: int = Field(description="Largest number of turns in this page.")
    turns: list[ConversationTurn] = Field(description="This page's turns (turn numbers offset+1 ...).")


def new_conversation_id() -> str:
    """A random, url-safe id (128 bits)."""
    return secrets.token_urlsafe(16)


def valid_conversation_id(value: str) -> bool:
    return bool(_ID_PATTERN.match(value))


def turn_from_row(
    turn: int, question: str, standalone: str, answer_json: str, created_at: datetime
) -> ConversationTurn:
    return ConversationTurn(
        turn=turn,
        question=question,
        standalone_question=standalone,
        answer=Answer.model_validate_json(answer_json),
        created_at=created_at,
    )


def history_tokens(turn: HistoryTurn) -> int:
    """What a turn costs in the follow-up budget: its question, standalone question, answer and quotes."""
    parts = [turn.question, turn.standalone if turn.standalone != turn.question else "", turn.answer_text]
    parts.extend(turn.quotes)
    return count_tokens("\n".join(p for p in parts if p))


def pick_history(newest_first: Iterable[tuple[str, str]], max_tokens: int) -> list[HistoryTurn]:
    """From (question, answer JSON) rows, newest first: the latest turns (returned oldest first) that fit in
    ``max_tokens`` tiktoken tokens. When the newest turn alone is over budget, its answer text and quotes are
    dropped and only its questions (and cited article ids) are kept."""
    picked: list[HistoryTurn] = []
    used = 0
    for question, answer_json in newest_first:
        turn = HistoryTurn.from_answer(question, Answer.model_validate_json(answer_json))
        cost = history_tokens(turn)
        if used + cost > max_tokens:
            if not picked:
                bare = HistoryTurn(
                    question=turn.question, standalone=turn.standalone, cited_article_ids=turn.cited_article_ids
                )
                if history_tokens(bare) <= max_tokens:
                    picked.append(bare)
            break
        picked.append(turn)
        used += cost
    picked.reverse()
    return picked
