"""The SQLite conversation store's own behaviour (WAL, one transaction per turn, schema upgrade), the chat service
over the real engine, and conversations through the real HTTP server: owners (issue 12 item 1) and bounds (item 6).

The store suite that every backend passes (SQLite and PostgreSQL) is tests/test_conversation_store.py."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from conftest import make_answer, running_server

from index.settings import Settings
from service.answering.conversations import (
    DB_NAME,
    ConversationNotFound,
    SQLiteConversationStore,
    new_conversation_id,
    valid_conversation_id,
)
from service.answering.schemas import ChatRequest


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteConversationStore]:
    opened = SQLiteConversationStore.at_index_root(tmp_path)
    yield opened
    opened.close()


def test_ids_are_random_url_safe_tokens() -> None:
    ids = {new_conversation_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(valid_conversation_id(i) and len(i) >= 20 for i in ids)
    assert not valid_conversation_id("../etc/passwd")
    assert not valid_conversation_id("short")


def test_wal_mode_and_survives_a_restart(tmp_path: Path) -> None:
    cid = new_conversation_id()
    store = SQLiteConversationStore.at_index_root(tmp_path)
    assert store.journal_mode == "wal"
    answer = make_answer("q1")
    store.add_turn(cid, "q1", "q1", answer, create=True)
    store.close()
    assert (tmp_path / DB_NAME).is_file()
    reopened = SQLiteConversationStore.at_index_root(tmp_path)
    try:
        assert reopened.get(cid).turns[0].answer == answer
    finally:
        reopened.close()


def test_a_failed_turn_leaves_nothing_behind(store: SQLiteConversationStore, tmp_path: Path) -> None:
    cid = new_conversation_id()
    store.add_turn(cid, "q1", "q1", make_answer("q1"), create=True)
    with sqlite3.connect(tmp_path / DB_NAME) as other:
        other.execute("CREATE TRIGGER fail BEFORE UPDATE ON conversations BEGIN SELECT RAISE(ABORT, 'boom'); END")
    with pytest.raises(sqlite3.DatabaseError):
        store.add_turn(cid, "q2", "q2", make_answer("q2"))
    assert [t.turn for t in store.get(cid).turns] == [1]  # the insert of turn 2 was rolled back with it


def test_a_version_1_file_is_upgraded_in_place(tmp_path: Path) -> None:
    """A conversations.sqlite written before owners and expiry (schema 1) opens, keeps its turns, and has no owner."""
    from service.answering.conversations.sqlite import MIGRATIONS, SCHEMA_VERSION

    path = tmp_path / DB_NAME
    answer = make_answer("q1")
    with sqlite3.connect(path) as old:
        for statement in MIGRATIONS[1]:
            old.execute(statement)
        old.execute(
            "INSERT INTO conversations VALUES ('AAAAAAAAAAAAAAAAAAAAAA', '2099-01-01T00:00:00+00:00', "
            "'2099-01-01T00:00:00+00:00')"
        )
        old.execute(
            "INSERT INTO turns VALUES ('AAAAAAAAAAAAAAAAAAAAAA', 1, 'q1', 'q1', ?, '2099-01-01T00:00:00+00:00')",
            (answer.model_dump_json(),),
        )
        old.execute("PRAGMA user_version=1")
    store = SQLiteConversationStore(path)
    try:
        assert store.schema_version == SCHEMA_VERSION
        assert store.get("AAAAAAAAAAAAAAAAAAAAAA").turns[0].answer == answer
        with pytest.raises(ConversationNotFound):  # no owner recorded: no key can claim it
            store.get("AAAAAAAAAAAAAAAAAAAAAA", owner="k1:someone")
    finally:
        store.close()


# --------------------------------------------------------------------------------------------------
# the chat service over the real engine and a real index


@pytest.fixture(scope="module")
def engine(sample_index: Path, encoder):
    from service.answering.engine import Engine

    return Engine(index_root=sample_index, encoder=encoder)


def test_chat_service_creates_follows_up_and_persists(engine, sample_index: Path) -> None:
    from service.answering.chat import ChatService

    store = SQLiteConversationStore.at_index_root(sample_index)
    service = ChatService(engine, store)
    first = service.chat(ChatRequest(question="How did the Millbrook council vote on the bike lanes?"))
    assert first.turn == 1 and valid_conversation_id(first.conversation_id)
    assert not first.abstained and first.sources
    followup = ChatRequest(question="Who voted against it?", conversation_id=first.conversation_id)
    second = service.chat(followup)
    assert second.turn == 2 and second.conversation_id == first.conversation_id
    assert "millbrook council vote" in second.standalone_question.lower()  # "it" resolved from turn 1
    store.close()

    # a new store on the same file (a restarted service) sees the whole conversation
    reopened = SQLiteConversationStore(sample_index / DB_NAME)
    try:
        history = ChatService(engine, reopened).history(first.conversation_id)
        assert [t.turn for t in history.turns] == [1, 2]
        assert history.turns[0].answer.sources[0].quotes == first.sources[0].quotes
        with pytest.raises(ConversationNotFound):
            ChatService(engine, reopened).chat(ChatRequest(question="And then?", conversation_id="not-a-known-id"))
    finally:
        reopened.close()


# --------------------------------------------------------------------------------------------------
# through the real HTTP server

QUESTION = "How did the Millbrook council vote on the bike lanes?"
FOLLOW_UP = "When will construction of them finish?"


@contextmanager
def serve(engine, tmp_path: Path, **overrides: object) -> Iterator[tuple[httpx.Client, Path]]:
    """The real app on a loopback port, its conversations in their own SQLite file; yields (client, that file)."""
    from service.web.api import create_app

    db = tmp_path / "conversations.sqlite"
    fields = {"api_keys": [], "rate_limit_per_minute": 10_000, **overrides}
    settings = Settings(conversation_store=f"sqlite:///{db}", **fields)
    with running_server(create_app(settings, engine)) as url, httpx.Client(base_url=url, timeout=60) as http:
        yield http, db


def stored_owners(db: Path) -> list[str | None]:
    with sqlite3.connect(db) as conn:
        return [row[0] for row in conn.execute("SELECT owner FROM conversations")]


def test_http_a_conversation_belongs_to_the_key_that_created_it(engine, tmp_path: Path) -> None:
    from service.web.ownership import owner_id

    one, two = {"Authorization": "Bearer key-one"}, {"X-API-Key": "key-two"}
    with serve(engine, tmp_path, api_keys=["key-one", "key-two"]) as (http, db):
        first = http.post("/v1/chat", json={"question": QUESTION}, headers=one)
        assert first.status_code == 200
        cid = first.json()["conversation_id"]
        path = f"/v1/conversations/{cid}"

        # another valid key: the conversation does not exist for it, whatever it tries
        read = http.get(path, headers=two)
        assert read.status_code == 404 and read.json() == {"detail": f"no conversation {cid!r}"}
        followup = http.post("/v1/chat", json={"question": FOLLOW_UP, "conversation_id": cid}, headers=two)
        assert followup.status_code == 404 and "detail" in followup.json()
        streamed = http.post(
            "/v1/chat", json={"question": FOLLOW_UP, "conversation_id": cid, "stream": True}, headers=two
        )
        assert streamed.status_code == 404
        assert http.delete(path, headers=two).status_code == 404

        # the owner, by either header, still has it, unchanged by those attempts
        mine = http.get(path, headers={"X-API-Key": "key-one"})
        assert mine.status_code == 200 and [t["turn"] for t in mine.json()["turns"]] == [1]
        again = http.post("/v1/chat", json={"question": FOLLOW_UP, "conversation_id": cid}, headers=one)
        assert again.status_code == 200 and again.json()["turn"] == 2

        # stored as a keyed hash, never the key itself
        assert stored_owners(db) == [owner_id("key-one")]
        assert db.read_bytes().find(b"key-one") == -1
        assert owner_id("key-one") != owner_id("key-two") and owner_id("key-one").startswith("k1:")

        assert http.delete(path, headers=one).status_code == 204
        assert http.get(path, headers=one).status_code == 404


def test_http_without_keys_any_client_uses_any_conversation(engine, tmp_path: Path) -> None:
    with serve(engine, tmp_path) as (http, db):
        cid = http.post("/v1/chat", json={"question": QUESTION}).json()["conversation_id"]
        # a header that would be a key means nothing when no keys are configured
        followup = http.post(
            "/v1/chat", json={"question": FOLLOW_UP, "conversation_id": cid}, headers={"X-API-Key": "whatever"}
        )
        assert followup.status_code == 200 and followup.json()["turn"] == 2
        assert http.get(f"/v1/conversations/{cid}").json()["total_turns"] == 2
        assert stored_owners(db) == [None]
        assert http.delete(f"/v1/conversations/{cid}", headers={"Authorization": "Bearer x"}).status_code == 204


def test_http_a_full_conversation_is_409(engine, tmp_path: Path) -> None:
    with serve(engine, tmp_path, conversation_max_turns=2) as (http, _):
        cid = http.post("/v1/chat", json={"question": QUESTION}).json()["conversation_id"]
        assert http.post("/v1/chat", json={"question": FOLLOW_UP, "conversation_id": cid}).json()["turn"] == 2
        for stream in (False, True):
            full = http.post("/v1/chat", json={"question": "And the cost?", "conversation_id": cid, "stream": stream})
            assert full.status_code == 409
            assert full.json() == {
                "detail": f"conversation {cid!r} has reached the maximum of 2 turns; start a new conversation"
            }
        assert http.get(f"/v1/conversations/{cid}").json()["total_turns"] == 2
        assert http.post("/v1/chat", json={"question": QUESTION}).status_code == 200  # a new one starts fine


def test_http_idle_conversations_expire_and_are_deleted(engine, tmp_path: Path) -> None:
    with serve(engine, tmp_path, conversation_idle_expiry_s=1.0) as (http, db):
        kept = http.post("/v1/chat", json={"question": QUESTION}).json()["conversation_id"]
        idle = http.post("/v1/chat", json={"question": QUESTION}).json()["conversation_id"]
        time.sleep(0.6)
        assert http.post("/v1/chat", json={"question": FOLLOW_UP, "conversation_id": kept}).status_code == 200
        time.sleep(0.6)  # idle: 1.2 s since its last turn; kept: 0.6 s
        assert http.get(f"/v1/conversations/{kept}").status_code == 200
        gone = http.get(f"/v1/conversations/{idle}")
        assert gone.status_code == 404 and gone.json() == {"detail": f"no conversation {idle!r}"}
        assert http.post("/v1/chat", json={"question": FOLLOW_UP, "conversation_id": idle}).status_code == 404
        assert http.delete(f"/v1/conversations/{idle}").status_code == 404
        with sqlite3.connect(db) as conn:  # deleted, not just hidden
            assert [row[0] for row in conn.execute("SELECT id FROM conversations")] == [kept]
            assert conn.execute("SELECT COUNT(*) FROM turns WHERE conversation_id = ?", (idle,)).fetchone()[0] == 0


def test_http_history_is_paged(engine, tmp_path: Path) -> None:
    with serve(engine, tmp_path, conversation_page_size=2, conversation_max_page_size=3) as (http, _):
        cid = http.post("/v1/chat", json={"question": QUESTION}).json()["conversation_id"]
        for _ in range(4):
            assert http.post("/v1/chat", json={"question": FOLLOW_UP, "conversation_id": cid}).status_code == 200
        path = f"/v1/conversations/{cid}"
        first = http.get(path).json()
        assert [t["turn"] for t in first["turns"]] == [1, 2]
        assert (first["total_turns"], first["offset"], first["limit"]) == (5, 0, 2)
        assert [t["turn"] for t in http.get(path, params={"offset": 2, "limit": 3}).json()["turns"]] == [3, 4, 5]
        assert [t["turn"] for t in http.get(path, params={"offset": 4}).json()["turns"]] == [5]
        assert http.get(path, params={"offset": 9}).json()["turns"] == []
        too_big = http.get(path, params={"limit": 4})
        assert too_big.status_code == 422 and too_big.json()["detail"] == "limit: at most 3 turns per page"
        for bad in ({"offset": -1}, {"limit": 0}, {"limit": "many"}):
            response = http.get(path, params=bad)
            assert response.status_code == 422 and isinstance(response.json()["detail"], str)
