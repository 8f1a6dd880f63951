"""Extractive answers, grounded by construction: every answer sentence is a sentence of the corpus.

The sentences of the retrieved passages (headings and fragments left out) are scored by the reading stage
(``service.answering.reading``): the probability that each one states the answer. Below the abstention
threshold the answer is an abstention; otherwise the best few (near-duplicates dropped) are ordered by
article and position and cited with ``[n]`` markers that index the returned ``sources``, and for a factual
question the short answer is an exact span of one of them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

import numpy as np

from index.reader import LoadedIndex
from index.settings import Settings
from service.answering.reading import CandidateSentence, Question, Reader
from service.answering.reading.features import cheap_features, content_words, focus_features
from service.answering.reading.kinds import question_kind
from service.answering.reading.short_answer import short_answer
from service.answering.retrieval import Candidate
from service.answering.schemas import AnswerSentence, Quote, Related, ShortAnswer, Source
from service.answering.sentence_cache import SentenceEmbeddingCache as SentenceCache

ABSTENTION = "The corpus does not say. None of the indexed articles answers this question"
_MARKER = re.compile(r"\s*\[(\d+)\]")
_WORD = re.compile(r"\w+")
_FINISHED = re.compile(r"[.!?…][\"'”’)\]]*$")


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
    short_answer: ShortAnswer | None = None
    kind: str = "thing"

    @property
    def text(self) -> str:
        if self.abstained:
            return ABSTENTION + "."
        return " ".join(f"{s.text} " + "".join(f"[{n}]" for n in s.citations) for s in self.sentences)


def candidate_sentences(
    index: LoadedIndex,
    candidates: list[Candidate],
    max_passages: int,
    question_words: set[str],
    context_words: frozenset[str] | set[str] = frozenset(),
) -> list[CandidateSentence]:
    """The answerable sentences of the top passages: no headings, fragments or unfinished lines, no repeats;
    each with its passage's coverage of the question (or, if higher, of the question and ``context_words``)."""
    seen: set[tuple[str, int]] = set()
    out: list[CandidateSentence] = []
    stored = index.sentence_vectors
    for rank, cand in enumerate(candidates[:max_passages], start=1):
        chunk = index.chunks[cand.chunk_id]
        vectors = stored.of_chunk(chunk.id) if stored is not None else None
        headings = set(chunk.headings)
        captions = index.articles[chunk.article_id].captions
        coverage = evidence_coverage(index, question_words, chunk.id)
        if context_words:
            coverage = max(coverage, evidence_coverage(index, question_words | context_words, chunk.id))
        for i, (start, end) in enumerate(chunk.sentences):
            if (chunk.article_id, start) in seen or (start, end) in headings:
                continue
            seen.add((chunk.article_id, start))
            text = chunk.text[start - chunk.start : end - chunk.start]
            if len(_WORD.findall(text)) < 4 or (not headings and stored is None and not _FINISHED.search(text)):
                continue  # fragments are not answers (and, in an index without heading marks, unfinished lines)
            out.append(
                CandidateSentence(
                    article_id=chunk.article_id,
                    chunk_id=chunk.id,
                    start=start,
                    end=end,
                    text=text,
                    passage_rank=rank,
                    position=i if chunk.ordinal == 0 else 10 + i,
                    vector=vectors[i] if vectors is not None else None,
                    passage_coverage=coverage,
                    caption=any(c_start <= start and end <= c_end for c_start, c_end in captions),
                )
            )
    return out


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


def _embed_missing(
    index: LoadedIndex, sentences: list[CandidateSentence], question_words: set[str], limit: int, cache: SentenceCache
) -> list[CandidateSentence]:
    """For an index without stored sentence vectors: embed the most promising ``limit`` sentences now."""
    if all(s.vector is not None for s in sentences):
        return sentences

    def promise(s: CandidateSentence) -> float:
        words = content_words(s.text)
        return (len(question_words & words) / len(question_words) if question_words else 0.0) + 1.0 / s.passage_rank

    shortlist = sorted(sentences, key=lambda s: -promise(s))[:limit]
    vectors = cache.embed(index.version, [(s.article_id, s.start, s.end, s.text) for s in shortlist])
    for sentence, vector in zip(shortlist, vectors, strict=True):
        sentence.vector = vector
    return shortlist


