"""The HTTP service over a real uvicorn server on a loopback port, the real engine and real indexes."""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import SEED_QUESTION, running_server

from index.publish import CURRENT
from index.settings import Settings

SAMPLE_QUESTION = "How did the Millbrook council vote on the bike lanes?"


def sse_events(text: str) -> list[tuple[str, object]]:
    events = []
    for block in text.strip().split("\n\n"):
        name, data = "message", []
        for line in block.splitlines():
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: "):
                data.append(line[len("data: ") :])
        events.append((name, json.loads("\n".join(data))))
    return events


@pytest.fixture(scope="module")
def engine(sample_index: Path, encoder):
    from service.answering.engine import Engine

    return Engine(index_root=sample_index, encoder=encoder)


@pytest.fixture(scope="module")
def base_url(engine) -> Iterator[str]:
    from service.web.api import create_app

    with running_server(create_app(engine=engine)) as url:
        yield url


@pytest.fixture
def client(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=60) as http:
        yield http


# --------------------------------------------------------------------------------------------------
# answers and search


def test_ask_returns_a_cited_answer(client: httpx.Client) -> None:
    response = client.post("/v1/ask", json={"question": SAMPLE_QUESTION})
    assert response.status_code == 200
    answer = response.json()
    assert not answer["abstained"]
    assert "[1]" in answer["answer"]
    source = answer["sources"][0]
    assert source["n"] == 1 and source["quotes"]
    article = client.get(f"/v1/articles/{source['article_id']}").json()
    quote = source["quotes"][0]
    assert article["text"][quote["start"] : quote["end"]] == quote["text"]  # spans index the article text
    assert answer["index_version"] == article["index_version"]
    assert answer["passages"] and answer["timings"]["total_ms"] > 0


def test_ask_abstains_when_the_articles_do_not_answer(client: httpx.Client) -> None:
    answer = client.post("/v1/ask", json={"question": "What is the capital of Peru?"}).json()
    assert answer["abstained"] and not answer["sources"]


