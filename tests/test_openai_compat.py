"""``/v1/chat/completions`` driven by the real ``openai`` client against a real server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from conftest import SEED_QUESTION, running_server

from index.settings import Settings

SAMPLE_QUESTION = "How did the Millbrook council vote on the bike lanes?"


@pytest.fixture(scope="module")
def base_url(sample_index: Path, encoder) -> Iterator[str]:
    from service.answering.engine import Engine
    from service.web.api import create_app

    engine = Engine(index_root=sample_index, encoder=encoder)
    with running_server(create_app(Settings(api_keys=["sk-test"]), engine)) as url:
        yield url


@pytest.fixture
def client(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base_url}/v1", api_key="sk-test", max_retries=0, timeout=60)


def test_completion_with_markers_footer_and_structured_sources(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="byline", messages=[{"role": "user", "content": SAMPLE_QUESTION}], temperature=0.2
    )
    assert completion.object == "chat.completion" and completion.model == "byline"
    choice = completion.choices[0]
    assert choice.finish_reason == "stop" and choice.message.role == "assistant"
    content = choice.message.content or ""
    body, _, footer = content.partition("\n\nSources:\n")
    assert "[1]" in body and footer.startswith("[1] ")
    byline = completion.model_extra["byline"]  # the documented extra field
    assert byline["sources"][0]["n"] == 1 and byline["sources"][0]["quotes"]
    assert byline["answer"] == body
    assert byline["sources"][0]["title"] in footer
    assert completion.usage is not None and completion.usage.completion_tokens > 0


def test_streaming_puts_sources_in_the_final_chunk(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="byline", messages=[{"role": "user", "content": SAMPLE_QUESTION}], stream=True
    )
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    final = chunks[-1]
    assert final.choices[0].finish_reason == "stop"
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])
    byline = final.model_extra["byline"]
    assert byline["sources"] and "\n\nSources:\n[1] " in text
    assert text.startswith(byline["answer"])


def test_raw_stream_ends_with_done(base_url: str) -> None:
    with httpx.Client(base_url=base_url, timeout=60, headers={"Authorization": "Bearer sk-test"}) as http:
        body = {"messages": [{"role": "user", "content": SAMPLE_QUESTION}], "stream": True}
        with http.stream("POST", "/v1/chat/completions", json=body) as response:
            lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    assert '"byline"' in lines[-2] and '"finish_reason": "stop"' in lines[-2]


def test_earlier_messages_resolve_the_follow_up(client: openai.OpenAI) -> None:
    first = client.chat.completions.create(model="byline", messages=[{"role": "user", "content": SAMPLE_QUESTION}])
    reply = first.choices[0].message.content or ""
    follow = client.chat.completions.create(
        model="byline",
        messages=[
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": SAMPLE_QUESTION},
            {"role": "assistant", "content": reply},
            {"role": "user", "content": [{"type": "text", "text": "When will construction of them finish?"}]},
        ],
    )
    byline = follow.model_extra["byline"]
    assert byline["question"] == "When will construction of them finish?"
    assert byline["standalone_question"].startswith("When will construction of the bike lanes finish")


def test_errors_come_back_as_openai_errors(base_url: str, client: openai.OpenAI) -> None:
    wrong_key = openai.OpenAI(base_url=f"{base_url}/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong_key.chat.completions.create(model="byline", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.UnprocessableEntityError):
        client.chat.completions.create(model="byline", messages=[{"role": "assistant", "content": "no question"}])
    assert [m.id for m in client.models.list()] == ["byline"]


def test_seed_follow_up_through_the_openai_client(seed_index: Path, encoder) -> None:
    from service.answering.engine import Engine
    from service.web.api import create_app

    engine = Engine(index_root=seed_index, encoder=encoder)
    with running_server(create_app(engine=engine)) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=60)
        first = client.chat.completions.create(model="byline", messages=[{"role": "user", "content": SEED_QUESTION}])
        follow = client.chat.completions.create(
            model="byline",
            messages=[
                {"role": "user", "content": SEED_QUESTION},
                {"role": "assistant", "content": first.choices[0].message.content},
                {"role": "user", "content": "How did Moscow respond to him?"},
            ],
        )
    byline = follow.model_extra["byline"]
    assert "Pashinyan" in byline["standalone_question"]
    assert not byline["abstained"]
    seed_article = first.model_extra["byline"]["sources"][0]["article_id"]
    assert seed_article in {source["article_id"] for source in byline["sources"]}
