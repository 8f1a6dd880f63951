"""Chunks are exact slices of the article, sized in tokens, and never exceed the model's limit."""

from __future__ import annotations

from datetime import date

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from index.tokens import count_tokens
from ingest.chunker import ChunkerConfig, chunk_header, chunk_text
from tests.conftest import SEED_FILE, need

HEADER = chunk_header("A title", "example.org", date(2023, 9, 29))


def check_chunks(text: str, chunks, encoder, config: ChunkerConfig) -> None:
    for chunk in chunks:
        assert text[chunk.start : chunk.end] == chunk.text
        assert encoder.count_wordpieces([HEADER + chunk.text])[0] <= config.max_wordpieces
        assert chunk.n_tokens <= config.max_tokens
        for start, end in chunk.sentences:
            assert chunk.start <= start < end <= chunk.end


def test_seed_article_chunks(encoder) -> None:
    text = need(SEED_FILE).read_text().split("\n", 1)[1]
    config = ChunkerConfig(max_wordpieces=encoder.max_wordpieces)
    chunks = chunk_text(text, HEADER, config, count_tokens, encoder.count_wordpieces)
    check_chunks(text, chunks, encoder, config)
    assert len(chunks) >= 5
    sizes = [c.n_tokens for c in chunks[:-1]]
    assert min(sizes) >= 100 and max(sizes) <= config.max_tokens
    # one sentence of overlap between neighbours
    for left, right in zip(chunks, chunks[1:], strict=False):
        assert left.sentences[-1] == right.sentences[0]


def test_header_is_embedded_not_stored() -> None:
    assert HEADER == "A title | example.org | September 29, 2023\n"


def test_overlong_sentence_is_split_on_clauses_then_words(encoder) -> None:
    clause = "the committee reviewed the budget line by line, "
    text = ("It began when " + clause * 60 + "and then it ended. ") + "word " * 900 + "x" * 3000
    config = ChunkerConfig(max_wordpieces=encoder.max_wordpieces)
    chunks = chunk_text(text, HEADER, config, count_tokens, encoder.count_wordpieces)
    check_chunks(text, chunks, encoder, config)
    assert chunks[0].text.endswith(",")  # cut at a clause boundary
    covered = "".join(text[s:e] for c in chunks for s, e in c.sentences)
    assert covered.replace(" ", "") == text.replace(" ", "")  # nothing lost


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(min_size=0, max_size=3000))
def test_arbitrary_unicode_never_breaks_the_limits(encoder, text: str) -> None:
    config = ChunkerConfig(target_tokens=60, max_tokens=90, max_wordpieces=encoder.max_wordpieces)
    chunks = chunk_text(text, HEADER, config, count_tokens, encoder.count_wordpieces)
    check_chunks(text, chunks, encoder, config)
