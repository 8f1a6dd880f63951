"""Properties over arbitrary input (hypothesis): readers, cleaner, chunker and citation markers never break."""

from __future__ import annotations

import json
import tempfile
import unicodedata
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from index.models import RawArticle
from index.tokens import count_tokens
from ingest.chunker import ChunkerConfig, chunk_header, chunk_text
from ingest.cleaner import clean
from ingest.job import to_article
from ingest.readers import Skipped, iter_articles
from service.answering.answer import markers, validate_markers

# Characters that break naive text handling: bidi controls, zero-width characters, BOM, combining marks,
# emoji with joiners and variation selectors, odd line and paragraph separators, NUL and C1 controls.
TRICKY = [
    "\u200e",
    "\u200f",
    "\u202a",
    "\u202b",
    "\u202c",
    "\u202d",
    "\u202e",
    "\u2066",
    "\u2067",
    "\u2069",
    "\u200b",
    "\u200c",
    "\u200d",
    "\u2060",
    "\ufeff",
    "\u00ad",
    "\u0301",
    "\u0308",
    "e\u0301",
    "\U0001f468\u200d\U0001f469\u200d\U0001f467",
    "\U0001f1fa\U0001f1e6",
    "\u2764\ufe0f",
    "\U0001f600",
    "\u2028",
    "\u2029",
    "\u0085",
    "\x0b",
    "\x0c",
    "\r",
    "\r\n",
    "\n",
    "\n\n",
    "\t",
    "\x00",
    "\x9f",
    "\u00a0",
    "\u3000",
    "שלום",
    "مرحبا",
    "Ⅻ",
    "ﬁ",
    "Å",
    "Å",
    ". ",
    "? ",
    "Getty Images",
    "Jane Doe/AP",
    "Read more:",
    "Word",
    "[1]",
]
tricky_text = st.lists(st.one_of(st.sampled_from(TRICKY), st.text(max_size=8)), max_size=60).map("".join)
# Lone surrogates are valid in a Python str and in a JSON string ("\ud800"), never in UTF-8.
surrogate_text = st.lists(
    st.one_of(st.sampled_from(TRICKY), st.text(max_size=6), st.sampled_from(["\ud800", "\udfff", "\udc00x"])),
    max_size=40,
).map("".join)

EXTENSIONS = [".txt", ".md", ".markdown", ".html", ".htm", ".json", ".jsonl", ".pdf", ""]
FIELDS = ["title", "text", "body", "url", "id", "author", "authors", "published", "date", "source", "section"]
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), surrogate_text, st.sampled_from(TRICKY)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=5), inner),
    max_leaves=12,
)
records = st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=8)


def read_all(name: str, data: bytes, allow_nothing: bool = False) -> list[RawArticle | Skipped]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(data)
        items = list(iter_articles([path]))
    # a JSONL file of blank lines yields nothing (every other file yields an article or a Skipped)
    assert items or allow_nothing or (name.endswith(".jsonl") and not data.replace(b"\xef\xbb\xbf", b"").strip())
    for item in items:
        assert isinstance(item, RawArticle | Skipped)
        if isinstance(item, Skipped):
            assert item.reason
        else:  # what a reader returns can be cleaned, hashed and stored
            assert item.title.strip() and item.text.strip()
            to_article(item, datetime.now(UTC))
    return items


# --------------------------------------------------------------------------------------------------
# readers


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(EXTENSIONS), st.binary(max_size=600))
@example(".txt", b"\xef\xbb\xbf")
@example(".jsonl", b"\xef\xbb\xbf\n\n")
@example(".json", b"[]")
@example(".html", b"<html><body><p>\xff</p></body></html>")
@example(".md", b"---\ntitle: [unclosed\n---\nBody")
def test_readers_never_raise_on_arbitrary_bytes(extension: str, data: bytes) -> None:
    read_all(f"file{extension}", data)


@settings(max_examples=120, deadline=None)
@given(st.sampled_from(EXTENSIONS), tricky_text)
def test_readers_never_raise_on_tricky_utf8(extension: str, text: str) -> None:
    read_all(f"file{extension}", text.encode("utf-8", "surrogatepass"))


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.one_of(
            records.map(lambda r: json.dumps(r)),  # ensure_ascii: lone surrogates become "\\udXXX" escapes
            records.map(lambda r: json.dumps(r, ensure_ascii=False)),  # raw lone surrogates: invalid UTF-8
            json_values.map(json.dumps),
            st.text(max_size=40),
            st.sampled_from(["", " ", "{", "[", "null", '"x"', "\ufeff{}", "{}" * 3, "[" * 2000 + "]" * 2000]),
        ),
        min_size=1,
        max_size=6,
    )
)
@example(['{"title": "T \\ud800", "text": "A body \\udc00 with a lone surrogate."}'])
@example(['{"title": "Title", "text": "Body", "authors": ["A \\ud83d"], "url": "http://x/\\udfff"}'])
def test_jsonl_lines_never_raise_and_yield_one_item_per_line(lines: list[str]) -> None:
    data = "\n".join(lines).encode("utf-8", "surrogatepass")
    items = read_all("records.jsonl", data, allow_nothing=True)
    physical = data.split(b"\n")
    if physical[0].startswith(b"\xef\xbb\xbf"):
        physical[0] = physical[0][3:]
    records = sum(1 for line in physical if line.strip())
    # one item per record line; a file with no record lines at all is reported once as empty
    expected = 1 if not data or b"\x00" in data[:8192] else max(records, 1)
    assert len(items) == expected


