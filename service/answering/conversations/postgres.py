"""Conversations in PostgreSQL (psycopg 3 with a ``psycopg_pool`` connection pool), shared by any number of replicas.

Select it with ``BYLINE_CONVERSATION_STORE=postgresql://user:password@host:5432/db`` (needs the ``postgres``
extra). The tables are created and upgraded by numbered migrations recorded in ``byline_schema_migrations``;
replicas starting together apply them one at a time under an advisory lock. Times come from the database's
clock, so replicas with skewed clocks agree on expiry. A turn locks its conversation row (``FOR UPDATE``), so
two replicas appending to one conversation at once get consecutive turn numbers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import Connection
from psycopg_pool import ConnectionPool, PoolTimeout

from service.answering.conversations.models import (
    DEFAULT_PAGE_SIZE,
    HISTORY_MAX_TURNS,
    Conversation,
    ConversationFull,
    ConversationNotFound,
    StoreLimits,
    StoreUnavailable,
    pick_history,
    turn_from_row,
    valid_conversation_id,
)
from service.answering.followup import HistoryTurn
from service.answering.schemas import Answer

log = logging.getLogger("byline.conversations")
T = TypeVar("T")

MIGRATION_LOCK = 0x6279_6C69_6E65  # pg_advisory_xact_lock key ("byline")
PURGE_EVERY_S = 60.0
POOL_TIMEOUT_S = 5.0  # a request waits this long for a connection, then the store is unavailable
_DOWN = (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout)
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        "CREATE TABLE byline_conversations ("
        " id text PRIMARY KEY, owner text,"
        " created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now())",
        "CREATE INDEX byline_conversations_updated_at ON byline_conversations (updated_at)",
        "CREATE TABLE byline_turns ("
        " conversation_id text NOT NULL REFERENCES byline_conversations (id) ON DELETE CASCADE,"
        " turn integer NOT NULL, question text NOT NULL, standalone text NOT NULL, answer_json text NOT NULL,"
        " created_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (conversation_id, turn))",
    ),
}
SCHEMA_VERSION = max(MIGRATIONS)

# true when the row is past the idle expiry (%(expiry)s seconds; 0 = never)
_EXPIRED = "(%(expiry)s > 0 AND updated_at < now() - make_interval(secs => %(expiry)s))"


def redact(url: str) -> str:
    """The connection URL without its password (for logs and error messages)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def migrate(conn: Connection) -> int:
    """Apply the migrations this database lacks (one transaction, under an advisory lock); return the version."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS byline_schema_migrations ("
            " version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row[0] for row in conn.execute("SELECT version FROM byline_schema_migrations")}
        for number in sorted(MIGRATIONS):
            if number not in done:
                for statement in MIGRATIONS[number]:
                    conn.execute(statement)
                conn.execute("INSERT INTO byline_schema_migrations (version) VALUES (%s)", (number,))
                log.info("conversation store: applied migration %d", number)
        return max(done | set(MIGRATIONS))


class PostgresConversationStore:
    """The conversation store over a connection pool (connections in autocommit; writes in explicit transactions)."""

    def __init__(
        self,
        url: str,
        limits: StoreLimits | None = None,
        pool_size: int = 4,
        connect_timeout_s: float = 10.0,
        pool_timeout_s: float = POOL_TIMEOUT_S,
    ) -> None:
        self.url = url
        self.limits = limits or StoreLimits()
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=max(1, pool_size),
            kwargs={"autocommit": True},
            check=ConnectionPool.check_connection,
            name="byline-conversations",
            timeout=pool_timeout_s,
            open=False,
        )
        try:
            self._pool.open(wait=True, timeout=connect_timeout_s)
            with self._pool.connection() as conn:
                self.schema_version = migrate(conn)
        except Exception as exc:
            self._pool.close()
            raise ConnectionError(f"conversation store {redact(url)}: {type(exc).__name__}: {exc}") from None
        self._purge_lock = threading.Lock()
        self._last_purge = 0.0
        self._maybe_purge()

    # --- expiry ---
    def _params(self, conversation_id: str, **more: object) -> dict[str, object]:
        return {"id": conversation_id, "expiry": float(self.limits.idle_expiry_s), **more}

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        """A pooled connection; PostgreSQL unreachable (or gone mid-query) is ``StoreUnavailable``."""
        try:
            with self._pool.connection() as conn:
                yield conn
        except _DOWN as exc:
            log.error("conversation store %s: %s: %s", redact(self.url), type(exc).__name__, exc)
            raise StoreUnavailable(f"the conversation store is unavailable ({type(exc).__name__})") from None

    def purge_expired(self) -> int:
        with self._connection() as conn:
            cursor = conn.execute(f"DELETE FROM byline_conversations WHERE {_EXPIRED}", self._params(""))
            return cursor.rowcount

    def _maybe_purge(self) -> None:
        with self._purge_lock:
            if time.monotonic() - self._last_purge < PURGE_EVERY_S:
                return
            self._last_purge = time.monotonic()
        self.purge_expired()

    def _live(self, conn: Connection, conversation_id: str, owner: str | None, lock: bool = False) -> tuple:
        """(created_at, updated_at) of a live conversation of this owner, else ``ConversationNotFound``
        (an expired one is deleted first: call inside a transaction)."""
        if not valid_conversation_id(conversation_id):
            raise ConversationNotFound(conversation_id)
        row = conn.execute(
            f"SELECT created_at, updated_at, owner, {_EXPIRED} FROM byline_conversations WHERE id = %(id)s"
            + (" FOR UPDATE" if lock else ""),
            self._params(conversation_id),
        ).fetchone()
        if row is None or (owner is not None and row[2] != owner):
            raise ConversationNotFound(conversation_id)
        if row[3]:
            conn.execute("DELETE FROM byline_conversations WHERE id = %(id)s", self._params(conversation_id))
            raise _Expired
        return row[0], row[1]

    def _run(self, conversation_id: str, work: Callable[[Connection], T]) -> T:
        """Run ``work(conn)`` in a transaction; an expiry found inside commits its delete, then is not found."""
        with self._connection() as conn:
            with conn.transaction():
                try:
                    return work(conn)
                except _Expired:
                    pass  # leave the transaction normally, so that the delete is committed
            raise ConversationNotFound(conversation_id)

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
        payload = answer.model_dump_json()

        def work(conn: Connection) -> int:
            if create:
                inserted = conn.execute(
                    "INSERT INTO byline_conversations (id, owner) VALUES (%(id)s, %(owner)s) ON CONFLICT DO NOTHING",
                    self._params(conversation_id, owner=owner),
                ).rowcount
                if not inserted:
                    raise ConversationNotFound(conversation_id)
            else:
                self._live(conn, conversation_id, owner, lock=True)
            (last,) = conn.execute(
                "SELECT COALESCE(MAX(turn), 0) FROM byline_turns WHERE conversation_id = %(id)s",
                self._params(conversation_id),
            ).fetchone()
            if last >= self.limits.max_turns:
                raise ConversationFull(conversation_id, self.limits.max_turns)
            turn = int(last) + 1
            conn.execute(
                "INSERT INTO byline_turns (conversation_id, turn, question, standalone, answer_json) "
                "VALUES (%(id)s, %(turn)s, %(question)s, %(standalone)s, %(answer)s)",
                self._params(conversation_id, turn=turn, question=question, standalone=standalone, answer=payload),
            )
            conn.execute(
                "UPDATE byline_conversations SET updated_at = now() WHERE id = %(id)s", self._params(conversation_id)
            )
            return turn

        return self._run(conversation_id, work)

    def delete(self, conversation_id: str, owner: str | None = None) -> None:
        def work(conn: Connection) -> None:
            self._live(conn, conversation_id, owner, lock=True)
            conn.execute("DELETE FROM byline_conversations WHERE id = %(id)s", self._params(conversation_id))

        self._run(conversation_id, work)

    # --- reads ---
    def exists(self, conversation_id: str, owner: str | None = None) -> bool:
        try:
            self._run(conversation_id, lambda conn: self._live(conn, conversation_id, owner))
        except ConversationNotFound:
            return False
        return True

    def check_room(self, conversation_id: str, owner: str | None = None) -> int:
        def work(conn: Connection) -> int:
            self._live(conn, conversation_id, owner)
            (last,) = conn.execute(
                "SELECT COALESCE(MAX(turn), 0) FROM byline_turns WHERE conversation_id = %(id)s",
                self._params(conversation_id),
            ).fetchone()
            return int(last)

        last = self._run(conversation_id, work)
        if last >= self.limits.max_turns:
            raise ConversationFull(conversation_id, self.limits.max_turns)
        return last

    def get(
        self, conversation_id: str, owner: str | None = None, offset: int = 0, limit: int = DEFAULT_PAGE_SIZE
    ) -> Conversation:
        def work(conn: Connection) -> Conversation:
            created_at, updated_at = self._live(conn, conversation_id, owner)
            (total,) = conn.execute(
                "SELECT COUNT(*) FROM byline_turns WHERE conversation_id = %(id)s", self._params(conversation_id)
            ).fetchone()
            rows = conn.execute(
                "SELECT turn, question, standalone, answer_json, created_at FROM byline_turns "
                "WHERE conversation_id = %(id)s ORDER BY turn LIMIT %(limit)s OFFSET %(offset)s",
                self._params(conversation_id, limit=limit, offset=offset),
            ).fetchall()
            return Conversation(
                id=conversation_id,
                created_at=created_at,
                updated_at=updated_at,
                total_turns=int(total),
                offset=offset,
                limit=limit,
                turns=[turn_from_row(*row) for row in rows],
            )

        return self._run(conversation_id, work)

    def recent_history(
        self, conversation_id: str, max_tokens: int, max_turns: int = HISTORY_MAX_TURNS, owner: str | None = None
    ) -> list[HistoryTurn]:
        def work(conn: Connection) -> list[tuple[str, str]]:
            self._live(conn, conversation_id, owner)
            return conn.execute(
                "SELECT question, answer_json FROM byline_turns WHERE conversation_id = %(id)s "
                "ORDER BY turn DESC LIMIT %(limit)s",
                self._params(conversation_id, limit=max_turns),
            ).fetchall()

        return pick_history(self._run(conversation_id, work), max_tokens)

    def count(self) -> int:
        with self._connection() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM byline_conversations").fetchone()[0])

    def close(self) -> None:
        self._pool.close()


class _Expired(Exception):
    """Internal: the conversation was past its idle expiry (and has been deleted in this transaction)."""
