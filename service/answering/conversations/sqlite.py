"""Conversations in SQLite at ``<index_root>/conversations.sqlite``: one row per turn, one transaction per turn.

The database lives beside the index versions (not inside one), so conversations survive a new index
version and a restart. WAL mode lets the history endpoint read while a turn is being written. Each turn
keeps the user's message, the standalone question that was searched, and the full answer JSON, so a
conversation's history comes back with its citations exactly as they were given. The schema version is
SQLite's ``user_version``; ``MIGRATIONS`` bring an older file up to date when it is opened.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from service.answering.conversations.models import (
    DEFAULT_PAGE_SIZE,
    HISTORY_MAX_TURNS,
    Conversation,
    ConversationFull,
    ConversationNotFound,
    StoreLimits,
    pick_history,
    turn_from_row,
    valid_conversation_id,
)
from service.answering.followup import HistoryTurn
from service.answering.schemas import Answer

DB_NAME = "conversations.sqlite"
PURGE_EVERY_S = 60.0

# version -> statements; version 1 is the original schema, so files written before owners and expiry upgrade.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        "CREATE TABLE IF NOT EXISTS conversations ("
        " id TEXT PRIMARY KEY, created_at TEXT NOT NULL, updated_at TEXT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS turns ("
        " conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,"
        " turn INTEGER NOT NULL, question TEXT NOT NULL, standalone TEXT NOT NULL,"
        " answer_json TEXT NOT NULL, created_at TEXT NOT NULL, PRIMARY KEY (conversation_id, turn))",
    ),
    2: (
        "ALTER TABLE conversations ADD COLUMN owner TEXT",
        "CREATE INDEX IF NOT EXISTS conversations_updated_at ON conversations (updated_at)",
    ),
}
SCHEMA_VERSION = max(MIGRATIONS)


def _iso(moment: datetime) -> str:
    """Fixed-width UTC text, so that text order is time order."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


