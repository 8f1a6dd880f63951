"""Real multi-turn conversations through the real server: ``/v1/chat`` (history stored by conversation id) and
``/v1/chat/completions`` with the history in ``messages`` (driven by the real ``openai`` client).

Over the sample index: pronouns for a person ("she") and for a thing ("it"), plural "they" for an
organisation, ellipsis ("And the loan?"), and a topic switch that must inherit nothing. One slow test replays
the news dev conversations against ``data/news-index`` (skipped without it).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from conftest import ROOT, SHARED, running_server

from index.settings import Settings

# (first question, follow-up, words the searched follow-up must contain, a word of a title it must find in the top 3)
CONVERSATIONS = {
    "person": ("What subject does Leila Haddad teach?", "How old is she?", ["Leila Haddad"], "Marathon"),
    "thing": (
        "Who led the Lake Tessaly algae study?",
        "How many years of water samples did it analyse?",
        ["Lake Tessaly algae study"],
        "Tessaly",
    ),
    "organisation": (
        "How did the Millbrook Town Council vote on the bike lanes?",
        "When do they expect construction to finish?",
        ["Millbrook Town Council"],
        "Millbrook",
    ),
    "ellipsis": (
        "How much did the employees pay for Kessler's Bakery?",
        "And the loan?",
        ["loan", "Kessler"],
        "Kessler",
    ),
}
CITED = "How many days earlier do Lake Tessaly algae blooms begin?"  # answered from an article with a url
SWITCH = ("How much did the employees pay for Kessler's Bakery?", "Who won the men's race at the Harbor City Marathon?")


@pytest.fixture(scope="module")
def base_url(sample_index: Path, encoder, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from service.answering.engine import Engine
    from service.web.api import create_app

    db = tmp_path_factory.mktemp("conversations") / "conversations.sqlite"
    settings = Settings(api_keys=["sk-test"], conversation_store=f"sqlite:///{db}", rate_limit_per_minute=10_000)
    engine = Engine(index_root=sample_index, encoder=encoder)
    with running_server(create_app(settings, engine)) as url:
        yield url


@pytest.fixture(scope="module")
def http(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=120, headers={"Authorization": "Bearer sk-test"}) as client:
        yield client


@pytest.fixture(scope="module")
def client(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base_url}/v1", api_key="sk-test", max_retries=0, timeout=120)


def chat(http: httpx.Client, *questions: str) -> list[dict]:
    replies, cid = [], None
    for question in questions:
        response = http.post("/v1/chat", json={"question": question, "conversation_id": cid})
        assert response.status_code == 200, response.text
        replies.append(response.json())
        cid = replies[-1]["conversation_id"]
    return replies


def completions(client: openai.OpenAI, *questions: str) -> list[openai.types.chat.ChatCompletion]:
    messages: list[dict] = []
    replies = []
    for question in questions:
        messages.append({"role": "user", "content": question})
        reply = client.chat.completions.create(model="byline", messages=messages)
        messages.append({"role": "assistant", "content": reply.choices[0].message.content or ""})
        replies.append(reply)
    return replies


def check_follow_up(answer: dict, question: str, words: list[str], title: str) -> None:
    searched = answer["standalone_question"]
    assert searched != question and "(" not in searched
    assert all(word in searched for word in words), searched
    titles = [p["title"] for p in answer["passages"][:3]]
    assert any(title in t for t in titles), titles


@pytest.mark.parametrize("kind", sorted(CONVERSATIONS))
def test_chat_follow_ups_resolve_against_the_stored_history(http: httpx.Client, kind: str) -> None:
    first, question, words, article = CONVERSATIONS[kind]
    _, follow = chat(http, first, question)
    assert follow["turn"] == 2
    check_follow_up(follow, question, words, article)


@pytest.mark.parametrize("kind", sorted(CONVERSATIONS))
def test_completions_follow_ups_resolve_against_the_messages(client: openai.OpenAI, kind: str) -> None:
    first, question, words, article = CONVERSATIONS[kind]
    _, follow = completions(client, first, question)
    check_follow_up(follow.model_extra["byline"], question, words, article)


def test_a_topic_switch_inherits_nothing(http: httpx.Client, client: openai.OpenAI) -> None:
    for answer in (chat(http, *SWITCH)[1], completions(client, *SWITCH)[1].model_extra["byline"]):
        assert answer["standalone_question"] == SWITCH[1] and answer["assumed"] is None
        titles = [p["title"] for p in answer["passages"][:3]]
        assert any("Marathon" in t for t in titles) and not any("Kessler" in t for t in titles), titles


def test_an_assumed_subject_is_said(http: httpx.Client) -> None:
    _, follow = chat(http, "How much did the employees pay for Kessler's Bakery?", "Who lent the rest?")
    assert follow["assumed"] and follow["assumed"] in follow["standalone_question"]
    assert "regarding" in follow["standalone_question"]


def test_completion_annotations_cite_sentences_by_url(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model="byline", messages=[{"role": "user", "content": CITED}])
    message = reply.choices[0].message
    content, byline = message.content or "", reply.model_extra["byline"]
    urls = {s["n"]: s["url"] for s in byline["sources"] if s["url"]}
    assert urls and message.annotations
    short = byline["short_answer"]
    sentences = {s["text"] for s in byline["sentences"]} | ({short["text"]} if short else set())
    for annotation in message.annotations:
        cite = annotation.url_citation
        assert annotation.type == "url_citation" and cite.url in urls.values() and cite.title
        assert content[cite.start_index : cite.end_index] in sentences
    cited = sum(1 for s in byline["sentences"] for n in s["citations"] if n in urls)
    assert len(message.annotations) == cited + bool(short and short["source"] in urls)


def test_streamed_completion_carries_annotations_in_the_final_chunk(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(model="byline", messages=[{"role": "user", "content": CITED}], stream=True)
    chunks = list(stream)
    content = "".join(c.choices[0].delta.content or "" for c in chunks)
    final = chunks[-1]
    annotations = final.choices[0].delta.model_extra["annotations"]
    assert annotations and final.model_extra["byline"]
    assert all(not (c.choices[0].delta.model_extra or {}).get("annotations") for c in chunks[:-1])
    for annotation in annotations:
        cite = annotation["url_citation"]
        assert content[cite["start_index"] : cite["end_index"]].strip() and cite["url"].startswith("http")


@pytest.mark.slow
def test_news_dev_conversations_keep_their_context(encoder) -> None:
    """The news dev set (../shared's corpus, indexed at data/news-index): follow-up retrieval within 5 points of
    the written standalone forms, and every topic switch inheriting nothing."""
    index = ROOT / "data" / "news-index"
    if not SHARED.exists() or not (index / "CURRENT").exists():
        pytest.skip("needs ../shared and data/news-index")
    from eval.questions import load_questions
    from eval.runner import retrieval_figures
    from service.answering.chat import ChatService
    from service.answering.conversations import SQLiteConversationStore
    from service.answering.engine import Engine
    from service.answering.schemas import AskRequest, ChatRequest

    engine = Engine(index_root=index, encoder=encoder)
    hits: list[float] = []
    alone: list[float] = []
    switches = 0
    with tempfile.TemporaryDirectory() as tmp:
        service = ChatService(engine, SQLiteConversationStore(Path(tmp) / "c.sqlite"))
        for path in ("news.jsonl", "news-switch.jsonl"):
            for item in load_questions(ROOT / "eval" / "questions" / path):
                if not item.is_conversation:
                    continue
                cid = None
                for position, turn in enumerate(item.turns, start=1):
                    reply = service.chat(ChatRequest(question=turn.question, conversation_id=cid, as_of=item.date))
                    cid = reply.conversation_id
                    if turn.topic_switch:
                        assert reply.standalone_question == turn.question, json.dumps(turn.question)
                        switches += 1
                    elif position > 1 and turn.standalone:
                        hits.append(retrieval_figures(turn, [p.text for p in reply.passages], 10)["hit_at_5"])
                        fresh = engine.ask(AskRequest(question=turn.standalone, as_of=item.date))
                        alone.append(retrieval_figures(turn, [p.text for p in fresh.passages], 10)["hit_at_5"])
    assert switches >= 10
    assert sum(hits) / len(hits) >= sum(alone) / len(alone) - 0.05


def test_a_follow_ups_context_moves_the_readers_cosine_only_by_its_weight(sample_index: Path, encoder) -> None:
    """The earlier questions reach the reader only through the question vector of its cosine, at
    ``followup_read_context_weight``: at 0 the reading is the question's own; above it the cosine moves."""
    from service.answering.engine import Engine
    from service.answering.schemas import AskRequest

    request = AskRequest(question="How old is she?")
    standalone, context = "How old is Leila Haddad?", "What subject does Leila Haddad teach at the marathon school?"
    read = {}
    for weight in (0.0, 0.3):
        settings = Settings(index_dir=sample_index, followup_read_context_weight=weight)
        engine = Engine(settings, sample_index, encoder)
        with_context = engine.ask(request, standalone=standalone, context=context)
        alone = engine.ask(request, standalone=standalone)
        read[weight] = (with_context.signals["best_sentence_cosine"], alone.signals["best_sentence_cosine"])
    assert read[0.0][0] == read[0.0][1]  # no weight: the context changes the search only
    assert read[0.3][0] != read[0.3][1]
    assert read[0.3][1] == read[0.0][1]  # without context the weight changes nothing