def test_ask_streams_server_sent_events(client: httpx.Client) -> None:
    with client.stream("POST", "/v1/ask", json={"question": SAMPLE_QUESTION, "stream": True}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        body = response.read().decode()
    events = sse_events(body)
    names = [name for name, _ in events]
    assert names[0] == "meta" and names[-2:] == ["sources", "done"]
    assert set(names[1:-2]) == {"delta"}
    done = events[-1][1]
    assert isinstance(done, dict)
    assert "".join(data["text"] for name, data in events if name == "delta") == done["answer"]  # type: ignore[index]
    assert events[-2][1]["sources"] == done["sources"]  # type: ignore[index]


def test_search_with_filters(client: httpx.Client) -> None:
    response = client.get("/v1/search", params={"q": "bike lanes Riverside Avenue", "k": 3})
    assert response.status_code == 200
    result = response.json()
    assert 1 <= len(result["passages"]) <= 3
    assert "Bike Lanes" in result["passages"][0]["title"]
    narrowed = client.get(
        "/v1/search", params={"q": "bike lanes", "source": "Valley Business Journal", "date_from": "2024-08-01"}
    ).json()
    assert narrowed["passages"]
    assert {p["source"] for p in narrowed["passages"]} == {"Valley Business Journal"}
    assert narrowed["filters"]["date_from"] == "2024-08-01"


def test_articles_paginated_and_detail(client: httpx.Client) -> None:
    page = client.get("/v1/articles", params={"limit": 2}).json()
    assert page["total"] >= 4 and len(page["items"]) == 2 and page["offset"] == 0
    rest = client.get("/v1/articles", params={"limit": 2, "offset": 2}).json()
    ids = [a["id"] for a in page["items"] + rest["items"]]
    assert len(ids) == len(set(ids))
    dates = [a["published"] for a in page["items"] + rest["items"] if a["published"]]
    assert dates == sorted(dates, reverse=True)
    only = client.get("/v1/articles", params={"source": "Valley Business Journal"}).json()
    assert [a["source"] for a in only["items"]] == ["Valley Business Journal"]
    detail = client.get(f"/v1/articles/{only['items'][0]['id']}").json()
    assert detail["text"].startswith("Kessler's Bakery")
    assert detail["chunks"] >= 1 and isinstance(detail["captions"], list)


def test_unknown_and_invalid_ids(client: httpx.Client) -> None:
    missing = client.get("/v1/articles/no-such-article")
    assert missing.status_code == 404 and "no-such-article" in missing.json()["detail"]
    invalid = client.get("/v1/articles/bad%20id%21")
    assert invalid.status_code == 422 and isinstance(invalid.json()["detail"], str)
    for method in ("GET", "DELETE"):
        response = client.request(method, "/v1/conversations/AAAAAAAAAAAAAAAAAAAAAA")
        assert response.status_code == 404 and "detail" in response.json()
    chat = client.post("/v1/chat", json={"question": "And then?", "conversation_id": "unknown-conversation"})
    assert chat.status_code == 404


# --------------------------------------------------------------------------------------------------
# conversations


def test_chat_follow_up_history_and_delete(client: httpx.Client) -> None:
    first = client.post("/v1/chat", json={"question": SAMPLE_QUESTION}).json()
    cid = first["conversation_id"]
    assert first["turn"] == 1 and first["sources"]
    second = client.post(
        "/v1/chat", json={"question": "When will construction of them finish?", "conversation_id": cid}
    )
    assert second.status_code == 200
    follow = second.json()
    assert follow["turn"] == 2 and follow["standalone_question"].startswith("When will construction of the bike lanes")
    history = client.get(f"/v1/conversations/{cid}").json()
    assert [t["turn"] for t in history["turns"]] == [1, 2]
    assert history["turns"][1]["standalone_question"] == follow["standalone_question"]
    assert history["turns"][0]["answer"]["sources"] == first["sources"]  # citations kept exactly
    assert client.delete(f"/v1/conversations/{cid}").status_code == 204
    assert client.get(f"/v1/conversations/{cid}").status_code == 404


def test_chat_streams_with_the_conversation_in_meta(client: httpx.Client) -> None:
    response = client.post("/v1/chat", json={"question": SAMPLE_QUESTION, "stream": True})
    events = sse_events(response.text)
    meta = events[0][1]
    assert events[0][0] == "meta" and isinstance(meta, dict)
    assert meta["turn"] == 1
    history = client.get(f"/v1/conversations/{meta['conversation_id']}").json()
    assert history["turns"][0]["answer"]["answer"] == events[-1][1]["answer"]  # type: ignore[index]


def test_seed_follow_up_names_pashinyan(seed_index: Path, encoder) -> None:
    from service.answering.engine import Engine
    from service.web.api import create_app

    engine = Engine(index_root=seed_index, encoder=encoder)
    with running_server(create_app(engine=engine)) as url, httpx.Client(base_url=url, timeout=60) as http:
        first = http.post("/v1/chat", json={"question": SEED_QUESTION}).json()
        assert not first["abstained"] and first["sources"]
        seed_article = first["sources"][0]["article_id"]
        follow = http.post(
            "/v1/chat", json={"question": "How did Moscow respond to him?", "conversation_id": first["conversation_id"]}
        ).json()
        assert "Pashinyan" in follow["standalone_question"]
        assert follow["question"] == "How did Moscow respond to him?"
        assert not follow["abstained"]
        assert seed_article in {s["article_id"] for s in follow["sources"]}


# --------------------------------------------------------------------------------------------------
# errors, limits, security


def test_errors_are_json_never_stack_traces(client: httpx.Client) -> None:
    cases = [
        client.post("/v1/ask", json={"question": ""}),
        client.post("/v1/ask", json={"question": "x" * 2001}),
        client.post("/v1/ask", json={"question": "   "}),
        client.post("/v1/ask", json={"question": "ok", "k": 0}),
        client.post("/v1/ask", json={"question": "ok", "filters": {"nope": 1}}),
        client.post("/v1/ask", json={"question": "ok", "as_of": "2023-02-30"}),
        client.post("/v1/ask", json=["not", "an", "object"]),
        client.post("/v1/ask", content=b"{not json", headers={"content-type": "application/json"}),
        client.get("/v1/search", params={"q": ""}),
        client.get("/v1/search", params={"q": "x", "k": 1000}),
        client.get("/v1/search", params={"q": "x", "date_from": "yesterday-ish"}),
        client.get("/v1/search", params={"q": "x", "date_from": "2024-02-01", "date_to": "2024-01-01"}),
        client.get("/v1/articles", params={"limit": 0}),
        client.post("/v1/chat/completions", json={"messages": []}),
        client.post("/v1/chat/completions", json={"messages": [{"role": "assistant", "content": "hi"}]}),
    ]
    for response in cases:
        assert response.status_code == 422, response.text
        detail = response.json()["detail"]
        assert isinstance(detail, str) and detail and "Traceback" not in detail
    weird = client.post("/v1/ask", json={"question": "\x00\u202e<script>alert(1)</script>"})
    assert weird.status_code == 200
    assert client.get("/no/such/route").json() == {"detail": "Not Found"}
    assert client.put("/v1/ask").status_code == 405


def test_body_size_limit(client: httpx.Client) -> None:
    big = client.post(
        "/v1/ask", content=b'{"question": "' + b"x" * 300_000 + b'"}', headers={"content-type": "application/json"}
    )
    assert big.status_code == 413 and "detail" in big.json()

    def chunks() -> Iterator[bytes]:
        yield b'{"question": "'
        for _ in range(40):
            yield b"y" * 10_000
        yield b'"}'

    streamed = client.post("/v1/ask", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413 and "detail" in streamed.json()


def test_api_keys(engine) -> None:
    from service.web.api import create_app

    settings = Settings(api_keys=["key-one", "key-two"], rate_limit_per_minute=1000)
    with running_server(create_app(settings, engine)) as url, httpx.Client(base_url=url, timeout=60) as http:
        for path in ("/v1/articles", "/v1/search?q=bakery", "/v1/conversations/AAAAAAAAAAAAAAAAAAAAAA"):
            missing = http.get(path)
            assert missing.status_code == 401 and missing.json() == {"detail": "missing API key"}
        assert http.post("/v1/ask", json={"question": "x"}).status_code == 401
        assert http.post("/v1/chat/completions", json={"messages": []}).status_code == 401
        wrong = http.get("/v1/articles", headers={"Authorization": "Bearer key-three"})
        assert wrong.status_code == 401 and wrong.json() == {"detail": "invalid API key"}
        assert http.get("/v1/articles", headers={"Authorization": "Bearer key-one"}).status_code == 200
        assert http.get("/v1/articles", headers={"X-API-Key": "key-two"}).status_code == 200
        # the page, health and metrics stay open
        assert http.get("/").status_code == 200
        assert http.get("/healthz").status_code == 200
        assert http.get("/readyz").status_code == 200


def test_rate_limit(engine) -> None:
    from service.web.api import create_app

    app = create_app(Settings(rate_limit_per_minute=3), engine)
    with running_server(app) as url, httpx.Client(base_url=url, timeout=60) as http:
        statuses = [http.get("/v1/articles").status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        limited = http.get("/v1/articles")
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
        assert "rate limit" in limited.json()["detail"]
        assert http.get("/healthz").status_code == 200  # only /v1 is limited


def test_cors(engine) -> None:
    from service.web.api import create_app

    settings = Settings(cors_origins=["https://reader.example"])
    with running_server(create_app(settings, engine)) as url, httpx.Client(base_url=url, timeout=60) as http:
        preflight = http.options(
            "/v1/ask",
            headers={"Origin": "https://reader.example", "Access-Control-Request-Method": "POST"},
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://reader.example"
        simple = http.get("/v1/articles", headers={"Origin": "https://reader.example"})
        assert simple.headers["access-control-allow-origin"] == "https://reader.example"
        other = http.get("/v1/articles", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


# --------------------------------------------------------------------------------------------------
# operations


def test_health_readiness_metrics_and_logs(client: httpx.Client, engine) -> None:
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    handler = Collect()
    logging.getLogger("byline.access").addHandler(handler)
    try:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz").json()
        assert ready["index_version"] == engine.index.version
        assert ready["chunks"] == len(engine.index.chunks) and ready["articles"] == len(engine.index.articles)
        client.post("/v1/ask", json={"question": SAMPLE_QUESTION})
        client.get("/v1/articles/no-such-article")
    finally:
        logging.getLogger("byline.access").removeHandler(handler)
    records = [json.loads(line) for line in lines]
    ask = next(r for r in records if r["path"] == "/v1/ask")
    assert ask["method"] == "POST" and ask["status"] == 200 and ask["ms"] > 0
    assert any(r["status"] == 404 and r["path"] == "/v1/articles/no-such-article" for r in records)

    metrics = client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert 'byline_http_requests_total{method="POST",route="/v1/ask",status="200"}' in text
    assert 'byline_http_request_seconds_count{method="GET",route="/v1/articles/{article_id}"}' in text
    assert "byline_retrieval_seconds_count" in text and "byline_answer_seconds_count" in text
    assert f"byline_index_chunks {float(len(engine.index.chunks))}" in text
    assert f"byline_index_articles {float(len(engine.index.articles))}" in text


def test_openapi_documents_the_routes(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    for path in (
        "/v1/ask",
        "/v1/chat",
        "/v1/conversations/{conversation_id}",
        "/v1/search",
        "/v1/articles",
        "/v1/articles/{article_id}",
        "/v1/chat/completions",
        "/healthz",
        "/readyz",
        "/metrics",
    ):
        assert path in spec["paths"], path
    assert "byline" in spec["components"]["schemas"]["ChatCompletion"]["properties"]
    assert {"HTTPBearer", "APIKeyHeader"} <= set(spec["components"]["securitySchemes"])


def test_api_reference_is_served_from_local_files(client: httpx.Client) -> None:
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/openapi.json" in docs.text
    assert "/docs-assets/swagger-ui-bundle.js" in docs.text and "cdn." not in docs.text
    bundle = client.get("/docs-assets/swagger-ui-bundle.js")
    assert bundle.status_code == 200 and "javascript" in bundle.headers["content-type"]
    assert client.get("/docs-assets/swagger-ui.css").status_code == 200
    assert client.get("/docs-assets/nope.js").status_code == 404
    redoc = client.get("/redoc")
    assert redoc.status_code == 200 and '<script src="/redoc.js">' in redoc.text  # ReDoc, its CDN logo dropped
    assert "fonts.googleapis" not in redoc.text and "cdn." not in redoc.text
    script = client.get("/redoc.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"] and "cdn." not in script.text


def test_page_is_served(client: httpx.Client) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "Byline" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/app.css").status_code == 200


def test_not_ready_until_an_index_is_published(tmp_path: Path, sample_index: Path, encoder) -> None:
    from service.web.api import create_app

    root = tmp_path / "index"
    settings = Settings(index_dir=root, reload_check_s=0.1)
    with running_server(create_app(settings)) as url, httpx.Client(base_url=url, timeout=60) as http:
        assert http.get("/healthz").status_code == 200
        waiting = http.get("/readyz")
        assert waiting.status_code == 503 and "not loaded" in waiting.json()["detail"]
        assert http.post("/v1/ask", json={"question": SAMPLE_QUESTION}).status_code == 503
        shutil.copytree(sample_index, root, ignore=shutil.ignore_patterns("conversations.sqlite*"))
        deadline = time.monotonic() + 60
        while http.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "the index was never loaded"
            time.sleep(0.1)
        assert http.post("/v1/ask", json={"question": SAMPLE_QUESTION}).status_code == 200


def test_hot_reload_swaps_versions_and_keeps_the_old_one_on_error(tmp_path: Path, sample_index: Path, encoder) -> None:
    from ingest.job import run_ingest
    from service.answering.engine import Engine
    from service.web.api import create_app

    root = tmp_path / "index"
    shutil.copytree(sample_index, root, ignore=shutil.ignore_patterns("conversations.sqlite*"))
    settings = Settings(index_dir=root, reload_check_s=0.1)
    engine = Engine(settings=settings, index_root=root, encoder=encoder)
    old_version = engine.index.version
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "glassworks.txt").write_text(
        "Oakridge Glassworks Reopens Its Furnace\n\n"
        "The Oakridge Glassworks relit its main furnace on Tuesday after a two-year shutdown, and the company "
        "said it would hire forty glassblowers by the end of the year. The owners credited a state loan of "
        "$2 million for the restart.\n"
    )
    with running_server(create_app(settings, engine)) as url, httpx.Client(base_url=url, timeout=60) as http:
        before = http.get("/v1/articles").json()["total"]
        (root / CURRENT).write_text("v-does-not-exist\n")  # a broken publication is refused...
        time.sleep(0.5)
        ready = http.get("/readyz")
        assert ready.status_code == 200 and ready.json()["index_version"] == old_version  # ...the old one serves
        assert "v-does-not-exist" in ready.json()["reload_error"]
        (root / CURRENT).write_text(old_version + "\n")
        summary = run_ingest([extra], index_root=root, encoder=encoder, progress=False)
        assert summary.version and summary.version != old_version
        deadline = time.monotonic() + 30
        while http.get("/readyz").json()["index_version"] != summary.version:
            assert time.monotonic() < deadline, "the new version was never loaded"
            time.sleep(0.1)
        assert http.get("/v1/articles").json()["total"] == before + 1
        answer = http.post("/v1/ask", json={"question": "How many glassblowers will the Oakridge Glassworks hire?"})
        assert answer.json()["index_version"] == summary.version
        assert "byline_index_reloads_total 1.0" in http.get("/metrics").text