@settings(max_examples=100, deadline=None)
@given(st.lists(records, min_size=1, max_size=4))
def test_json_records_with_lone_surrogates_are_skipped_not_fatal(batch: list[dict]) -> None:
    items = read_all("records.json", json.dumps(batch).encode())
    assert len(items) == len(batch)


# --------------------------------------------------------------------------------------------------
# cleaner


def assert_only_removes(source: str, output: str) -> None:
    """Every output word is an input word, in order (whitespace is normalised, nothing else changes)."""
    source_words = iter(unicodedata.normalize("NFC", source).split())
    for word in output.split():
        assert any(word == candidate for candidate in source_words), word


@settings(max_examples=250, deadline=None)
@given(st.one_of(tricky_text, surrogate_text))
@example("\u202eevil\u202c text\u200b with \ufeff zero\u200dwidth \U0001f600.\n\nGetty Images")
@example("\ud800")
@example("A\u2028B\u2029C\x85D\x0bE\x0cF")
def test_cleaner_never_raises_and_only_removes(source: str) -> None:
    cleaned = clean(source)
    assert_only_removes(source, cleaned.text)
    assert cleaned.text == cleaned.text.strip()
    for start, end in cleaned.captions:
        assert 0 <= start < end <= len(cleaned.text)


@settings(max_examples=100, deadline=None)
@given(surrogate_text)
def test_cleaner_on_text_from_json_strings(value: str) -> None:
    """Text as it arrives from JSON string escapes (lone surrogates included) goes through the cleaner."""
    decoded = json.loads(json.dumps(value))
    assert_only_removes(decoded, clean(decoded).text)


# --------------------------------------------------------------------------------------------------
# chunker

HEADER = chunk_header("A title", "example.org", None)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.one_of(
            st.sampled_from(TRICKY),
            st.text(max_size=20),
            st.sampled_from(["x" * 400, "word " * 80, "a, b; c: d — e " * 20, "1234567890" * 30]),
        ),
        max_size=40,
    ).map("".join),
    st.sampled_from([(8, 12, 0, 24), (20, 30, 1, 40), (60, 90, 2, 128)]),
)
def test_chunk_spans_map_back_exactly_and_fit(encoder, text: str, sizes: tuple[int, int, int, int]) -> None:
    target, max_tokens, overlap, max_wordpieces = sizes
    config = ChunkerConfig(
        target_tokens=target, max_tokens=max_tokens, overlap_sentences=overlap, max_wordpieces=max_wordpieces
    )
    chunks = chunk_text(text, HEADER, config, count_tokens, encoder.count_wordpieces)
    limit = min(config.max_tokens, config.target_tokens * 2)
    for ordinal, chunk in enumerate(chunks):
        assert chunk.ordinal == ordinal
        assert text[chunk.start : chunk.end] == chunk.text
        assert chunk.text.strip()
        assert chunk.n_tokens == count_tokens(chunk.text)
        for start, end in chunk.sentences:
            assert chunk.start <= start < end <= chunk.end
            assert count_tokens(text[start:end]) <= limit
        assert encoder.count_wordpieces([HEADER + chunk.text])[0] <= config.max_wordpieces
    for left, right in zip(chunks, chunks[1:], strict=False):
        assert left.start <= right.start
    spans = sorted({span for chunk in chunks for span in chunk.sentences})
    covered = "".join(text[s:e] for s, e in spans)
    assert nonspace(covered) == nonspace(text)  # nothing but whitespace is lost


def nonspace(text: str) -> str:
    return "".join(ch for ch in text if not ch.isspace())


# --------------------------------------------------------------------------------------------------
# citation markers

HUGE = "[" + "9" * 5000 + "]"  # int() refuses over 4300 digits
marker_text = st.lists(
    st.one_of(
        st.integers(min_value=-3, max_value=12).map(lambda n: f"[{n}]"),
        st.sampled_from(
            ["[", "]", "[[", "]]", " ", "\n", "x", "[0]", "[01]", "[ 1]", "[1 ]", "[١]", "[" + "9" * 5000 + "]"]
        ),
        st.text(alphabet="[]0123456789 x", max_size=10),
    ),
    max_size=30,
).map("".join)


@settings(max_examples=400, deadline=None)
@given(marker_text, st.integers(min_value=0, max_value=8))
@example("[[5]1]", 0)
@example("a [[99]7] b", 3)
@example("[[[9]9]9]2]", 1)
@example("[" + "9" * 5000 + "]", 3)
def test_validate_markers_leaves_only_markers_in_range(text: str, n_sources: int) -> None:
    out = validate_markers(text, n_sources)
    assert all(1 <= n <= n_sources for n in markers(out)), out
    assert validate_markers(out, n_sources) == out  # idempotent


@settings(max_examples=200, deadline=None)
@given(
    st.integers(min_value=1, max_value=8).flatmap(
        lambda n: st.tuples(
            st.just(n),
            st.lists(
                st.one_of(st.integers(1, n).map(lambda i: f" [{i}]"), st.text(alphabet="abc .,\n", max_size=6)),
                max_size=20,
            ).map("".join),
        )
    )
)
def test_validate_markers_keeps_valid_markers_untouched(case: tuple[int, str]) -> None:
    n_sources, text = case
    assert validate_markers(text, n_sources) == text
