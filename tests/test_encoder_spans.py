"""Encoder.embed_with_spans: the text vectors of embed(), plus token embeddings pooled over character spans."""

from __future__ import annotations

import numpy as np
import pytest

from index.encoder import Encoder, EncoderError

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed: the ONNX backends are optional")

HEADER = "Storm cuts power across the region\nReuters, 2023-11-05\n\n"
SENTENCES = [
    "The storm knocked out power to about 300,000 homes across three states on Sunday night.",
    "Separately, the central bank left interest rates unchanged, saying inflation was easing.",
    "The football club sacked its manager after a fifth straight defeat.",
]
BODY = " ".join(SENTENCES)
TEXT = HEADER + BODY
OTHER = "Who won?"
LONG = " ".join(["Officials said the flooding closed roads across the region and cut power to homes."] * 30)


def sentence_spans(shift: int) -> list[tuple[int, int]]:
    spans, cursor = [], 0
    for sentence in SENTENCES:
        start = BODY.index(sentence, cursor)
        cursor = start + len(sentence)
        spans.append((shift + start, shift + cursor))
    return spans


@pytest.fixture(scope="module", params=["onnx-int8", "onnx", "torch"])
def backend_encoder(request: pytest.FixtureRequest, encoder: Encoder) -> Encoder:
    # The default cache directory holds the ONNX exports; a missing one is exported once, offline.
    return encoder if encoder.info.backend == request.param else Encoder(request.param)


def test_text_vectors_are_embeds_exactly(backend_encoder: Encoder) -> None:
    texts = [TEXT, OTHER, LONG, BODY]
    spans = [sentence_spans(len(HEADER)), [(0, 3)], [(0, 10), (200, 300)], []]
    for batch_size in (2, 32):  # several batches (sorted by length and put back), and one
        vectors, pooled = backend_encoder.embed_with_spans(texts, spans, batch_size=batch_size)
        expected = backend_encoder.embed(texts, batch_size=batch_size)
        assert vectors.dtype == np.float32 and vectors.flags["C_CONTIGUOUS"]
        np.testing.assert_array_equal(vectors, expected)
        assert [p.shape for p in pooled] == [(3, 384), (1, 384), (2, 384), (0, 384)]
        for p in pooled:
            assert p.dtype == np.float32
            np.testing.assert_allclose(np.linalg.norm(p, axis=1), 1.0, atol=1e-5)


def test_whole_text_span_pools_the_text_vector(backend_encoder: Encoder) -> None:
    vector = backend_encoder.embed([TEXT])[0]
    _, (same,) = backend_encoder.embed_with_spans([TEXT], [[(0, len(TEXT))]], special_tokens=True)
    np.testing.assert_allclose(same[0], vector, atol=1e-5)  # exactly the text vector's tokens
    _, (without,) = backend_encoder.embed_with_spans([TEXT], [[(0, len(TEXT))]])
    assert 0.9 < float(without[0] @ vector) < 1 - 1e-4  # [CLS] and [SEP] left out by default


def test_sentence_span_is_nearest_its_own_sentence(backend_encoder: Encoder) -> None:
    # A neutral header: with HEADER (on the storm) the bank sentence's pooled vector is pulled nearer the storm
    # sentence alone (0.51) than its own (0.48); the context is in every token.
    header = "Tuesday briefing\nReuters, 2023-11-07\n\n"
    alone = backend_encoder.embed(SENTENCES)
    for special_tokens in (False, True):
        _, (pooled,) = backend_encoder.embed_with_spans(
            [header + BODY], [sentence_spans(len(header))], special_tokens=special_tokens
        )
        similarity = pooled @ alone.T
        assert list(similarity.argmax(axis=1)) == [0, 1, 2], similarity


def test_spans_without_tokens_get_the_text_vector(backend_encoder: Encoder) -> None:
    vectors, (pooled,) = backend_encoder.embed_with_spans([LONG], [[(5, 5), (len(LONG) - 20, len(LONG)), (0, 12)]])
    np.testing.assert_array_equal(pooled[0], vectors[0])  # empty span
    np.testing.assert_array_equal(pooled[1], vectors[0])  # past the model's 256 word pieces
    assert float(pooled[2] @ vectors[0]) < 0.999  # a real span is its own vector


def test_a_span_takes_every_token_it_overlaps(backend_encoder: Encoder) -> None:
    # "rates" and "inflation" are whole word pieces: a span over part of a word takes the word's token.
    word = BODY.index("inflation") + len(HEADER)
    _, (pooled,) = backend_encoder.embed_with_spans([TEXT], [[(word, word + len("inflation")), (word + 2, word + 5)]])
    np.testing.assert_allclose(pooled[0], pooled[1], atol=1e-6)


def test_mismatched_spans_are_refused(backend_encoder: Encoder) -> None:
    with pytest.raises(EncoderError, match="span lists"):
        backend_encoder.embed_with_spans([TEXT, OTHER], [[(0, 3)]])
    vectors, pooled = backend_encoder.embed_with_spans([], [])
    assert vectors.shape == (0, 384) and pooled == []
