"""Conversations in SQLite at ``<index_root>/conversations.sqlite``: one row per turn, one transaction per turn.

The database lives beside the index versions (not inside one), so conversations survive a new index
version and a restart. WAL mode lets the history endpoint read while a turn is being written. Each turn
keeps the user's message, the standalone question that was searched, and the full answer JSON, so a
conversation's history comes back with its citations exactly as they were given.
"""

from __future__ import annotations

import re
import secrets
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, Field

from index.tokens import count_tokens
from service.answering.followup import HistoryTurn
from service.answering.schemas import Answer

DB_NAME = "conversations.sqlite"
SCHEMA_VERSION = 1
_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{8,64}$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS turns (
    conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    turn INTEGER NOT NULL,
    question TEXT NOT NULL,
    standalone TEXT NOT NULL,
    answer_json TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (conversation_id, turn)
);
"""


class ConversationNotFound(LookupError):
    """No conversation with this id (never created, deleted, or malformed)."""

    def __init__(self, conversation_id: str) -> None:
        super().__init__(f"no conversation {conversation_id!r}")
        self.conversation_id = conversation_id


class ConversationTurn(BaseModel):
    turn: int = Field(description="1-based position in the conversation.")
    question: str = Field(description="The user's message as sent.")
    standalone_question: str = Field(description="The self-contained question that was searched.")
    answer: Answer = Field(description="The answer as it was given, with its sources and quotes.")
    created_at: datetime


class Conversation(BaseModel):
    id: str
    created_at: datetime
    updated_at: datetime
    turns: list[ConversationTurn]


def new_conversation_id() -> str:
    """A random, url-safe id (128 bits)."""
    return secrets.token_urlsafe(16)


def valid_conversation_id(value: str) -> bool:
    return bool(_ID_PATTERN.match(value))


def _now() -> datetime:
    return datetime.now(UTC)


class ConversationStore:
    """Thread-safe SQLite store; one connection shared under a lock (the service's threads are few)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30.0)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._conn.execute("PRAGMA busy_timeout=30000")
        with self._transaction() as conn:
            # executescript() would commit on its own: run the statements inside this transaction instead
            for statement in filter(str.strip, _SCHEMA.split(";")):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    @classmethod
    def at_index_root(cls, root: Path) -> ConversationStore:
        return cls(Path(root) / DB_NAME)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    @property
    def journal_mode(self) -> str:
        with self._lock:
            return str(self._conn.execute("PRAGMA journal_mode").fetchone()[0])

    # --- writes ---
    def add_turn(
        self, conversation_id: str, question: str, standalone: str, answer: Answer, create: bool = False
    ) -> int:
        """Append a turn in one transaction (creating the conversation when ``create``); return its number."""
        if not valid_conversation_id(conversation_id):
            raise ConversationNotFound(conversation_id)
        now = _now().isoformat()
        payload = answer.model_dump_json()
        with self._transaction() as conn:
            exists = conn.execute("SELECT 1 FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
            if not exists:
                if not create:
                    raise ConversationNotFound(conversation_id)
                conn.execute(
                    "INSERT INTO conversations (id, created_at, updated_at) VALUES (?, ?, ?)",
                    (conversation_id, now, now),
                )
            (last,) = conn.execute(
                "SELECT COALESCE(MAX(turn), 0) FROM turns WHERE conversation_id = ?", (conversation_id,)
            ).fetchone()
            turn = int(last) + 1
            conn.execute(
                "INSERT INTO turns (conversation_id, turn, question, standalone, answer_json, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (conversation_id, turn, question, standalone, payload, now),
            )
            conn.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", (now, conversation_id))
        return turn

    def delete(self, conversation_id: str) -> None:
        if not valid_conversation_id(conversation_id):
            raise ConversationNotFound(conversation_id)
        with self._transaction() as conn:
            conn.execute("DELETE FROM turns WHERE conversation_id = ?", (conversation_id,))
            deleted = conn.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,)).rowcount
        if not deleted:
            raise ConversationNotFound(conversation_id)

    # --- reads ---
    def exists(self, conversation_id: str) -> bool:
        if not valid_conversation_id(conversation_id):
            return False
        with self._lock:
            row = self._conn.execute("SELECT 1 FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
        return row is not None

    def get(self, conversation_id: str) -> Conversation:
        if not valid_conversation_id(conversation_id):
            raise ConversationNotFound(conversation_id)
        with self._lock:
            head = self._conn.execute(
                "SELECT created_at, updated_at FROM conversations WHERE id = ?", (conversation_id,)
            ).fetchone()
            rows = self._conn.execute(
                "SELECT turn, question, standalone, answer_json, created_at FROM turns "
                "WHERE conversation_id = ? ORDER BY turn",
                (conversation_id,),
            ).fetchall()
        if head is None:
            raise ConversationNotFound(conversation_id)
        return Conversation(
            id=conversation_id,
            created_at=datetime.fromisoformat(head[0]),
            updated_at=datetime.fromisoformat(head[1]),
            turns=[
                ConversationTurn(
                    turn=row[0],
                    question=row[1],
                    standalone_question=row[2],
                    answer=Answer.model_validate_json(row[3]),
                    created_at=datetime.fromisoformat(row[4]),
                )
                for row in rows
            ],
        )

    def recent_history(self, conversation_id: str, max_tokens: int, max_turns: int = 20) -> list[HistoryTurn]:
        """The latest turns (oldest first) that fit in ``max_tokens`` tiktoken tokens, for follow-up resolution.

        When the newest turn alone is over budget, its answer text and quotes are dropped and only its
        questions (and cited article ids) are kept.
        """
        if not valid_conversation_id(conversation_id):
            raise ConversationNotFound(conversation_id)
        with self._lock:
            head = self._conn.execute("SELECT 1 FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
            rows = self._conn.execute(
                "SELECT question, answer_json FROM turns WHERE conversation_id = ? ORDER BY turn DESC LIMIT ?",
                (conversation_id, max_turns),
            ).fetchall()
        if head is None:
            raise ConversationNotFound(conversation_id)
        picked: list[HistoryTurn] = []
        used = 0
        for question, answer_json in rows:
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

    def count(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM conversations").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def history_tokens(turn: HistoryTurn) -> int:
    """What a turn costs in the follow-up budget: its question, standalone question, answer and quotes."""
    parts = [turn.question, turn.standalone if turn.standalone != turn.question else "", turn.answer_text]
    parts.extend(turn.quotes)
    return count_tokens("\n".join(p for p in parts if p))
