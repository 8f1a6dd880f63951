"""The conversation store (SQLite, WAL, one transaction per turn) and the chat service over the real engine."""

from __future__ import annotations

import sqlite3
import threading
from datetime import date
from pathlib import Path

import pytest

from service.answering.conversations import (
    DB_NAME,
    ConversationNotFound,
    ConversationStore,
    new_conversation_id,
    valid_conversation_id,
)
from service.answering.schemas import Answer, ChatRequest, Quote, Source


def make_answer(question: str, text: str = "An answer. [1]", article_id: str = "a1", quote: str = "A quote.") -> Answer:
    return Answer(
        question=question,
        standalone_question=question,
        answer=text,
        sources=[
            Source(
                n=1,
                article_id=article_id,
                chunk_id=1,
                title="A title",
                quotes=[Quote(text=quote, start=5, end=5 + len(quote))],
                passage=quote,
                passage_start=5,
                passage_end=5 + len(quote),
            )
        ],
        as_of=date(2024, 1, 1),
        index_version="v1",
    )


@pytest.fixture
def store(tmp_path: Path) -> ConversationStore:
    opened = ConversationStore.at_index_root(tmp_path)
    yield opened
    opened.close()


def test_ids_are_random_url_safe_tokens() -> None:
    ids = {new_conversation_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(valid_conversation_id(i) and len(i) >= 20 for i in ids)
    assert not valid_conversation_id("../etc/passwd")
    assert not valid_conversation_id("short")


def test_turns_round_trip_with_their_citations(store: ConversationStore) -> None:
    cid = new_conversation_id()
    first = make_answer("Why does Pashinyan say Russia failed Armenia?")
    assert store.add_turn(cid, first.question, first.standalone_question, first, create=True) == 1
    second = make_answer("How did Moscow respond to him?", article_id="a2")
    assert store.add_turn(cid, second.question, "How did Moscow respond to Pashinyan?", second) == 2
    conversation = store.get(cid)
    assert [t.turn for t in conversation.turns] == [1, 2]
    assert conversation.turns[1].question == "How did Moscow respond to him?"
    assert conversation.turns[1].standalone_question == "How did Moscow respond to Pashinyan?"
    assert conversation.turns[1].answer == second
    assert conversation.turns[1].answer.sources[0].quotes[0].start == 5
    assert conversation.updated_at >= conversation.created_at


def test_wal_mode_and_survives_a_restart(tmp_path: Path) -> None:
    cid = new_conversation_id()
    store = ConversationStore.at_index_root(tmp_path)
    assert store.journal_mode == "wal"
    answer = make_answer("q1")
    store.add_turn(cid, "q1", "q1", answer, create=True)
    store.close()
    assert (tmp_path / DB_NAME).is_file()
    reopened = ConversationStore.at_index_root(tmp_path)
    try:
        assert reopened.get(cid).turns[0].answer == answer
    finally:
        reopened.close()


def test_unknown_and_deleted_conversations(store: ConversationStore) -> None:
    with pytest.raises(ConversationNotFound):
        store.get(new_conversation_id())
    with pytest.raises(ConversationNotFound):
        store.add_turn(new_conversation_id(), "q", "q", make_answer("q"))  # create=False: never implicit
    with pytest.raises(ConversationNotFound):
        store.get("../../etc/passwd")
    cid = new_conversation_id()
    store.add_turn(cid, "q", "q", make_answer("q"), create=True)
    store.delete(cid)
    assert not store.exists(cid)
    with pytest.raises(ConversationNotFound):
        store.get(cid)
    with pytest.raises(ConversationNotFound):
        store.delete(cid)


def test_a_failed_turn_leaves_nothing_behind(store: ConversationStore, tmp_path: Path) -> None:
    cid = new_conversation_id()
    store.add_turn(cid, "q1", "q1", make_answer("q1"), create=True)
    with sqlite3.connect(tmp_path / DB_NAME) as other:
        other.execute("CREATE TRIGGER fail BEFORE UPDATE ON conversations BEGIN SELECT RAISE(ABORT, 'boom'); END")
    with pytest.raises(sqlite3.DatabaseError):
        store.add_turn(cid, "q2", "q2", make_answer("q2"))
    assert [t.turn for t in store.get(cid).turns] == [1]  # the insert of turn 2 was rolled back with it


def test_concurrent_turns_get_distinct_numbers(store: ConversationStore) -> None:
    cid = new_conversation_id()
    store.add_turn(cid, "q0", "q0", make_answer("q0"), create=True)
    errors: list[BaseException] = []

    def add(i: int) -> None:
        try:
            store.add_turn(cid, f"q{i}", f"q{i}", make_answer(f"q{i}"))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(i,)) for i in range(1, 11)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert [t.turn for t in store.get(cid).turns] == list(range(1, 12))


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


# --------------------------------------------------------------------------------------------------
# the chat service over the real engine and a real index


@pytest.fixture(scope="module")
def engine(sample_index: Path, encoder):
    from service.answering.engine import Engine

    return Engine(index_root=sample_index, encoder=encoder)


def test_chat_service_creates_follows_up_and_persists(engine, sample_index: Path) -> None:
    from service.answering.chat import ChatService

    store = ConversationStore.at_index_root(sample_index)
    service = ChatService(engine, store)
    first = service.chat(ChatRequest(question="How did the Millbrook council vote on the bike lanes?"))
    assert first.turn == 1 and valid_conversation_id(first.conversation_id)
    assert not first.abstained and first.sources
    followup = ChatRequest(question="When will construction of them finish?", conversation_id=first.conversation_id)
    second = service.chat(followup)
    assert second.turn == 2 and second.conversation_id == first.conversation_id
    assert second.standalone_question.startswith("When will construction of the bike lanes finish")
    store.close()

    # a new store on the same file (a restarted service) sees the whole conversation
    reopened = ConversationStore(sample_index / DB_NAME)
    try:
        history = ChatService(engine, reopened).history(first.conversation_id)
        assert [t.turn for t in history.turns] == [1, 2]
        assert history.turns[0].answer.sources[0].quotes == first.sources[0].quotes
        with pytest.raises(ConversationNotFound):
            ChatService(engine, reopened).chat(ChatRequest(question="And then?", conversation_id="not-a-known-id"))
    finally:
        reopened.close()