class SQLiteConversationStore:
    """Thread-safe SQLite store; one connection shared under a lock (the service's threads are few)."""

    def __init__(self, path: Path, limits: StoreLimits | None = None) -> None:
        self.path = Path(path)
        self.limits = limits or StoreLimits()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30.0)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._conn.execute("PRAGMA busy_timeout=30000")
        self._migrate()
        self._last_purge = 0.0
        self._maybe_purge()

    @classmethod
    def at_index_root(cls, root: Path, limits: StoreLimits | None = None) -> SQLiteConversationStore:
        return cls(Path(root) / DB_NAME, limits)

    def _migrate(self) -> None:
        with self._transaction() as conn:
            # executescript() would commit on its own: run the statements inside this transaction instead
            (version,) = conn.execute("PRAGMA user_version").fetchone()
            for number in sorted(MIGRATIONS):
                if number > version:
                    for statement in MIGRATIONS[number]:
                        conn.execute(statement)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

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

    @property
    def schema_version(self) -> int:
        with self._lock:
            return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    # --- expiry ---
    def _cutoff(self) -> str | None:
        if self.limits.idle_expiry_s <= 0:
            return None
        return _iso(datetime.now(UTC) - timedelta(seconds=self.limits.idle_expiry_s))

    def _expired(self, updated_at: str) -> bool:
        cutoff = self._cutoff()
        return cutoff is not None and _iso(datetime.fromisoformat(updated_at)) < cutoff

    def _drop_if_expired(self, conversation_id: str) -> None:
        cutoff = self._cutoff()
        if cutoff is None:
            return
        with self._transaction() as conn:
            conn.execute(
                "DELETE FROM turns WHERE conversation_id IN "
                "(SELECT id FROM conversations WHERE id = ? AND updated_at < ?)",
                (conversation_id, cutoff),
            )
            conn.execute("DELETE FROM conversations WHERE id = ? AND updated_at < ?", (conversation_id, cutoff))

    def purge_expired(self) -> int:
        cutoff = self._cutoff()
        if cutoff is None:
            return 0
        with self._transaction() as conn:
            conn.execute(
                "DELETE FROM turns WHERE conversation_id IN (SELECT id FROM conversations WHERE updated_at < ?)",
                (cutoff,),
            )
            return int(conn.execute("DELETE FROM conversations WHERE updated_at < ?", (cutoff,)).rowcount)

    def _maybe_purge(self) -> None:
        if time.monotonic() - self._last_purge >= PURGE_EVERY_S:
            self._last_purge = time.monotonic()
            self.purge_expired()

    def _head(self, conn: sqlite3.Connection, conversation_id: str, owner: str | None) -> tuple[str, str] | None:
        """(created_at, updated_at) of a live conversation of this owner; ``None`` when there is none.
        Raises ``_Expired`` for one past its idle expiry (the caller deletes it outside the read)."""
        if not valid_conversation_id(conversation_id):
            return None
        row = conn.execute(
            "SELECT created_at, updated_at, owner FROM conversations WHERE id = ?", (conversation_id,)
        ).fetchone()
        if row is None or (owner is not None and row[2] != owner):
            return None
        if self._expired(row[1]):
            raise _Expired
        return row[0], row[1]

    @contextmanager
    def _reading(self, conversation_id: str) -> Iterator[sqlite3.Connection]:
        """The shared connection under the lock; an expired conversation found inside is deleted, then not found."""
        try:
            with self._lock:
                yield self._conn
        except _Expired:
            self._drop_if_expired(conversation_id)
            raise ConversationNotFound(conversation_id) from None

    # --- writes ---
    def add_turn(
        self,
        conversation_id: str,
        question: str,
        standalone: str,
        answer: Answer,
        create: bool = False,
        owner: str | None = None,
    ) -> int:
        if not valid_conversation_id(conversation_id):
            raise ConversationNotFound(conversation_id)
        if create:
            self._maybe_purge()
        now = _iso(datetime.now(UTC))
        payload = answer.model_dump_json()
        try:
            with self._transaction() as conn:
                row = conn.execute("SELECT updated_at, owner FROM conversations WHERE id = ?", (conversation_id,))
                head = row.fetchone()
                if head is None:
                    if not create:
                        raise ConversationNotFound(conversation_id)
                    conn.execute(
                        "INSERT INTO conversations (id, created_at, updated_at, owner) VALUES (?, ?, ?, ?)",
                        (conversation_id, now, now, owner),
                    )
                elif create or (owner is not None and head[1] != owner):
                    raise ConversationNotFound(conversation_id)
                elif self._expired(head[0]):
                    raise _Expired
                (last,) = conn.execute(
                    "SELECT COALESCE(MAX(turn), 0) FROM turns WHERE conversation_id = ?", (conversation_id,)
                ).fetchone()
                if int(last) >= self.limits.max_turns:
                    raise ConversationFull(conversation_id, self.limits.max_turns)
                turn = int(last) + 1
                conn.execute(
                    "INSERT INTO turns (conversation_id, turn, question, standalone, answer_json, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (conversation_id, turn, question, standalone, payload, now),
                )
                conn.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", (now, conversation_id))
        except _Expired:
            self._drop_if_expired(conversation_id)
            raise ConversationNotFound(conversation_id) from None
        return turn

    def delete(self, conversation_id: str, owner: str | None = None) -> None:
        if not valid_conversation_id(conversation_id):
            raise ConversationNotFound(conversation_id)
        with self._transaction() as conn:
            head = conn.execute("SELECT updated_at, owner FROM conversations WHERE id = ?", (conversation_id,))
            row = head.fetchone()
            if row is None or (owner is not None and row[1] != owner):
                raise ConversationNotFound(conversation_id)
            conn.execute("DELETE FROM turns WHERE conversation_id = ?", (conversation_id,))
            conn.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))
        if self._expired(row[0]):
            raise ConversationNotFound(conversation_id)  # it was already gone, as far as anyone could tell

    # --- reads ---
    def exists(self, conversation_id: str, owner: str | None = None) -> bool:
        try:
            with self._reading(conversation_id) as conn:
                return self._head(conn, conversation_id, owner) is not None
        except ConversationNotFound:
            return False

    def check_room(self, conversation_id: str, owner: str | None = None) -> int:
        with self._reading(conversation_id) as conn:
            if self._head(conn, conversation_id, owner) is None:
                raise ConversationNotFound(conversation_id)
            (last,) = conn.execute(
                "SELECT COALESCE(MAX(turn), 0) FROM turns WHERE conversation_id = ?", (conversation_id,)
            ).fetchone()
        if int(last) >= self.limits.max_turns:
            raise ConversationFull(conversation_id, self.limits.max_turns)
        return int(last)

    def get(
        self, conversation_id: str, owner: str | None = None, offset: int = 0, limit: int = DEFAULT_PAGE_SIZE
    ) -> Conversation:
        with self._reading(conversation_id) as conn:
            head = self._head(conn, conversation_id, owner)
            if head is None:
                raise ConversationNotFound(conversation_id)
            (total,) = conn.execute(
                "SELECT COUNT(*) FROM turns WHERE conversation_id = ?", (conversation_id,)
            ).fetchone()
            rows = conn.execute(
                "SELECT turn, question, standalone, answer_json, created_at FROM turns "
                "WHERE conversation_id = ? ORDER BY turn LIMIT ? OFFSET ?",
                (conversation_id, limit, offset),
            ).fetchall()
        return Conversation(
            id=conversation_id,
            created_at=datetime.fromisoformat(head[0]),
            updated_at=datetime.fromisoformat(head[1]),
            total_turns=int(total),
            offset=offset,
            limit=limit,
            turns=[turn_from_row(r[0], r[1], r[2], r[3], datetime.fromisoformat(r[4])) for r in rows],
        )

    def recent_history(
        self, conversation_id: str, max_tokens: int, max_turns: int = HISTORY_MAX_TURNS, owner: str | None = None
    ) -> list[HistoryTurn]:
        with self._reading(conversation_id) as conn:
            if self._head(conn, conversation_id, owner) is None:
                raise ConversationNotFound(conversation_id)
            rows = conn.execute(
                "SELECT question, answer_json FROM turns WHERE conversation_id = ? ORDER BY turn DESC LIMIT ?",
                (conversation_id, max_turns),
            ).fetchall()
        return pick_history(rows, max_tokens)

    def count(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM conversations").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class _Expired(Exception):
    """Internal: the conversation is past its idle expiry."""
