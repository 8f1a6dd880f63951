"""Extractive answers, grounded by construction: every answer sentence is a sentence of the corpus.

The sentences of the retrieved passages are scored against the question with the encoder (cosine of
sentence and question embeddings) together with word overlap and the passage's rank; near-duplicates
are dropped; the best few are ordered by article and position and cited with ``[n]`` markers that index
the returned ``sources``. When the best evidence is too weak the answer is an abstention.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from index import bm25
from index.reader import LoadedIndex
from index.settings import Settings
from service.answering.retrieval import Candidate
from service.answering.schemas import AnswerSentence, Quote, Related, Source
from service.answering.sentence_cache import SentenceEmbeddingCache

ABSTENTION = "The corpus does not say. None of the indexed articles answers this question"
_MARKER = re.compile(r"\s*\[(\d+)\]")
_WORD = re.compile(r"\w+")
_FINISHED = re.compile(r"[.!?…][\"'”’)\]]*$")


@dataclass
class ScoredSentence:
    article_id: str
    chunk_id: int
    start: int
    end: int
    text: str
    passage_rank: int
    lexical: float = 0.0
    dense: float = 0.0
    score: float = 0.0


@dataclass
class Composed:
    sentences: list[AnswerSentence]
    sources: list[Source]
    related: list[Related]
    abstained: bool
    best_score: float
    confidence: float = 0.0
    coverage: float = 0.0
    best_dense: float = 0.0

    @property
    def text(self) -> str:
        if self.abstained:
            return ABSTENTION + "."
        return " ".join(f"{s.text} " + "".join(f"[{n}]" for n in s.citations) for s in self.sentences)


def content_words(text: str) -> set[str]:
    return set(bm25.query_tokens(text))


def candidate_sentences(index: LoadedIndex, candidates: list[Candidate], max_passages: int) -> list[ScoredSentence]:
    seen: set[tuple[str, int]] = set()
    out: list[ScoredSentence] = []
    for rank, cand in enumerate(candidates[:max_passages], start=1):
        chunk = index.chunks[cand.chunk_id]
        for start, end in chunk.sentences:
            if (chunk.article_id, start) in seen:
                continue
            seen.add((chunk.article_id, start))
            text = chunk.text[start - chunk.start : end - chunk.start]
            if len(_WORD.findall(text)) < 4 or not _FINISHED.search(text):
                continue  # fragments, headings and image titles are not answers
            out.append(ScoredSentence(chunk.article_id, chunk.id, start, end, text, rank))
    return out


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


def compose(
    question: str,
    query_vector: np.ndarray,
    candidates: list[Candidate],
    index: LoadedIndex,
    settings: Settings,
    cache: SentenceEmbeddingCache,
) -> Composed:
    sentences = candidate_sentences(index, candidates, settings.answer_passages)
    if not sentences:
        return Composed([], [], related_articles(index, candidates), True, 0.0)
    question_words = content_words(question)
    words = [content_words(s.text) for s in sentences]
    for sentence, sentence_words in zip(sentences, words, strict=True):
        sentence.lexical = len(question_words & sentence_words) / len(question_words) if question_words else 0.0
    # Dense scoring is the expensive part: score only the most promising sentences with the encoder.
    order = sorted(range(len(sentences)), key=lambda i: -(sentences[i].lexical + 1.0 / sentences[i].passage_rank))
    shortlist = order[: settings.answer_dense_sentences]
    embeddings = cache.embed(
        index.version, [(s.article_id, s.start, s.end, s.text) for s in map(sentences.__getitem__, shortlist)]
    )
    for i, sim in zip(shortlist, embeddings @ query_vector, strict=True):
        s = sentences[i]
        s.dense = float(sim)
        s.score = (
            settings.answer_dense_weight * s.dense
            + settings.answer_lexical_weight * s.lexical
            + settings.answer_rank_weight / s.passage_rank
        )
    scored = sorted((sentences[i] for i in shortlist), key=lambda s: -s.score)
    best = scored[0]
    coverage = evidence_coverage(index, question, best.chunk_id)
    confidence = settings.abstain_dense_weight * best.dense + (1 - settings.abstain_dense_weight) * coverage
    if confidence < settings.abstain_threshold:
        return Composed([], [], related_articles(index, candidates), True, best.score, confidence, coverage, best.dense)

    chosen: list[ScoredSentence] = []
    chosen_words: list[set[str]] = []
    for sentence in scored:
        if len(chosen) >= settings.answer_max_sentences:
            break
        if sentence.score < best.score * settings.answer_relative_cutoff:
            break
        sentence_words = content_words(sentence.text)
        if any(_jaccard(sentence_words, other) > 0.6 for other in chosen_words):
            continue  # a near-duplicate of a chosen sentence (often the same wire copy in two articles)
        chosen.append(sentence)
        chosen_words.append(sentence_words)

    # Sensible order: articles by their best sentence, sentences in article order within each.
    article_order = list(dict.fromkeys(s.article_id for s in chosen))
    chosen.sort(key=lambda s: (article_order.index(s.article_id), s.start))
    sources: list[Source] = []
    number: dict[str, int] = {}
    answer: list[AnswerSentence] = []
    for sentence in chosen:
        if sentence.article_id not in number:
            number[sentence.article_id] = len(sources) + 1
            sources.append(_source(index, number[sentence.article_id], sentence))
        else:
            _add_quote(index, sources[number[sentence.article_id] - 1], sentence)
        answer.append(AnswerSentence(text=sentence.text, citations=[number[sentence.article_id]]))
    return Composed(answer, sources, [], False, best.score, confidence, coverage, best.dense)


def evidence_coverage(index: LoadedIndex, question: str, chunk_id: int) -> float:
    """How much of the question the best passage speaks to: the idf-weighted share of the question's words
    (stemmed, stopwords removed) that occur in the passage or its article's title. A passage that matches
    the topic but misses the question's rare words ("GDP", "press conference") scores low."""
    wanted = content_words(question)
    if not wanted:
        return 0.0
    chunk = index.chunks[chunk_id]
    present = content_words(f"{index.articles[chunk.article_id].title}\n{chunk.text}")
    weights = {token: index.bm25.idf(token) for token in wanted}
    total = sum(weights.values())
    return sum(w for token, w in weights.items() if token in present) / total if total else 0.0


