"""ingest.readers: real files in, RawArticle or Skipped out, never an exception."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import unicodedata
from datetime import date
from pathlib import Path

import pytest

from index.models import RawArticle
from ingest.readers import Skipped, iter_articles

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "articles"
SAMPLES = ROOT / "samples"
SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SEED = SHARED / "corpus" / "seed" / "armenia-and-russia-its-complicated.txt"


def read(*paths: Path, max_bytes: int = 20_000_000) -> list[RawArticle | Skipped]:
    return list(iter_articles(list(paths), max_bytes=max_bytes))


def by_origin(items: list[RawArticle | Skipped]) -> dict[str, RawArticle | Skipped]:
    return {Path(item.origin).name if "/" in item.origin else item.origin: item for item in items}


def one_article(path: Path) -> RawArticle:
    items = read(path)
    assert len(items) == 1, items
    assert isinstance(items[0], RawArticle), items[0]
    return items[0]


def skip_reason(path: Path, **kwargs: int) -> str:
    items = read(path, **kwargs)
    assert len(items) == 1 and isinstance(items[0], Skipped), items
    return items[0].reason


# ------------------------------------------------------------------------------------------- walking


def test_directory_is_walked_recursively_in_sorted_order() -> None:
    items = read(FIXTURES)
    names = [item.origin.removeprefix(str(FIXTURES) + "/") for item in items]
    assert names == [
        "annual-report.pdf",
        "briefs.json#0",
        "briefs.json#1",
        "briefs.json#2",
        "empty.txt",
        "feed.jsonl:1",
        "feed.jsonl:2",
        "feed.jsonl:3",
        "feed.jsonl:5",
        "festival-preview.md",
        "legacy-latin1.txt",
        "nested/school-board.txt",
        "nested/title-only.txt",
        "opinion-small-libraries.txt",
        "scan.txt",
        "town-hall-story.html",
    ]
    articles = [item for item in items if isinstance(item, RawArticle)]
    assert len(articles) == 8
    assert all(unicodedata.is_normalized("NFC", a.text) for a in articles)


def test_hidden_files_and_directories_are_ignored(tmp_path: Path) -> None:
    (tmp_path / ".drafts").mkdir()
    (tmp_path / ".drafts" / "draft.txt").write_text("Draft\n\nNot ready.\n")
    (tmp_path / ".notes.txt").write_text("Notes\n\nPrivate.\n")
    (tmp_path / "story.txt").write_text("Story\n\nPublished text.\n")
    items = read(tmp_path)
    assert [item.origin for item in items] == [str(tmp_path / "story.txt")]


def test_missing_path_is_skipped() -> None:
    missing = FIXTURES / "no-such-article.txt"
    assert "missing path" in skip_reason(missing)


def test_broken_symlink_is_skipped(tmp_path: Path) -> None:
    link = tmp_path / "gone.txt"
    link.symlink_to(tmp_path / "deleted.txt")
    assert "missing path" in skip_reason(link)


# ------------------------------------------------------------------------------------------- formats


def test_txt_title_line_and_section_suffix() -> None:
    article = one_article(FIXTURES / "opinion-small-libraries.txt")
    assert article.format == "txt"
    assert article.title == "Why Small-Town Libraries Still Matter"
    assert article.section == "Opinion"
    assert article.text.startswith("When the Elmwood branch library cut its hours")
    assert "Why Small-Town" not in article.text
    assert article.text.rstrip().endswith("Friends of the Elmwood Library.")


def test_txt_section_needs_capitalised_words(tmp_path: Path) -> None:
    path = tmp_path / "pipes.txt"
    path.write_text("Rain or shine | the market opens at nine\n\nThe farmers market opens every Saturday.\n")
    article = one_article(path)
    assert article.title == "Rain or shine | the market opens at nine"
    assert article.section is None


def test_txt_with_bom_and_decomposed_accents_is_nfc(tmp_path: Path) -> None:
    path = tmp_path / "cafe.txt"
    decomposed = "Cafe\u0301 Reopens\r\n\r\nThe cafe\u0301 on Main Street reopened.\r\n"
    path.write_bytes(b"\xef\xbb\xbf" + decomposed.encode("utf-8"))
    article = one_article(path)
    assert article.title == "Café Reopens"
    assert "café" in article.text and "\u0301" not in article.text


def test_txt_without_a_title_line_is_named_after_the_file(tmp_path: Path) -> None:
    path = tmp_path / "council_minutes-march.txt"
    paragraph = "The council met on Monday and approved the budget after a long discussion. " * 6
    path.write_text(paragraph + "\n\nA second paragraph.\n")
    article = one_article(path)
    assert article.title == "council minutes march"
    assert article.text.startswith("The council met on Monday")


def test_txt_with_only_a_title_is_skipped() -> None:
    assert "no text" in skip_reason(FIXTURES / "nested" / "title-only.txt")


def test_markdown_front_matter_and_syntax_stripped() -> None:
    article = one_article(FIXTURES / "festival-preview.md")
    assert article.format == "md"
    assert article.title == "Harvest Festival Returns to Pine Hollow"
    assert article.authors == ["Lena Ortiz", "Sam Whitaker"]
    assert article.published == date(2023, 9, 14)
    assert article.url == "https://www.pinehollow-post.example/events/harvest-festival"
    assert article.source == "Pine Hollow Post"
    assert article.section == "Events"
    text = article.text
    # the heading repeating the title, the image and the syntax are gone; the words stay
    assert text.startswith("The Pine Hollow Harvest Festival returns on September 30")
    assert "Food and music" in text
    assert "posted on the festival website." in text
    for syntax in ("#", "**", "*September", "](", "![", "pumpkins.jpg", "Pumpkins stacked"):
        assert syntax not in text


def test_markdown_title_from_heading_or_first_line(tmp_path: Path) -> None:
    heading = tmp_path / "heading.md"
    heading.write_text("Intro line before.\n\n# The Real Title\n\nBody with _emphasis_ and snake_case_name.\n")
    article = one_article(heading)
    assert article.title == "The Real Title"
    assert article.text == "Intro line before.\n\nBody with emphasis and snake_case_name."
    assert article.source is None and article.authors == []

    plain = tmp_path / "plain.markdown"
    plain.write_text("A Plain First Line\nSecond line of text.\n")
    article = one_article(plain)
    assert article.title == "A Plain First Line"
    assert article.text == "Second line of text."


def test_markdown_with_broken_front_matter_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "broken.md"
    path.write_text("---\ntitle: [unclosed\n---\n\nBody.\n")
    assert "front matter" in skip_reason(path)


def test_html_main_text_and_metadata() -> None:
    article = one_article(FIXTURES / "town-hall-story.html")
    assert article.format == "html"
    assert article.title == "Cedar Falls Opens Its Restored Town Hall"
    assert article.authors == ["Hannah Cole"]
    assert article.published == date(2024, 2, 9)
    assert article.url == "https://www.cedarfallscourier.example/news/town-hall-reopens"
    assert article.source == "Cedar Falls Courier"
    assert article.text.startswith("Cedar Falls reopened its 1894 town hall on Friday")
    assert "Volunteers spent four months cleaning it by hand." in article.text
    # navigation, ads, "most read" links and the footer are not article text
    for furniture in ("Shop our store", "Advertisement", "Lakeside Furniture", "Snow plow", "Copyright", "newsletter"):
        assert furniture not in article.text


def test_json_list_records() -> None:
    items = by_origin(read(FIXTURES / "briefs.json"))
    first = items["briefs.json#0"]
    assert isinstance(first, RawArticle)
    assert first.format == "json"
    assert (first.id, first.source, first.section) == ("brief-001", "Coastal News", "Transport")
    assert first.authors == ["Ivo Petrov"]
    assert first.published == date(2024, 4, 2)

    second = items["briefs.json#1"]
    assert isinstance(second, RawArticle)
    assert second.text.startswith("Growers in the Linden Valley")  # from "body"
    assert second.authors == ["Mia Song", "Karl Obi", "Farm Desk"]  # "author" split on " and " and ","
    assert second.published == date(2023, 8, 21)  # "published_at" ISO datetime
    assert second.source == "valleyfarmer.example"  # the url's host without www.
    assert second.id is None

    third = items["briefs.json#2"]
    assert isinstance(third, Skipped) and "not a JSON object" in third.reason


def test_json_single_object_and_invalid_json(tmp_path: Path) -> None:
    single = tmp_path / "single.json"
    single.write_text(json.dumps({"title": "One Story", "text": "Just one.", "published": "2021-02-30"}))
    article = one_article(single)
    assert article.origin == str(single)
    assert article.published is None  # an impossible date is dropped, the article is kept

    broken = tmp_path / "broken.json"
    broken.write_text('{"title": "Oops",\n "text": }')
    assert "invalid JSON at line 2" in skip_reason(broken)


def test_jsonl_bad_lines_are_skipped_and_the_rest_load() -> None:
    items = by_origin(read(FIXTURES / "feed.jsonl"))
    assert set(items) == {"feed.jsonl:1", "feed.jsonl:2", "feed.jsonl:3", "feed.jsonl:5"}  # line 4 is blank

    first = items["feed.jsonl:1"]
    assert isinstance(first, RawArticle) and first.format == "jsonl"
    assert (first.id, first.title, first.published) == ("feed-1", "Library Extends Weekend Hours", date(2024, 1, 15))

    invalid = items["feed.jsonl:2"]
    assert isinstance(invalid, Skipped) and "invalid JSON on line 2" in invalid.reason

    untitled = items["feed.jsonl:3"]
    assert isinstance(untitled, Skipped) and "no title" in untitled.reason

    last = items["feed.jsonl:5"]
    assert isinstance(last, RawArticle)
    assert last.published is None  # "sometime last week" is not a date, and not a reason to skip
    assert last.source == "riverside-daily.example"


def test_record_without_text_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "notext.jsonl"
    path.write_text(json.dumps({"title": "Headline only", "text": "   "}) + "\n" + json.dumps([1, 2]) + "\n")
    items = read(path)
    assert [type(item) for item in items] == [Skipped, Skipped]
    assert "no text" in items[0].reason
    assert "not a JSON object" in items[1].reason


# ------------------------------------------------------------------------------------------- failures


def test_empty_binary_undecodable_and_unsupported_files() -> None:
    assert skip_reason(FIXTURES / "empty.txt") == "empty file"
    assert "binary" in skip_reason(FIXTURES / "scan.txt")
    assert "not valid UTF-8" in skip_reason(FIXTURES / "legacy-latin1.txt")
    assert skip_reason(FIXTURES / "annual-report.pdf") == "unsupported extension '.pdf'"


def test_whitespace_only_file_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "blank.md"
    path.write_text("\n\n   \n")
    assert "empty file" in skip_reason(path)


def test_jsonl_of_blank_lines_is_reported_empty(tmp_path: Path) -> None:
    path = tmp_path / "blank.jsonl"
    path.write_text("\n  \n\r\n")
    assert skip_reason(path) == "empty file (whitespace only)"


def test_file_over_max_bytes_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "long.txt"
    path.write_text("A Long Story\n\n" + "word " * 3000)
    assert "too large" in skip_reason(path, max_bytes=10_000)
    assert isinstance(read(path, max_bytes=20_000)[0], RawArticle)


def test_jsonl_line_over_max_bytes_is_skipped_and_streaming_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "feed.jsonl"
    small = {"title": "Small", "text": "Fits."}
    huge = {"title": "Huge", "text": "x" * 50_000}
    path.write_text("\n".join(json.dumps(r) for r in (small, huge, small)) + "\n")
    items = read(path, max_bytes=10_000)
    assert [type(item) for item in items] == [RawArticle, Skipped, RawArticle]
    assert items[1].origin == f"{path}:2" and "too large" in items[1].reason
    assert items[2].origin == f"{path}:3"


_LIST_ITEMS = """
import json, sys
from pathlib import Path
from ingest.readers import iter_articles
items = iter_articles([Path(p) for p in sys.argv[1:]])
print(json.dumps([[type(i).__name__, i.origin, getattr(i, "reason", None)] for i in items]))
"""


def test_permission_denied_is_skipped(tmp_path: Path) -> None:
    locked = tmp_path / "locked.txt"
    locked.write_text("Locked\n\nNobody may read this.\n")
    locked_dir = tmp_path / "locked-dir"
    locked_dir.mkdir()
    (locked_dir / "inside.txt").write_text("Inside\n\nText.\n")
    locked.chmod(0)
    locked_dir.chmod(0)
    try:
        if os.geteuid() != 0:
            items = [[type(i).__name__, i.origin, getattr(i, "reason", None)] for i in read(locked, locked_dir)]
        else:
            # root reads anything; run the reader without the capabilities that bypass file permissions
            setpriv = shutil.which("setpriv")
            if setpriv is None:
                pytest.skip("running as root and setpriv is not available to drop CAP_DAC_OVERRIDE")
            caps = "-dac_override,-dac_read_search"
            command = [setpriv, f"--inh-caps={caps}", f"--bounding-set={caps}", sys.executable, "-c", _LIST_ITEMS]
            done = subprocess.run(
                [*command, str(locked), str(locked_dir)], cwd=ROOT, capture_output=True, text=True, timeout=120
            )
            if done.returncode != 0 and "setpriv" in done.stderr:
                pytest.skip(f"cannot drop capabilities here: {done.stderr.strip()}")
            assert done.returncode == 0, done.stderr
            items = json.loads(done.stdout)
    finally:
        locked.chmod(0o644)
        locked_dir.chmod(0o755)
    assert items == [
        ["Skipped", str(locked), "permission denied"],
        ["Skipped", str(locked_dir), "permission denied"],
    ]


# ------------------------------------------------------------------------------------------- real data


def test_samples_are_all_articles() -> None:
    items = read(SAMPLES)
    assert [type(item) for item in items] == [RawArticle] * 4, items
    formats = sorted(item.format for item in items if isinstance(item, RawArticle))
    assert formats == ["html", "jsonl", "md", "txt"]
    for item in items:
        assert isinstance(item, RawArticle)
        assert 250 <= len(item.text.split()) <= 500, (item.origin, len(item.text.split()))


def test_seed_article() -> None:
    if not SEED.exists():
        pytest.skip(f"{SEED} is not present")
    article = one_article(SEED)
    assert article.title == "Armenia and Russia\u2014It's Complicated"
    assert article.section == "Opinion"
    assert article.format == "txt"
    assert article.text.startswith("Russia and Armenia have been friends for centuries.")
    assert article.text.endswith("Newsweek app updates on-the-go")  # reading does not clean
