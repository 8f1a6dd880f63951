"""Issue 12, HTTP items over a real uvicorn server and the real engine on the sample index: /readyz without
paths (3), bounded metrics labels (4), chat-completions history cost (5), calendar-end dates (9), lone
surrogates and SSE endings (10), strict request types and schema details (17)."""

from __future__ import annotations

import json
import shutil
import statistics
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import httpx
import pytest
from conftest import running_server

from index.publish import CURRENT
from index.settings import Settings

SAMPLE_QUESTION = "How did the Millbrook council vote on the bike lanes?"
CALENDAR_ENDS = ("0001-01-01", "9999-12-31")
RELATIVE_PHRASES = [
    "yesterday", "today", "tonight", "this week", "last week", "past week", "this month", "last month",
    "past month", "this year", "last year", "past year", "recently", "latest", "in December", "in January",
    "in December 0000", "in 2023", "during Dec. 9999", "since October",
]  # fmt: skip


def sse_events(text: str) -> list[tuple[str, str]]:
    events = []
    for block in text.strip().split("\n\n"):
        name, data = "message", []
        for line in block.splitlines():
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: "):
                data.append(line[len("data: ") :])
        events.append((name, "\n".join(data)))
    return events


@pytest.fixture(scope="module")
def engine(sample_index: Path, encoder):
    from service.answering.engine import Engine

    settings = Settings(index_dir=sample_index, rate_limit_per_minute=1_000_000)
    return Engine(settings=settings, index_root=sample_index, encoder=encoder)


@pytest.fixture(scope="module")
def app(engine):
    from service.web.api import create_app

    return create_app(engine.settings, engine)


@pytest.fixture(scope="module")
def base_url(app) -> Iterator[str]:
    with running_server(app) as url:
        yield url


@pytest.fixture
def client(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=120) as http:
        yield http


def post_raw(client: httpx.Client, path: str, body: str) -> httpx.Response:
    """POST a JSON text exactly as written (so that ``\\ud800`` reaches the server as an escape)."""
    return client.post(path, content=body.encode(), headers={"Content-Type": "application/json"})


# --------------------------------------------------------------------------------------------------
# 3. /readyz: status and a short reason, never a path


def test_readyz_and_503s_show_no_paths(tmp_path: Path, sample_index: Path, engine) -> None:
    from service.answering.engine import Engine
    from service.web.api import create_app

    missing = tmp_path / "nowhere" / "index"
    settings = Settings(index_dir=missing, reload_check_s=0.1, rate_limit_per_minute=1_000_000)
    with running_server(create_app(settings)) as url, httpx.Client(base_url=url, timeout=60) as http:
        deadline = time.monotonic() + 60
        while "still loading" in (not_ready := http.get("/readyz")).json()["detail"]:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert not_ready.status_code == 503
        for response in (not_ready, http.post("/v1/ask", json={"question": SAMPLE_QUESTION})):
            assert response.status_code == 503
            detail = response.json()["detail"]
            assert detail.startswith("the index is not loaded: ") and len(detail) < 300, detail
            assert str(tmp_path) not in detail and "/nowhere/" not in detail, detail

    root = tmp_path / "index"
    shutil.copytree(sample_index, root, ignore=shutil.ignore_patterns("conversations.sqlite*"))
    settings = Settings(index_dir=root, reload_check_s=0.05, rate_limit_per_minute=1_000_000)
    served = Engine(settings=settings, index_root=root, encoder=engine.encoder)
    with running_server(create_app(settings, served)) as url, httpx.Client(base_url=url, timeout=60) as http:
        (root / CURRENT).write_text("v-does-not-exist\n")  # a broken publication, refused at reload
        deadline = time.monotonic() + 30
        while not (ready := http.get("/readyz").json())["reload_error"]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        reason = ready["reload_error"]
        assert served.last_reload_error and str(root) in served.last_reload_error  # the full message: logs only
        assert str(tmp_path) not in reason and "/" not in reason, reason
        assert "manifest.json" in reason and "v-does-not-exist" in reason, reason


