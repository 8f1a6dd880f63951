"""The chat page in a real headless Chromium (Debian's) against a real server and the seed index.

Covers streaming (text shows before the ``done`` event), the scroll position of the newest answer, Escape and
focus return, touch-target size, the length limit, labelled source cards, the details line, the short answer,
and the API reference pages without a network. Screenshots at 1280 and 375 px go to ``SCREENSHOTS``.
"""

from __future__ import annotations

import asyncio
import json
import os
from datetime import date
from pathlib import Path

import httpx
import pytest
from conftest import SEED_QUESTION, running_server

from index.settings import Settings

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(os.environ.get("BYLINE_SCREENSHOTS", "/tmp/byline"))
FINISHED = ".turn-bot[data-state=done], .turn-bot[data-state=failed]"
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
    """Ask and wait until the answer (or its failure) is complete. Locator waits, not wait_for_function: the
    page's CSP forbids the string evaluation that wait_for_function uses."""
    page.fill("#question", question)
    page.click("#ask-button")
    page.locator(FINISHED).nth(answers_before).wait_for(timeout=60_000)


def throttled(app, delay_s: float = 0.03):  # noqa: ANN001, ANN201 - an ASGI app
    """The app behind a slow network: each streamed body chunk of ``/v1/chat`` is held back ``delay_s``, so the
    browser sees the events arrive over time (on loopback they would all land in one read)."""

    async def wrapped(scope, receive, send) -> None:  # noqa: ANN001
        if scope["type"] != "http" or scope.get("path") != "/v1/chat":
            await app(scope, receive, send)
            return

        async def slow_send(message) -> None:  # noqa: ANN001
            if message["type"] == "http.response.body" and message.get("more_body"):
                await asyncio.sleep(delay_s)
            await send(message)

        await app(scope, receive, slow_send)

    return wrapped


WATCH_STATES = """() => {
    window.__states = [];
    const transcript = document.getElementById('transcript');
    new MutationObserver(() => {
        const li = transcript.querySelector('.turn-bot:last-of-type');
        if (!li) return;
        const text = li.querySelector('.answer-text');
        window.__states.push([li.dataset.state || '', text ? text.textContent.length : 0, li.textContent.slice(0, 40)]);
    }).observe(transcript, {subtree: true, childList: true, characterData: true, attributes: true});
}"""


def is_focused(page, locator) -> bool:  # noqa: ANN001
    return locator.evaluate("node => node === document.activeElement")


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


def test_the_answer_streams_in_and_the_newest_answer_is_fully_in_view(browser, engine) -> None:  # noqa: ANN001
    """SSE from /v1/chat: "Reading the articles…" until the first piece, text before the ``done`` event; each new
    answer ends above the sticky question box."""
    from service.web.api import create_app

    with running_server(throttled(create_app(engine=engine))) as url:
        page = browser.new_page(viewport={"width": 1280, "height": 720})
        requests: list[dict] = []
        page.on("request", lambda r: requests.append(json.loads(r.post_data)) if r.url.endswith("/v1/chat") else None)
        responses: list[str] = []
        page.on(
            "response", lambda r: responses.append(r.headers.get("content-type", "")) if "/v1/chat" in r.url else None
        )
        page.goto(url)
        page.evaluate(WATCH_STATES)
        ask(page, SEED_QUESTION, 0)
        assert requests[0]["stream"] is True and responses[0].startswith("text/event-stream")
        states = page.evaluate("window.__states")
        names = [state for state, _, _ in states]
        assert names[0] == "pending" and "Reading the articles" in states[0][2]
        first_text = names.index("streaming")
        assert all(name == "pending" for name in names[:first_text])  # the reading state until the first piece
        streamed = [length for state, length, _ in states if state == "streaming"]
        assert streamed and streamed[0] > 0 and len(set(streamed)) >= 3, streamed  # text grew piece by piece ...
        assert names.index("done") > first_text  # ... before the complete answer arrived
        answer = page.locator(".turn-bot").nth(0)
        assert int(answer.get_attribute("data-deltas") or 0) >= 3
        assert answer.locator(".cite").count() >= 1  # the done event's answer replaces the plain streamed text

        for n, question in enumerate(
            ["How did Moscow respond to him?", "What did Pashinyan say about security?", SEED_QUESTION], start=1
        ):
            ask(page, question, n)
            newest = page.locator(".turn-bot").nth(n).bounding_box()
            form = page.locator("#ask-form").bounding_box()
            assert newest and form
            assert newest["y"] >= 0, newest
            assert newest["y"] + newest["height"] <= form["y"], (newest, form)  # not under the sticky box
        assert page.evaluate("window.scrollY") > 0  # the page did have to scroll
        page.close()


