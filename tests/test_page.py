"""The chat page in a real headless Chromium (Debian's) against a real server and the seed index."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from conftest import SEED_QUESTION, running_server

from index.settings import Settings

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def engine(seed_index: Path, encoder):
    from service.answering.engine import Engine

    return Engine(index_root=seed_index, encoder=encoder)


def ask(page, question: str, answers_before: int) -> None:  # noqa: ANN001 - playwright Page
    page.fill("#question", question)
    page.click("#ask-button")
    page.wait_for_function(
        "n => document.querySelectorAll('.turn-bot:not(.pending)').length > n", arg=answers_before, timeout=60_000
    )


def test_ask_follow_up_and_open_a_citation(browser, engine, tmp_path: Path) -> None:  # noqa: ANN001
    from service.web.api import create_app

    with running_server(create_app(engine=engine)) as url:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        problems: list[str] = []
        page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.goto(url)
        assert page.title().startswith("Byline")

        ask(page, SEED_QUESTION, 0)
        first = page.locator(".turn-bot").nth(0)
        assert "abstained" not in (first.get_attribute("class") or "")
        assert first.locator(".cite").count() >= 1
        assert first.locator(".sources .source-item").count() >= 1

        ask(page, "How did Moscow respond to him?", 1)
        second = page.locator(".turn-bot").nth(1)
        assert "Pashinyan" in second.locator(".searched").inner_text()

        conversation_id = page.evaluate("localStorage.getItem('byline.conversationId')")
        with httpx.Client(base_url=url, timeout=30) as http:
            history = http.get(f"/v1/conversations/{conversation_id}").json()
        assert len(history["turns"]) == 2
        answer = history["turns"][0]["answer"]
        source = answer["sources"][0]
        # the second marker closes the second answer sentence: its quote is the one to focus
        second_sentence = answer["sentences"][1]["text"]
        focused = next(q for q in source["quotes"] if q["text"] in second_sentence or second_sentence in q["text"])

        first.locator(".cite").nth(1).click()
        page.wait_for_selector("#article-text mark", timeout=30_000)
        assert page.locator("#article-title").inner_text() == source["title"]
        marks = page.locator("#article-text mark")
        assert [marks.nth(i).inner_text() for i in range(marks.count())] == [q["text"] for q in source["quotes"]]
        assert marks.first.is_visible()
        # the highlight sits exactly at the quote's span of the article text
        offset = page.evaluate(
            """() => {
                const mark = document.querySelector('#article-text mark');
                const range = document.createRange();
                range.setStart(document.getElementById('article-text'), 0);
                range.setEndBefore(mark);
                return range.toString().length;
            }"""
        )
        assert offset == source["quotes"][0]["start"]
        current = page.locator("#article-text mark.current")
        assert current.count() == 1 and current.inner_text() == focused["text"]
        assert current.is_visible()
        box = current.bounding_box()
        panel = page.locator("#article").bounding_box()
        assert box and panel and panel["y"] <= box["y"] <= panel["y"] + panel["height"]  # scrolled into the panel
        assert page.evaluate("window.scrollY") == 0  # the page itself stays put
        screenshot = tmp_path / "byline-page-citation.png"
        page.screenshot(path=str(screenshot), full_page=False)
        assert screenshot.stat().st_size > 10_000
        print(f"screenshot: {screenshot}")

        page.click("#new-conversation")
        assert page.locator(".turn-bot").count() == 0
        assert page.evaluate("localStorage.getItem('byline.conversationId')") is None
        assert page.locator("#article").is_hidden()
        assert not problems, problems
        page.close()


def test_api_key_errors_and_an_unreachable_service(browser, engine) -> None:  # noqa: ANN001
    from service.web.api import create_app

    app = create_app(Settings(api_keys=["page-key"]), engine)
    page = browser.new_page()
    with running_server(app) as url:
        page.goto(url)
        ask(page, SEED_QUESTION, 0)
        failed = page.locator(".turn-bot.failed")
        assert "API key" in failed.inner_text()
        page.fill("#api-key", "page-key")
        page.dispatch_event("#api-key", "change")
        ask(page, SEED_QUESTION, 1)
        assert page.locator(".turn-bot").nth(1).locator(".cite").count() >= 1
        assert page.evaluate("localStorage.getItem('byline.apiKey')") == "page-key"
    # the server is gone now
    ask(page, "What did he say next?", 2)
    assert "unreachable" in page.locator(".turn-bot.failed").last.inner_text()
    page.close()


HOSTILE = '<img src=x onerror="window.__pwned = 1">'


def test_markup_in_an_article_is_shown_as_text_never_run(browser, encoder, tmp_path: Path) -> None:  # noqa: ANN001
    """Article text is data: markup and script in an article reach the page as literal text."""
    import json

    from ingest.job import run_ingest
    from service.answering.engine import Engine
    from service.web.api import create_app

    folder = tmp_path / "articles"
    folder.mkdir()
    record = {
        "id": "hostile-festival",
        "title": f"Lantern festival {HOSTILE} fills the harbour",
        "published": "2023-09-20",
        "source": "example.org",
        "text": (
            f"The lantern festival {HOSTILE} drew about 4,000 visitors to the harbour on Saturday night. "
            "<script>window.__pwned = 2</script> Organisers said local schools made most of the lanterns. "
            "The council plans to hold the festival again next autumn."
        ),
    }
    (folder / "hostile.jsonl").write_text(json.dumps(record) + "\n")
    run_ingest([folder], index_root=tmp_path / "index", encoder=encoder, progress=False)
    engine = Engine(index_root=tmp_path / "index", encoder=encoder)
    with running_server(create_app(engine=engine)) as url:
        page = browser.new_page()
        page.goto(url)
        ask(page, "How many visitors did the lantern festival draw to the harbour?", 0)
        answer = page.locator(".turn-bot").nth(0)
        assert answer.locator(".cite").count() >= 1, answer.inner_text()
        answer.locator(".cite").first.click()
        page.wait_for_selector("#article-text mark", timeout=30_000)
        page.wait_for_timeout(300)  # give an injected onerror handler the chance to fire
        assert page.evaluate("window.__pwned") is None
        assert page.locator("img").count() == 0 and page.locator("#article-text script").count() == 0
        assert HOSTILE in page.locator("#article-text").inner_text()
        assert HOSTILE in page.locator("#article-title").inner_text()
        page.close()


def test_api_reference_page_renders_without_a_network(browser, engine) -> None:  # noqa: ANN001
    """/docs uses Swagger UI's files from the installed package; every request the page makes stays on our server."""
    from service.web.api import create_app

    app = create_app(Settings(), engine)
    page = browser.new_page()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    with running_server(app) as url:
        page.goto(f"{url}/docs")
        page.wait_for_selector(".opblock-summary-path", timeout=60_000)
        paths = page.locator(".opblock-summary-path").all_inner_texts()
        assert any("/v1/ask" in p for p in paths) and any("/v1/chat" in p for p in paths)
    assert requested and all(r.startswith(url) for r in requested), requested
    page.close()