# --------------------------------------------------------------------------------------------------
# 4. /metrics labels come from bounded sets


def test_metrics_labels_are_bounded(client: httpx.Client) -> None:
    client.get("/healthz")
    before = client.get("/metrics").text
    for i in range(300):
        client.request(f"M{i}XYZ", f"/made-up/{i}")
        client.get(f"/v1/no-such-route-{i}")
    text = client.get("/metrics").text
    series = [line for line in text.splitlines() if line.startswith("byline_http_requests_total{")]
    assert not any("XYZ" in line or "made-up" in line or "no-such-route" in line for line in series), series[:5]
    assert any('method="other"' in line and 'route="other"' in line for line in series), series
    assert len(series) < 40, len(series)
    assert len(text) < len(before) + 20_000, (len(before), len(text))


# --------------------------------------------------------------------------------------------------
# 5. a long chat-completions history costs about what a short one does


def long_transcript(pairs: int = 99) -> list[dict[str, str]]:
    messages = []
    for i in range(pairs):
        messages.append(
            {
                "role": "user",
                "content": f"What did Mayor Alice Johnson of Millbrook and Councillor Bob Reyes say about the bike "
                f"lanes on Main Street, the bakery owned by Maria Kessler and the budget vote number {i}? "
                "And what did the Riverside Transit Authority, Governor Hale and Senator Ortiz add after that?",
            }
        )
        messages.append(
            {
                "role": "assistant",
                "content": "The Millbrook council voted 5-2 to approve protected bike lanes on Main Street [1]. "
                "Mayor Alice Johnson said the lanes would make the street safer for children [1]. Councillor "
                "Bob Reyes voted against, citing parking for the Kessler's Bakery customers [2]. "
                * 3
                + "\n\nSources:\n[1] Millbrook approves bike lanes \u2014 example.com, 2023-10-02\n"
                "[2] Kessler's Bakery marks 50 years \u2014 example.com, 2023-10-03",
            }
        )
    messages.append({"role": "user", "content": "What did he say about it?"})
    return messages


def test_long_chat_completions_history_costs_like_a_short_one(client: httpx.Client, app) -> None:
    from service.answering.chat import HISTORY_MAX_TURNS

    long_body = {"messages": long_transcript()}
    short_body = {"messages": long_transcript()[-3:]}
    assert len(long_body["messages"]) == 199 and len(json.dumps(long_body)) > 100_000

    resolver = app.state.byline.chat.resolver
    calls = 0
    resolve = resolver.resolve

    def counting(*args, **kwargs):  # counts our own resolver's calls; the real one does the work
        nonlocal calls
        calls += 1
        return resolve(*args, **kwargs)

    resolver.resolve = counting
    try:

        def timed(body: dict) -> float:
            started = time.perf_counter()
            response = client.post("/v1/chat/completions", json=body)
            assert response.status_code == 200, response.text
            return time.perf_counter() - started

        timed(short_body)
        short = statistics.median(timed(short_body) for _ in range(3))
        calls = 0
        long = statistics.median(timed(long_body) for _ in range(3))
        long_calls = calls / 3
    finally:
        resolver.resolve = resolve
    print(f"\nchat-completions: 3 messages {short * 1000:.0f} ms, 199 messages {long * 1000:.0f} ms")
    assert long_calls <= HISTORY_MAX_TURNS + 1, long_calls  # one per kept earlier turn, plus the question
    assert long < 10 * short, (short, long)


# --------------------------------------------------------------------------------------------------
# 9. dates at the ends of the calendar


@pytest.mark.parametrize("as_of", CALENDAR_ENDS)
def test_every_relative_phrase_is_clamped_at_the_calendar_ends(as_of: str) -> None:
    from service.answering.query import parse_time

    day = date.fromisoformat(as_of)
    for phrase in RELATIVE_PHRASES:
        found = parse_time(f"What happened {phrase}?", day)
        assert found is not None, phrase
        assert date.min <= found.start <= found.end <= date.max, (phrase, found)


