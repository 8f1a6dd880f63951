"""The interface every conversation store implements (SQLite beside the index, or PostgreSQL for replicas).

``owner`` is the hash of the API key that created a conversation (``None`` when the service has no keys). With an
owner given, a conversation of another owner is not found: reads, follow-ups and deletes all raise
``ConversationNotFound``, exactly as for an id that never existed. A conversation idle for longer than
``limits.idle_expiry_s`` is deleted when next touched (and by ``purge_expired``) and is not found either.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from service.answering.conversations.models import DEFAULT_PAGE_SIZE, HISTORY_MAX_TURNS, Conversation, StoreLimits
from service.answering.followup import HistoryTurn
from service.answering.schemas import Answer


@runtime_checkable
class ConversationStore(Protocol):
    limits: StoreLimits

    def add_turn(
        self,
        conversation_id: str,
        question: str,
        standalone: str,
        answer: Answer,
        create: bool = False,
        owner: str | None = None,
    ) -> int:
        """Append a turn in one transaction (creating the conversation, owned by ``owner``, when ``create``);
        return its number. Raises ``ConversationNotFound``, or ``ConversationFull`` at ``limits.max_turns``."""
        ...

    def check_room(self, conversation_id: str, owner: str | None = None) -> int:
        """The number of turns so far; raises ``ConversationNotFound``, or ``ConversationFull`` when no turn fits."""
        ...

    def get(
        self, conversation_id: str, owner: str | None = None, offset: int = 0, limit: int = DEFAULT_PAGE_SIZE
    ) -> Conversation:
        """One page of turns (``offset``, ``limit``), with the total count; never reads more than the page."""
        ...

    def recent_history(
        self, conversation_id: str, max_tokens: int, max_turns: int = HISTORY_MAX_TURNS, owner: str | None = None
    ) -> list[HistoryTurn]:
        """The latest turns (oldest first, at most ``max_turns`` read) that fit in ``max_tokens`` tokens."""
        ...

    def delete(self, conversation_id: str, owner: str | None = None) -> None: ...

    def exists(self, conversation_id: str, owner: str | None = None) -> bool: ...

    def count(self) -> int:
        """Conversations stored (expired ones not yet purged included)."""
        ...

    def purge_expired(self) -> int:
        """Delete every conversation idle for longer than the expiry; return how many."""
        ...

    def close(self) -> None: ...