def test_escape_closes_the_source_and_focus_returns_to_its_citation(browser, engine) -> None:  # noqa: ANN001
    from service.web.api import create_app

    with running_server(create_app(engine=engine)) as url:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(url)
        ask(page, SEED_QUESTION, 0)
        chips = page.locator(".turn-bot .cite")
        assert chips.count() >= 1
        for i in range(chips.count()):
            box = chips.nth(i).bounding_box()
            assert box and box["width"] >= 24 and box["height"] >= 24, box  # a touch target

        chip = chips.last
        chip.click()
        page.wait_for_selector("#article-text mark", timeout=30_000)
        assert is_focused(page, page.locator("#close-article"))  # focus moved into the panel
        page.keyboard.press("Escape")
        assert page.locator("#article").is_hidden()
        assert is_focused(page, chip)  # back where the reader was, not the page body

        # the close button returns focus too, and so does a source card
        card = page.locator(".sources .source-item").first
        card.click()
        page.wait_for_selector("#article-text mark", timeout=30_000)
        page.click("#close-article")
        assert page.locator("#article").is_hidden() and is_focused(page, card)
        # by keyboard alone: Enter on the chip opens, Escape closes and returns
        chip.focus()
        page.keyboard.press("Enter")
        page.wait_for_selector("#article-text mark", timeout=30_000)
        page.keyboard.press("Escape")
        assert page.locator("#article").is_hidden() and is_focused(page, chip)
        page.close()


def test_a_question_over_the_limit_is_flagged_before_sending(browser, engine) -> None:  # noqa: ANN001
    from service.web.api import create_app

    settings = Settings(max_question_chars=300)
    with running_server(create_app(settings, engine)) as url:
        page = browser.new_page()
        sent: list[str] = []
        page.on("request", lambda r: sent.append(r.url) if r.url.endswith("/v1/chat") else None)
        page.goto(url)
        assert page.locator("body").get_attribute("data-max-question-chars") == "300"
        page.fill("#question", "x" * 5000)  # as a paste: nothing cut
        assert len(page.input_value("#question")) == 5000
        limit = page.locator("#question-limit")
        assert limit.is_visible() and "5,000 characters" in limit.inner_text() and "300" in limit.inner_text()
        assert page.locator("#ask-button").is_disabled()
        assert page.get_attribute("#question", "aria-invalid") == "true"
        page.focus("#question")
        page.keyboard.press("Enter")
        page.wait_for_timeout(300)
        assert not sent and page.locator(".turn-user").count() == 0  # not sent

        page.fill("#question", SEED_QUESTION)  # shortened: the flag goes and the question goes out
        assert limit.is_hidden() and page.locator("#ask-button").is_enabled()
        ask(page, SEED_QUESTION, 0)
        assert sent and page.locator(".turn-bot[data-state=done]").count() == 1
        page.close()


def test_a_bare_source_card_labels_what_is_missing_and_details_stay_folded(browser, engine) -> None:  # noqa: ANN001
    """The seed article has no url, date or publication: the card says so; timings and index version are folded
    into a details line."""
    from service.web.api import create_app

    with running_server(create_app(engine=engine)) as url:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(url)
        ask(page, SEED_QUESTION, 0)
        answer = page.locator(".turn-bot").nth(0)
        meta = answer.locator(".sources .source-item .source-meta").first.inner_text()
        assert meta == "publication not given · date not given · no link"
        assert "index" not in answer.locator(".answer-text").inner_text()
        details = answer.locator("details.details")
        assert details.locator("summary").inner_text() == "Details"
        assert details.locator(".timing").is_hidden()  # folded
        details.locator("summary").click()
        assert "index version v" in details.locator(".timing").inner_text()
        answer.locator(".cite").first.click()
        page.wait_for_selector("#article-text mark", timeout=30_000)
        assert "publication not given" in page.locator("#article-meta").inner_text()
        page.close()