def test_calendar_end_dates_answer_on_every_route(client: httpx.Client) -> None:
    for as_of in CALENDAR_ENDS:
        for phrase in ("yesterday", "last week", "last month", "last year", "in December"):
            question = f"What did the Millbrook council decide {phrase}?"
            body = {"question": question, "as_of": as_of}
            for path in ("/v1/ask", "/v1/chat"):
                response = client.post(path, json=body)
                assert response.status_code == 200, (path, as_of, phrase, response.text)
            messages = {"messages": [{"role": "user", "content": question}], "as_of": as_of}
            assert client.post("/v1/chat/completions", json=messages).status_code == 200, (as_of, phrase)
            search = client.get("/v1/search", params={"q": question, "as_of": as_of})
            assert search.status_code == 200, (as_of, phrase, search.text)


# --------------------------------------------------------------------------------------------------
# 10. lone surrogates are 422 at the edge; every SSE stream ends with done or error


SURROGATE_BODIES = [
    ("/v1/ask", '{"question": "Who voted?", "filters": {"sources": ["\\ud800"]}}'),
    ("/v1/ask", '{"question": "Who voted?", "filters": {"authors": ["x\\udfff"]}, "stream": true}'),
    ("/v1/ask", '{"question": "Who voted \\ud800?"}'),
    ("/v1/chat", '{"question": "Who voted?", "filters": {"sources": ["\\ud800"]}, "stream": true}'),
    ("/v1/chat/completions", '{"messages": [{"role": "user", "content": "Who voted \\ud800?"}]}'),
    ("/v1/chat/completions", '{"messages": [{"role": "user", "content": [{"type": "text", "text": "\\udc00"}]}]}'),
    (
        "/v1/chat/completions",
        '{"messages": [{"role": "user", "content": "Who voted?"}], "filters": {"authors": ["\\ud800"]}}',
    ),
    (
        "/v1/chat/completions",
        '{"messages": [{"role": "user", "content": "Hi \\ud800"}, {"role": "assistant", "content": "x"}, '
        '{"role": "user", "content": "Who voted?"}], "stream": true}',
    ),
]


@pytest.mark.parametrize(("path", "body"), SURROGATE_BODIES)
def test_lone_surrogates_are_refused_at_the_edge(client: httpx.Client, path: str, body: str) -> None:
    response = post_raw(client, path, body)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert "surrogate" in detail or "unicode" in detail, detail


def test_answer_streams_end_with_done(client: httpx.Client) -> None:
    chat = client.post("/v1/chat", json={"question": SAMPLE_QUESTION, "stream": True})
    ask = client.post("/v1/ask", json={"question": "What is the capital of Peru?", "stream": True})
    for response in (chat, ask):
        assert response.status_code == 200
        events = sse_events(response.text)
        assert events[0][0] == "meta" and events[-1][0] == "done", [e[0] for e in events]


