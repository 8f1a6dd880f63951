"""One suite for every conversation store: SQLite beside the index and a real PostgreSQL (tests/pg_server.py).

Each test gets a fresh store (a new SQLite file, or a new PostgreSQL database); ``reopen`` opens a second store on
the same data, as a restarted service or a second replica would.
"""

from __future__ import annotations

import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import make_answer

from index.tokens import count_tokens
from service.answering.conversations import (
    Conversation,
    ConversationFull,
    ConversationNotFound,
    ConversationStore,
    SQLiteConversationStore,
    StoreLimits,
    new_conversation_id,
    open_store,
)

Opener = Callable[..., ConversationStore]


@pytest.fixture(params=["sqlite", "postgresql"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens stores over one fresh backing store (``opener(limits=...)``); closes them all afterwards."""
    if request.param == "postgresql":
        from service.answering.conversations.postgres import PostgresConversationStore

        url = request.getfixturevalue("postgres").new_database()

        def make(limits: StoreLimits | None = None) -> ConversationStore:
            return PostgresConversationStore(url, limits, pool_size=4)
    else:

        def make(limits: StoreLimits | None = None) -> ConversationStore:
            return SQLiteConversationStore.at_index_root(tmp_path, limits)

    opened: list[ConversationStore] = []

    def tracked(limits: StoreLimits | None = None) -> ConversationStore:
        opened.append(make(limits))
        return opened[-1]

    yield tracked
    for store in opened:
        store.close()


@pytest.fixture
def store(opener: Opener) -> ConversationStore:
    return opener()


def add(store: ConversationStore, cid: str, n: int, owner: str | None = None, **answer: str) -> int:
    return store.add_turn(cid, f"q{n}", f"q{n}", make_answer(f"q{n}", **answer), create=n == 1, owner=owner)


def test_store_implements_the_protocol(store: ConversationStore) -> None:
    assert isinstance(store, ConversationStore)


def test_turns_round_trip_with_their_citations(store: ConversationStore) -> None:
    cid = new_conversation_id()
    first = make_answer("Why does Pashinyan say Russia failed Armenia?")
    assert store.add_turn(cid, first.question, first.standalone_question, first, create=True) == 1
    second = make_answer("How did Moscow respond to him?", article_id="a2")
    assert store.add_turn(cid, second.question, "How did Moscow respond to Pashinyan?", second) == 2
    conversation = store.get(cid)
    assert [t.turn for t in conversation.turns] == [1, 2] and conversation.total_turns == 2
    assert conversation.turns[1].question == "How did Moscow respond to him?"
    assert conversation.turns[1].standalone_question == "How did Moscow respond to Pashinyan?"
    assert conversation.turns[1].answer == second
    assert conversation.turns[1].answer.sources[0].quotes[0].start == 5
    assert conversation.updated_at >= conversation.created_at
    assert conversation.turns[1].created_at >= conversation.turns[0].created_at


def test_a_reopened_store_sees_everything(opener: Opener) -> None:
    first = opener()
    cid = new_conversation_id()
    answer = make_answer("q1")
    first.add_turn(cid, "q1", "q1", answer, create=True, owner="k1:abc")
    first.close()
    again = opener()
    assert again.get(cid, owner="k1:abc").turns[0].answer == answer
    assert again.count() == 1


def test_unknown_and_deleted_conversations(store: ConversationStore) -> None:
    with pytest.raises(ConversationNotFound):
        store.get(new_conversation_id())
    with pytest.raises(ConversationNotFound):
        store.add_turn(new_conversation_id(), "q", "q", make_answer("q"))  # create=False: never implicit
    for call in (store.get, store.delete, store.check_room):
        with pytest.raises(ConversationNotFound):
            call("../../etc/passwd")
    cid = new_conversation_id()
    add(store, cid, 1)
    assert store.exists(cid)
    store.delete(cid)
    assert not store.exists(cid)
    with pytest.raises(ConversationNotFound):
        store.get(cid)
    with pytest.raises(ConversationNotFound):
        store.delete(cid)
    with pytest.raises(ConversationNotFound):
        store.recent_history(cid, 1000)


def test_a_conversation_answers_only_to_its_owner(store: ConversationStore) -> None:
    cid = new_conversation_id()
    add(store, cid, 1, owner="k1:alice")
    for other in ("k1:bob", ""):
        assert not store.exists(cid, owner=other)
        with pytest.raises(ConversationNotFound):
            store.get(cid, owner=other)
        with pytest.raises(ConversationNotFound):
            store.recent_history(cid, 1000, owner=other)
        with pytest.raises(ConversationNotFound):
            store.check_room(cid, owner=other)
        with pytest.raises(ConversationNotFound):
            store.add_turn(cid, "q2", "q2", make_answer("q2"), owner=other)
        with pytest.raises(ConversationNotFound):
            store.delete(cid, owner=other)
    assert store.get(cid, owner="k1:alice").total_turns == 1  # nothing was added or deleted by the others
    assert add(store, cid, 2, owner="k1:alice") == 2
    assert store.exists(cid)  # no owner given (a service without keys): every conversation is visible
    store.delete(cid, owner="k1:alice")
    assert not store.exists(cid)


def test_turn_limit(opener: Opener) -> None:
    store = opener(StoreLimits(max_turns=3, idle_expiry_s=0))
    cid = new_conversation_id()
    for n in (1, 2, 3):
        assert add(store, cid, n) == n
    with pytest.raises(ConversationFull, match="maximum of 3 turns"):
        store.check_room(cid)
    with pytest.raises(ConversationFull):
        add(store, cid, 4)
    assert store.get(cid).total_turns == 3  # the refused turn left nothing behind
    other = new_conversation_id()
    assert add(store, other, 1) == 1 and store.check_room(other) == 1  # the limit is per conversation


def test_idle_conversations_expire_and_are_deleted(opener: Opener) -> None:
    store = opener(StoreLimits(max_turns=100, idle_expiry_s=1.0))
    idle, active, untouched = new_conversation_id(), new_conversation_id(), new_conversation_id()
    add(store, idle, 1)
    add(store, active, 1)
    add(store, untouched, 1)
    time.sleep(0.6)
    add(store, active, 2)  # a turn keeps a conversation alive
    time.sleep(0.6)
    assert store.get(active).total_turns == 2
    with pytest.raises(ConversationNotFound):
        store.get(idle)
    with pytest.raises(ConversationNotFound):
        add(store, untouched, 2)  # a follow-up to an expired conversation does not revive it
    assert store.count() == 1  # both expired ones were deleted when touched
    time.sleep(1.1)
    assert store.purge_expired() == 1 and store.count() == 0


def test_no_expiry_when_zero(opener: Opener) -> None:
    store = opener(StoreLimits(max_turns=10, idle_expiry_s=0))
    cid = new_conversation_id()
    add(store, cid, 1)
    assert store.purge_expired() == 0 and store.exists(cid)


def test_pages_of_turns(store: ConversationStore) -> None:
    cid = new_conversation_id()
    for n in range(1, 8):
        add(store, cid, n)
    page = store.get(cid, offset=2, limit=3)
    assert isinstance(page, Conversation)
    assert [t.turn for t in page.turns] == [3, 4, 5]
    assert (page.total_turns, page.offset, page.limit) == (7, 2, 3)
    assert [t.turn for t in store.get(cid, offset=5, limit=10).turns] == [6, 7]
    beyond = store.get(cid, offset=50, limit=10)
    assert beyond.turns == [] and beyond.total_turns == 7
    assert len(store.get(cid).turns) == 7  # the default page (20) holds them all


def test_a_page_never_materialises_the_whole_conversation(opener: Opener) -> None:
    store = opener(StoreLimits(max_turns=1000, idle_expiry_s=0))
    cid = new_conversation_id()
    big = "word " * 4000  # 20 KB per answer: 150 turns are 3 MB
    for n in range(1, 151):
        add(store, cid, n, text=big)
    count_tokens("load the tokenizer first")  # its tables are a one-off 20 MB, whatever is read
    tracemalloc.start()
    try:
        page = store.get(cid, offset=100, limit=5)
        history = store.recent_history(cid, max_tokens=100_000, max_turns=3)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [t.turn for t in page.turns] == [101, 102, 103, 104, 105] and page.total_turns == 150
    assert [t.question for t in history] == ["q148", "q149", "q150"]  # only the newest few are read
    assert peak < 1_000_000, f"peak {peak} bytes: more than a page was read"


def test_history_for_followups_is_bounded_in_tokens(store: ConversationStore) -> None:
    cid = new_conversation_id()
    long_text = "word " * 300  # about 300 tokens
    for i in range(5):
        answer = make_answer(f"question {i}", text=long_text, article_id=f"a{i}", quote=f"quote {i}")
        store.add_turn(cid, f"question {i}", f"question {i}", answer, create=i == 0)
    everything = store.recent_history(cid, max_tokens=100_000)
    assert [t.question for t in everything] == [f"question {i}" for i in range(5)]
    bounded = store.recent_history(cid, max_tokens=700)
    assert [t.question for t in bounded] == ["question 3", "question 4"]  # newest last, oldest dropped
    assert bounded[-1].cited_article_ids == ("a4",)
    tiny = store.recent_history(cid, max_tokens=20)
    assert [t.question for t in tiny] == ["question 4"]
    assert tiny[0].answer_text == "" and tiny[0].quotes == ()  # over budget: only the questions are kept


def test_concurrent_turns_from_two_stores_get_distinct_numbers(opener: Opener) -> None:
    """Two stores on the same data (two replicas, or two processes on one SQLite file) append at once."""
    stores = [opener(), opener()]
    cid = new_conversation_id()
    add(stores[0], cid, 1)
    errors: list[BaseException] = []

    def append(i: int) -> None:
        try:
            stores[i % 2].add_turn(cid, f"q{i}", f"q{i}", make_answer(f"q{i}"))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=append, args=(i,)) for i in range(2, 14)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    conversation = stores[1].get(cid, limit=100)
    assert [t.turn for t in conversation.turns] == list(range(1, 14))
    assert sorted(t.question for t in conversation.turns) == sorted(f"q{i}" for i in range(1, 14))


def test_open_store_picks_the_backend(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    from index.settings import Settings

    default = open_store(Settings(), tmp_path)
    try:
        assert isinstance(default, SQLiteConversationStore) and default.path == tmp_path / "conversations.sqlite"
    finally:
        default.close()
    elsewhere = open_store(Settings(conversation_store=f"sqlite:///{tmp_path}/other/c.sqlite"), tmp_path)
    try:
        assert elsewhere.path == tmp_path / "other" / "c.sqlite"
    finally:
        elsewhere.close()
    with pytest.raises(ValueError, match="conversation_store"):
        open_store(Settings(conversation_store="mysql://x"), tmp_path)
    limits = Settings(conversation_max_turns=7, conversation_idle_expiry_s=60)
    limited = open_store(limits, tmp_path)
    try:
        assert limited.limits == StoreLimits(max_turns=7, idle_expiry_s=60.0)
    finally:
        limited.close()


# --------------------------------------------------------------------------------------------------
# PostgreSQL only: migrations, pooling, and what the URL reveals


def test_postgres_migrations_are_numbered_and_applied_once(postgres) -> None:
    import psycopg

    from index.settings import Settings
    from service.answering.conversations.postgres import SCHEMA_VERSION, PostgresConversationStore

    url = postgres.new_database()
    stores: list[PostgresConversationStore] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            stores.append(open_store(Settings(conversation_store=url), Path("/nonexistent")))  # type: ignore[arg-type]
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]  # replicas starting together
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert not errors and len(stores) == 4
        assert all(isinstance(s, PostgresConversationStore) and s.schema_version == SCHEMA_VERSION for s in stores)
        with psycopg.connect(url) as conn:
            versions = [row[0] for row in conn.execute("SELECT version FROM byline_schema_migrations ORDER BY 1")]
            tables = {row[0] for row in conn.execute("SELECT tablename FROM pg_tables WHERE tablename LIKE 'byline_%'")}
        assert versions == list(range(1, SCHEMA_VERSION + 1))
        assert tables == {"byline_schema_migrations", "byline_conversations", "byline_turns"}
    finally:
        for store in stores:
            store.close()


def test_postgres_unreachable_is_a_clear_error_without_the_password(postgres) -> None:
    from service.answering.conversations.postgres import PostgresConversationStore, redact

    url = f"postgresql://byline:s3cret@127.0.0.1:{postgres.port}/no_such_database"
    with pytest.raises(ConnectionError) as raised:
        PostgresConversationStore(url, connect_timeout_s=2)
    assert "no_such_database" in str(raised.value) and "s3cret" not in str(raised.value)
    assert redact(url) == f"postgresql://byline:***@127.0.0.1:{postgres.port}/no_such_database"