def test_the_short_answer_leads_with_its_citation(browser, engine) -> None:  # noqa: ANN001
    """A short answer built by hand (until the reading stage fills it): shown first, bold, with a chip that opens
    the article at that span. The stream is the service's own event format (``answer_events``)."""
    from service.answering.schemas import AskRequest, ChatAnswer, ShortAnswer
    from service.web.api import create_app
    from service.web.sse import answer_events

    real = engine.ask(AskRequest(question=SEED_QUESTION, as_of=date.today()))
    source = real.sources[0]
    quote = source.quotes[-1]
    words = " ".join(quote.text.split()[:3])
    short = ShortAnswer(
        text=words,
        source=source.n,
        article_id=source.article_id,
        start=quote.start,
        end=quote.start + len(words),
        kind="thing",
    )
    answer = ChatAnswer(**real.model_dump(), conversation_id="page-short-answer", turn=1).model_copy(
        update={"short_answer": short}
    )
    body = "".join(answer_events(answer, {"conversation_id": answer.conversation_id, "turn": 1}))

    with running_server(create_app(engine=engine)) as url:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.route(
            "**/v1/chat",
            lambda route: route.fulfill(status=200, headers={"Content-Type": "text/event-stream"}, body=body),
        )
        page.goto(url)
        ask(page, SEED_QUESTION, 0)
        lead = page.locator(".turn-bot .short-answer")
        assert lead.count() == 1
        assert lead.locator("strong").inner_text() == words
        # the lead comes before the answer text
        assert page.locator(".turn-bot > p").first.get_attribute("class") == "short-answer"
        chip = lead.locator(".cite")
        assert chip.inner_text() == f"[{source.n}]"
        chip.click()
        page.wait_for_selector("#article-text mark.current", timeout=30_000)
        assert page.locator("#article-text mark.current").inner_text() == words  # the span itself, highlighted
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "page-1280-short-answer.png"), full_page=False)
        page.keyboard.press("Escape")
        assert is_focused(page, chip)
        page.close()


def test_redoc_renders_without_a_network(browser, engine) -> None:  # noqa: ANN001
    """/redoc's bundle is served with its CDN logo dropped: every request stays on our server."""
    from service.web.api import create_app

    page = browser.new_page()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    with running_server(create_app(Settings(), engine)) as url:
        page.goto(f"{url}/redoc")
        page.get_by_text("API docs by Redocly").wait_for(timeout=60_000)
        page.wait_for_timeout(500)
        assert page.locator("img[alt='redocly logo']").count() == 0
    outside = [r for r in requested if not r.startswith((url, "blob:", "data:"))]
    assert requested and not outside, outside
    page.close()


@pytest.mark.parametrize("width", [1280, 375])
def test_screenshots(browser, engine, width: int) -> None:  # noqa: ANN001
    """The page after a question and a follow-up, the newest answer in view; at 1280 px also with the source open
    beside it (``page-1280-source.png``)."""
    from service.web.api import create_app

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with running_server(create_app(engine=engine)) as url:
        page = browser.new_page(viewport={"width": width, "height": 800})
        page.goto(url)
        ask(page, SEED_QUESTION, 0)
        ask(page, "How did Moscow respond to him?", 1)
        newest = page.locator(".turn-bot").nth(1).bounding_box()
        form = page.locator("#ask-form").bounding_box()
        assert newest and form
        fits = newest["height"] <= form["y"] - 24
        # fully above the sticky box, or (taller than the room there) its top at the top of the window
        assert newest["y"] + newest["height"] <= form["y"] if fits else 0 <= newest["y"] <= 24, (newest, form)
        shots = [SCREENSHOTS / f"page-{width}.png"]
        page.screenshot(path=str(shots[0]), full_page=False)
        if width >= 900:
            page.locator(".turn-bot").nth(1).locator(".cite").first.click()
            page.wait_for_selector("#article-text mark.current", timeout=30_000)
            page.wait_for_timeout(200)
            shots.append(SCREENSHOTS / f"page-{width}-source.png")
            page.screenshot(path=str(shots[1]), full_page=False)
        for path in shots:
            assert path.stat().st_size > 10_000
            print(f"screenshot: {path}")
        page.close()
