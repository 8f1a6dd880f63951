"""The answer engine as a library call: question -> retrieval -> cited answer (or abstention).

The engine holds one loaded index version at a time and swaps in a newly published one atomically
(``reload_if_changed``); a request takes one reference to the version it uses, so no answer mixes two.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import date
from pathlib import Path
from typing import Literal

import numpy as np

from index.encoder import Encoder, get_encoder
from index.manifest import EmbeddingInfo, IndexError_
from index.publish import current_version
from index.reader import LoadedIndex, load_index
from index.settings import Settings, get_settings
from service.answering import query as query_parsing
from service.answering.answer import compose, validate_markers
from service.answering.generate import GenerationError, Generator
from service.answering.reading import entities, make_reader
from service.answering.rerank import make_reranker
from service.answering.retrieval import Candidate, Preferences, RetrievalFilters, Retriever
from service.answering.schemas import Answer, AskRequest, Filters, Passage, SearchResponse, Timings
from service.answering.sentence_cache import SentenceEmbeddingCache

log = logging.getLogger("byline.engine")


class Engine:
    def __init__(
        self, settings: Settings | None = None, index_root: Path | None = None, encoder: Encoder | None = None
    ) -> None:
        self.settings = settings or get_settings()
        self.root = Path(index_root or self.settings.index_dir)
        self.encoder = encoder or get_encoder()
        self.sentence_cache = SentenceEmbeddingCache(self.encoder)
        self.retriever = Retriever(self.settings, reranker=make_reranker(self.settings, self.sentence_cache))
        self.reader = make_reader(self.settings.reader, self.settings.reader_dir, self.settings)
        self.generator = Generator(self.settings, self.encoder)  # used only when settings.llm_base_url is set
        self._lock = threading.Lock()
        self._index = self._load(verify=True)
        self.last_reload_error: str | None = None

    # --- index versions ---
    def _load(self, verify: bool) -> LoadedIndex:
        index = load_index(self.root, verify=verify)
        errors = index.manifest.compatibility_errors(EmbeddingInfo(**self.encoder.info.__dict__), None)
        if errors:
            index.close()
            raise IndexError_(f"the index at {self.root} cannot be used by this code: {'; '.join(errors)}")
        return index

    def warm_reader(self) -> None:
        """Load what the reading stage loads lazily (spaCy's pipeline), so no question waits for it."""
        entities.warm()

    @property
    def index(self) -> LoadedIndex:
        return self._index

    def reload_if_changed(self) -> bool:
        """Load a newly published version, if any; on any error keep serving the current one."""
        try:
            published = current_version(self.root)
        except OSError as exc:
            self.last_reload_error = str(exc)
            return False
        if published is None or published == self._index.version:
            return False
        try:
            fresh = self._load(verify=True)
        except (IndexError_, OSError, RuntimeError) as exc:
            if self.last_reload_error != str(exc):
                log.error("keeping index version %s: %s", self._index.version, exc)
            self.last_reload_error = str(exc)
            return False
        self._warm(fresh)
        with self._lock:
            self._index = fresh  # the old version stays alive for requests that still hold it
        self.last_reload_error = None
        log.info("loaded index version %s", fresh.version)
        return True

    def _warm(self, index: LoadedIndex) -> None:
        """One search on a version before it serves (default filters, today's ``as_of``, the newest article's title
        as the query), so its filter cache, memory maps and stores are hot for the first request. Caches keyed by
        content (sentence vectors, entities) carry over by themselves. A failure only logs: the switch goes on."""
        if not index.articles:
            return
        started = time.perf_counter()
        newest = max(index.articles.values(), key=lambda a: (a.published or date.min, a.id))
        try:
            self._retrieve(index, newest.title, 10, Filters(), date.today(), None)
        except Exception:  # noqa: BLE001 - warming is best effort; the version loaded and verified fine
            log.exception("warming index version %s failed", index.version)
            return
        log.info("warmed index version %s in %.0f ms", index.version, (time.perf_counter() - started) * 1000)

    # --- the library interface ---
    def _preferences(
        self, question: str, given: Filters, as_of: date, index: LoadedIndex, prefer_articles: list[str] | None
    ) -> tuple[Preferences, Filters]:
        """What the question says about publication and time, as ranking preferences (explicit filters win)."""
        sources: list[str] = []
        if not given.sources:
            known = sorted({a.source for a in index.articles.values() if a.source})
            sources = query_parsing.parse_sources(question, known)
        span = None if (given.date_from or given.date_to) else query_parsing.parse_time(question, as_of)
        dated = span is not None and not span.recency
        prefs = Preferences(
            sources=frozenset(sources),
            date_from=span.start if dated else None,
            date_to=span.end if dated else None,
            recency=span is not None and span.recency,
            articles=frozenset(prefer_articles or []),
        )
        shown = Filters(sources=sources or None, date_from=prefs.date_from, date_to=prefs.date_to)
        return prefs, shown

    def _retrieve(
        self,
        index: LoadedIndex,
        question: str,
        k: int,
        filters: Filters,
        as_of: date,
        prefer_articles: list[str] | None,
        context: str | None = None,
    ) -> tuple[list[Candidate], Filters, np.ndarray]:
        query_vector = self.encoder.embed_query(question)
        prefs, shown = self._preferences(question, filters, as_of, index, prefer_articles)
        hard = RetrievalFilters(
            sources=filters.sources, authors=filters.authors, date_from=filters.date_from, date_to=filters.date_to
        )
        search_text, search_vector, read_vector = question, query_vector, query_vector
        if context:  # a conversation's earlier questions: in the search, and a little in the reader's cosine
            search_text = f"{question} {context}"
            context_vector = self.encoder.embed_query(context)
            search_vector = _mix(query_vector, context_vector, self.settings.followup_context_weight)
            read_vector = _mix(query_vector, context_vector, self.settings.followup_read_context_weight)
        candidates = self.retriever.retrieve(index, search_text, search_vector, k, hard, as_of, prefs)
        return candidates, shown, read_vector

    def ask(
        self,
        request: AskRequest,
        standalone: str | None = None,
        prefer_articles: list[str] | None = None,
        context: str | None = None,
        conversation: str = "",
        cited: list[str] | None = None,
    ) -> Answer:
        """``standalone``: the resolved question (searched and read); ``context``: earlier questions of the
        conversation, added to the search and, at ``followup_read_context_weight``, to the question vector of the
        reader's cosine (its word overlap stays the question's own); ``prefer_articles``: articles cited earlier,
        favoured; ``conversation``: a follow-up's earlier questions, counted in a passage's coverage; ``cited``: the
        articles its recent turns cited, whose sentences the reader favours a little."""
        started = time.perf_counter()
        index = self._index  # one version for the whole request
        as_of = request.as_of or date.today()
        question = (standalone or request.question).strip()
        candidates, preferences, query_vector = self._retrieve(
            index, question, request.k, request.filters, as_of, prefer_articles, context
        )
        retrieved = time.perf_counter()
        period = (preferences.date_from, preferences.date_to) if preferences.date_from and preferences.date_to else None
        composed = compose(
            question,
            query_vector,
            candidates,
            index,
            self.settings,
            self.sentence_cache,
            self.reader,
            period,
            conversation or context or "",
            frozenset(cited or ()),
        )
        text = validate_markers(composed.text, len(composed.sources))
        sentences = composed.sentences
        mode: Literal["extractive", "generated"] = "extractive"
        fallback_reason: str | None = None
        if self.settings.llm_base_url:  # a language model rewrites the answer; on any failure keep the extractive one
            try:
                generated = self.generator.generate(question, composed)
                text = validate_markers(generated.text, len(composed.sources))
                sentences, mode = generated.sentences, "generated"
            except GenerationError as exc:
                fallback_reason = str(exc)
                log.info("extractive answer kept: %s", exc)
        done = time.perf_counter()
        return Answer(
            question=request.question,
            standalone_question=question,
            answer=text,
            short_answer=composed.short_answer if mode == "extractive" else None,
            sentences=sentences,
            sources=composed.sources,
            related=composed.related,
            passages=_passages(index, candidates),
            abstained=composed.abstained,
            confidence=round(composed.confidence, 4),
            signals={
                "reader_score": round(composed.confidence, 4),
                "best_sentence_cosine": round(composed.best_dense, 4),
                "coverage": round(composed.coverage, 4),
            },
            mode=mode,
            reader=self.reader.name,
            fallback_reason=fallback_reason,
            as_of=as_of,
            filters=request.filters,
            preferences=preferences,
            index_version=index.version,
            timings=Timings(
                retrieval_ms=round((retrieved - started) * 1000, 2),
                answer_ms=round((done - retrieved) * 1000, 2),
                total_ms=round((done - started) * 1000, 2),
            ),
        )

    def search(
        self, query: str, k: int = 10, filters: Filters | None = None, as_of: date | None = None
    ) -> SearchResponse:
        started = time.perf_counter()
        index = self._index
        as_of = as_of or date.today()
        filters = filters or Filters()
        candidates, preferences, _ = self._retrieve(index, query, k, filters, as_of, None)
        elapsed = round((time.perf_counter() - started) * 1000, 2)
        return SearchResponse(
            query=query,
            as_of=as_of,
            filters=filters,
            preferences=preferences,
            passages=_passages(index, candidates),
            index_version=index.version,
            timings=Timings(retrieval_ms=elapsed, total_ms=elapsed),
        )


def _passages(index: LoadedIndex, candidates: list[Candidate]) -> list[Passage]:
    out = []
    for rank, cand in enumerate(candidates, start=1):
        chunk = index.chunks[cand.chunk_id]
        article = index.articles[chunk.article_id]
        out.append(
            Passage(
                rank=rank,
                chunk_id=chunk.id,
                article_id=article.id,
                title=article.title,
                url=article.url,
                source=article.source,
                published=article.published,
                text=chunk.text,
                start=chunk.start,
                end=chunk.end,
                score=round(cand.score, 6),
                dense_score=cand.dense_score,
                bm25_score=cand.bm25_score,
            )
        )
    return out


def _mix(question: np.ndarray, context: np.ndarray, weight: float) -> np.ndarray:
    """The unit vector of ``question + weight * context`` (``question`` itself at weight 0)."""
    if weight <= 0:
        return question
    mixed = question + weight * context
    return (mixed / max(float(np.linalg.norm(mixed)), 1e-9)).astype(question.dtype)
