"""Conversation stores: the interface (``protocol``), the models (``models``), SQLite beside the index (the default,
``sqlite``) and PostgreSQL for replicas (``postgres``, needs the ``postgres`` extra). ``open_store`` picks one
from ``Settings.conversation_store``."""

from __future__ import annotations

from pathlib import Path

from service.answering.conversations.models import (
    DEFAULT_PAGE_SIZE,
    HISTORY_MAX_TURNS,
    Conversation,
    ConversationFull,
    ConversationNotFound,
    ConversationTurn,
    StoreLimits,
    StoreUnavailable,
    history_tokens,
    new_conversation_id,
    valid_conversation_id,
)
from service.answering.conversations.protocol import ConversationStore
from service.answering.conversations.sqlite import DB_NAME, SQLiteConversationStore

POSTGRES_SCHEMES = ("postgresql://", "postgres://")
SQLITE_SCHEME = "sqlite:///"


def open_store(settings: object, index_root: Path) -> ConversationStore:
    """The store ``settings.conversation_store`` names: empty for ``<index_root>/conversations.sqlite``,
    ``postgresql://...`` for PostgreSQL, ``sqlite:///path`` for a SQLite file elsewhere."""
    target = str(getattr(settings, "conversation_store", "") or "").strip()
    limits = StoreLimits.from_settings(settings)
    if not target:
        return SQLiteConversationStore.at_index_root(index_root, limits)
    if target.startswith(POSTGRES_SCHEMES):
        try:
            from service.answering.conversations.postgres import PostgresConversationStore
        except ImportError as exc:
            raise RuntimeError(
                "BYLINE_CONVERSATION_STORE is a PostgreSQL URL but psycopg is not installed: "
                "pip install -e '.[postgres]'"
            ) from exc
        return PostgresConversationStore(
            target,
            limits,
            pool_size=int(getattr(settings, "conversation_pool_size", 4)),
            pool_timeout_s=float(getattr(settings, "conversation_pool_timeout_s", 5.0)),
        )
    if target.startswith(SQLITE_SCHEME):
        return SQLiteConversationStore(Path(target[len(SQLITE_SCHEME) :]), limits)  # sqlite:////abs, sqlite:///rel
    raise ValueError("conversation_store: expected empty (SQLite beside the index), postgresql://... or sqlite:///path")


__all__ = [
    "DB_NAME",
    "DEFAULT_PAGE_SIZE",
    "HISTORY_MAX_TURNS",
    "Conversation",
    "ConversationFull",
    "ConversationNotFound",
    "ConversationStore",
    "ConversationTurn",
    "SQLiteConversationStore",
    "StoreLimits",
    "StoreUnavailable",
    "history_tokens",
    "new_conversation_id",
    "open_store",
    "valid_conversation_id",
]