def prepare(
    index: LoadedIndex,
    question: str,
    query_vector: np.ndarray,
    candidates: list[Candidate],
    settings: Settings,
    cache: SentenceCache,
    period: tuple[date, date] | None = None,
    keep: Callable[[CandidateSentence], bool] | None = None,
    context: str = "",
    cited: frozenset[str] = frozenset(),
) -> tuple[Question, list[CandidateSentence]]:
    """The question as the reader sees it and its candidate sentences with their features (``keep`` filters
    them first, e.g. to leave held-out articles out of training). ``context``: a follow-up's earlier questions;
    a passage's coverage is then the higher of its coverage of the question and of the question with the
    conversation's words (a short follow-up names little of its topic); word overlap stays the question's own.
    ``cited``: the articles a follow-up's recent turns cited (the ``cited`` feature). Shared by :func:`compose`,
    the reader's training (``reading.train``) and the offline comparison (``eval.reader_study``)."""
    words = content_words(question)
    sentences = candidate_sentences(index, candidates, settings.answer_passages, words, content_words(context))
    if keep is not None:
        sentences = [s for s in sentences if keep(s)]
    asked = Question(question, query_vector, question_kind(question), period)
    if not sentences:
        return asked, []
    sentences = _embed_missing(index, sentences, words, settings.answer_dense_sentences, cache)
    for sentence in sentences:
        sentence.features = cheap_features(asked, words, sentence, index.bm25.idf, cited)
    focus_features(words, sentences)
    return asked, sentences


def compose(
    question: str,
    query_vector: np.ndarray,
    candidates: list[Candidate],
    index: LoadedIndex,
    settings: Settings,
    cache: SentenceCache,
    reader: Reader,
    period: tuple[date, date] | None = None,
    context: str = "",
    cited: frozenset[str] = frozenset(),
) -> Composed:
    asked, sentences = prepare(
        index, question, query_vector, candidates, settings, cache, period, context=context, cited=cited
    )
    if not sentences:
        return Composed([], [], related_articles(index, candidates), True, 0.0)
    ranked = reader.read(asked, sentences)
    best = ranked[0]
    confidence, coverage, dense = best.score, best.passage_coverage, best.features.get("dense", 0.0)
    if confidence < settings.abstain_threshold:
        return Composed(
            [], [], related_articles(index, candidates), True, best.score, confidence, coverage, dense, None, asked.kind
        )

    chosen: list[CandidateSentence] = []
    chosen_words: list[set[str]] = []
    for sentence in ranked:
        if (
            len(chosen) >= settings.answer_max_sentences
            or sentence.score < best.score * settings.answer_relative_cutoff
        ):
            break
        sentence_words = content_words(sentence.text)
        if any(_jaccard(sentence_words, other) > 0.6 for other in chosen_words):
            continue  # a near-duplicate of a chosen sentence (often the same wire copy in two articles)
        chosen.append(sentence)
        chosen_words.append(sentence_words)
    span = short_answer(asked, chosen)

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
    short = None
    if span is not None:
        short = ShortAnswer(
            text=span.text,
            source=number[span.article_id],
            article_id=span.article_id,
            start=span.start,
            end=span.end,
            kind=span.kind,
        )
    return Composed(answer, sources, [], False, best.score, confidence, coverage, dense, short, asked.kind)


def evidence_coverage(index: LoadedIndex, wanted: set[str], chunk_id: int) -> float:
    """How much of the question the passage speaks to: the idf-weighted share of the question's words
    (stemmed, stopwords removed) that occur in the passage or its article's title. A passage that matches
    the topic but misses the question's rare words ("GDP", "press conference") scores low."""
    if not wanted:
        return 0.0
    chunk = index.chunks[chunk_id]
    present = content_words(f"{index.articles[chunk.article_id].title}\n{chunk.text}")
    weights = {token: index.bm25.idf(token) for token in wanted}
    total = sum(weights.values())
    return sum(w for token, w in weights.items() if token in present) / total if total else 0.0


def _source(index: LoadedIndex, n: int, sentence: CandidateSentence) -> Source:
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


def _add_quote(index: LoadedIndex, source: Source, sentence: CandidateSentence) -> None:
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