def test_a_stream_that_fails_midway_ends_with_an_error_event() -> None:
    """An event that cannot be sent (here: one that is not Unicode) ends the stream with ``error``."""
    from fastapi import FastAPI

    from service.web.sse import event_stream, sse

    app = FastAPI()

    @app.get("/broken")
    async def broken():
        return event_stream(iter([sse("meta", {"n": 1}), sse("delta", {"text": "bad \ud800"}), sse("done", {})]))

    with running_server(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        response = http.get("/broken")
    events = sse_events(response.text)
    assert [name for name, _ in events] == ["meta", "error"], events
    assert "UnicodeEncodeError" in json.loads(events[-1][1])["detail"]


# --------------------------------------------------------------------------------------------------
# 17. strict types, Allow on 405, id patterns and the 400 in the schema


STRICT_CASES = [
    ("/v1/ask", {"question": SAMPLE_QUESTION, "k": "10"}),
    ("/v1/ask", {"question": SAMPLE_QUESTION, "k": True}),
    ("/v1/ask", {"question": SAMPLE_QUESTION, "k": 10.0}),
    ("/v1/ask", {"question": SAMPLE_QUESTION, "stream": "yes"}),
    ("/v1/ask", {"question": SAMPLE_QUESTION, "stream": 0}),
    ("/v1/ask", {"question": SAMPLE_QUESTION, "filters": {"date_to": 0}}),
    ("/v1/ask", {"question": SAMPLE_QUESTION, "filters": {"date_from": "20231001"}}),
    ("/v1/ask", {"question": SAMPLE_QUESTION, "as_of": 1700000000}),
    ("/v1/chat", {"question": SAMPLE_QUESTION, "k": "10"}),
    ("/v1/chat", {"question": SAMPLE_QUESTION, "stream": 1}),
    ("/v1/chat", {"question": SAMPLE_QUESTION, "conversation_id": "../../etc"}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": SAMPLE_QUESTION}], "k": "10"}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": SAMPLE_QUESTION}], "stream": "yes"}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": SAMPLE_QUESTION}], "as_of": 0}),
]


@pytest.mark.parametrize(("path", "body"), STRICT_CASES)
def test_request_types_are_strict(client: httpx.Client, path: str, body: dict) -> None:
    response = client.post(path, json=body)
    assert response.status_code == 422, (body, response.status_code, response.text[:300])
    assert isinstance(response.json()["detail"], str)


def test_strict_dates_in_query_parameters(client: httpx.Client) -> None:
    for params in ({"date_to": "0"}, {"date_from": "1700000000"}, {"as_of": "0"}):
        response = client.get("/v1/search", params={"q": "bike lanes", **params})
        assert response.status_code == 422, (params, response.text)
    assert client.get("/v1/articles", params={"date_to": "0"}).status_code == 422
    ok = client.get("/v1/search", params={"q": "bike lanes", "date_to": "2030-01-01", "as_of": "2030-01-02"})
    assert ok.status_code == 200, ok.text
    good = client.post("/v1/ask", json={"question": SAMPLE_QUESTION, "k": 5, "stream": False, "as_of": "2030-01-01"})
    assert good.status_code == 200


def test_405_on_a_conversation_lists_every_allowed_method(client: httpx.Client) -> None:
    for method in ("POST", "PUT", "PATCH"):
        response = client.request(method, "/v1/conversations/AAAAAAAAAAAAAAAA")
        assert response.status_code == 405
        allowed = {m.strip() for m in response.headers["allow"].split(",")}
        assert {"GET", "DELETE"} <= allowed, response.headers["allow"]
        assert "detail" in response.json()


def test_openapi_has_id_patterns_and_the_400(client: httpx.Client) -> None:
    from service.answering.schemas import CONVERSATION_ID_PATTERN

    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    for method in ("get", "delete"):
        (parameter,) = [
            p for p in paths["/v1/conversations/{conversation_id}"][method]["parameters"] if p["in"] == "path"
        ]
        assert parameter["schema"]["pattern"] == CONVERSATION_ID_PATTERN
    (article_id,) = [p for p in paths["/v1/articles/{article_id}"]["get"]["parameters"] if p["in"] == "path"]
    assert "pattern" in article_id["schema"]
    conversation_id = schema["components"]["schemas"]["ChatRequest"]["properties"]["conversation_id"]
    assert any(
        option.get("pattern") == CONVERSATION_ID_PATTERN for option in conversation_id.get("anyOf", [conversation_id])
    )
    for path in ("/v1/ask", "/v1/chat", "/v1/chat/completions"):
        assert "400" in paths[path]["post"]["responses"], path
    # and the 400 is what a body that is not UTF-8 gets, as JSON
    response = client.post("/v1/ask", content=b'{"question": "caf\xe9?"}', headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and isinstance(response.json()["detail"], str), response.text
