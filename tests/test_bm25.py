"""BM25 query tokens: our fast path must split, drop stopwords and stem exactly as bm25s.tokenize does."""

from __future__ import annotations

import json
from pathlib import Path

import bm25s
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from index import bm25

FIXTURES = Path(__file__).parent / "fixtures" / "articles"
NEWS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "news-2023q4.jsonl"


def reference(text: str) -> list[str]:
    return bm25s.tokenize([text], stopwords="en", stemmer=bm25._STEMMER, return_ids=False, show_progress=False)[0]


def fixture_texts() -> list[str]:
    return [p.read_text(encoding="utf-8", errors="replace") for p in sorted(FIXTURES.rglob("*")) if p.is_file()]


def test_query_tokens_match_bm25s_on_the_fixtures() -> None:
    texts = fixture_texts()
    assert texts
    for text in texts:
        assert bm25.query_tokens(text) == reference(text)


def test_query_tokens_match_bm25s_on_the_news_corpus() -> None:
    if not NEWS.exists():
        pytest.skip(f"{NEWS} not present")
    with NEWS.open(encoding="utf-8") as handle:
        texts = [json.loads(line)["text"] for _, line in zip(range(200), handle, strict=False)]
    for text in texts:
        assert bm25.query_tokens(text) == reference(text)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=80))
def test_query_tokens_match_bm25s_on_any_text(text: str) -> None:
    assert bm25.query_tokens(text) == reference(text)


def test_stopwords_and_stems() -> None:
    assert bm25.query_tokens("Which of the retailers recalled mattresses?") == ["which", "retail", "recal", "mattress"]