def _source(index: LoadedIndex, n: int, sentence: ScoredSentence) -> Source:
    article = index.articles[sentence.article_id]
    chunk = index.chunks[sentence.chunk_id]
    return Source(
        n=n,
        article_id=article.id,
        chunk_id=chunk.id,
        title=article.title,
        url=article.url,
        source=article.source,
        published=article.published,
        quotes=[Quote(text=sentence.text, start=sentence.start, end=sentence.end)],
        passage=chunk.text,
        passage_start=chunk.start,
        passage_end=chunk.end,
    )


def _add_quote(index: LoadedIndex, source: Source, sentence: ScoredSentence) -> None:
    source.quotes.append(Quote(text=sentence.text, start=sentence.start, end=sentence.end))
    source.quotes.sort(key=lambda q: q.start)
    chunk = index.chunks[sentence.chunk_id]
    if chunk.start < source.passage_start or chunk.end > source.passage_end:
        # Widen the displayed passage to cover every quote: the article text between the two chunks.
        start, end = min(chunk.start, source.passage_start), max(chunk.end, source.passage_end)
        text = index.article_text(source.article_id) or ""
        source.passage, source.passage_start, source.passage_end = text[start:end], start, end


def related_articles(index: LoadedIndex, candidates: list[Candidate], limit: int = 5) -> list[Related]:
    out: list[Related] = []
    for cand in candidates:
        if any(r.article_id == cand.article_id for r in out):
            continue
        article = index.articles[cand.article_id]
        out.append(
            Related(
                article_id=article.id,
                title=article.title,
                url=article.url,
                source=article.source,
                published=article.published,
                score=round(cand.score, 6),
            )
        )
        if len(out) == limit:
            break
    return out


def validate_markers(text: str, n_sources: int) -> str:
    """Drop every ``[n]`` marker that does not point to a returned source (1..n_sources)."""

    def keep(match: re.Match[str]) -> str:
        digits = match.group(1)  # no int() of a huge digit run: Python refuses over 4300 digits
        return match.group(0) if len(digits) <= 6 and 1 <= int(digits) <= n_sources else ""

    previous = None
    while previous != text:  # dropping "[9]" from "[[9]1]" leaves a new marker "[1]": repeat until stable
        previous, text = text, _MARKER.sub(keep, text)
    return text


def markers(text: str) -> list[int]:
    """The ``[n]`` numbers in a text; a digit run too long to be a source number is not one."""
    return [int(m) for m in _MARKER.findall(text) if len(m) <= 6]
