"""``/v1/search`` (ranked passages) and ``/v1/articles`` (the indexed articles' metadata and text)."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import HTTPException, Path, Query
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from index.models import Span, is_safe_id
from index.reader import LoadedIndex
from service.answering.schemas import ErrorResponse, Filters, IsoDate, SearchResponse, Text
from service.web.deps import EngineDep, IndexDep, SettingsDep, check_question
from service.web.routes.v1 import v1_router


class ArticleSummary(BaseModel):
    id: str
    title: str
    url: str | None = None
    authors: list[str] = Field(default_factory=list)
    published: date | None = None
    source: str | None = None
    section: str | None = None
    chunks: int = Field(description="Passages this article is split into.")


class ArticlePage(BaseModel):
    total: int = Field(description="Articles matching the filters.")
    offset: int
    limit: int
    items: list[ArticleSummary]
    index_version: str


class ArticleDetail(ArticleSummary):
    text: str = Field(description="The cleaned article text; every span of the API indexes into it.")
    captions: list[Span] = Field(default_factory=list, description="Spans of photo captions in `text`.")
    index_version: str


router = v1_router()
SAFE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"  # index.models.is_safe_id, in the OpenAPI schema


@router.get("/search", response_model=SearchResponse, tags=["search"], summary="Ranked passages for a query")
async def search(
    engine: EngineDep,
    settings: SettingsDep,
    q: Annotated[Text, Query(min_length=1, max_length=2000, description="The query.")],
    k: Annotated[int, Query(ge=1, le=100, description="Passages to return.")] = 10,
    source: Annotated[
        list[Text] | None, Query(max_length=20, description="Publication(s), e.g. cnn.com; repeatable (up to 20).")
    ] = None,
    author: Annotated[
        list[Text] | None, Query(max_length=20, description="Author name(s), substring match; repeatable (up to 20).")
    ] = None,
    date_from: Annotated[IsoDate | None, Query(description="Published on or after (YYYY-MM-DD).")] = None,
    date_to: Annotated[IsoDate | None, Query(description="Published on or before (YYYY-MM-DD).")] = None,
    as_of: Annotated[IsoDate | None, Query(description="The moment of the query (default today).")] = None,
) -> SearchResponse:
    check_question(q, settings)
    if date_from and date_to and date_from > date_to:
        raise HTTPException(422, detail="date_from: after date_to")
    filters = Filters(sources=source or None, authors=author or None, date_from=date_from, date_to=date_to)
    return await run_in_threadpool(engine.search, q, k, filters, as_of)


@router.get("/articles", response_model=ArticlePage, tags=["articles"], summary="Indexed articles (metadata)")
async def list_articles(
    index: IndexDep,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    source: Annotated[str | None, Query(max_length=200, description="Only this publication.")] = None,
    author: Annotated[str | None, Query(max_length=200, description="Author name, substring match.")] = None,
    q: Annotated[str | None, Query(max_length=200, description="Words in the title.")] = None,
    date_from: Annotated[IsoDate | None, Query()] = None,
    date_to: Annotated[IsoDate | None, Query()] = None,
) -> ArticlePage:
    return await run_in_threadpool(_article_page, index, offset, limit, source, author, q, date_from, date_to)


@router.get(
    "/articles/{article_id}",
    response_model=ArticleDetail,
    tags=["articles"],
    summary="One article: metadata, cleaned text and caption spans",
    responses={404: {"model": ErrorResponse}},
)
async def get_article(
    article_id: Annotated[str, Path(pattern=SAFE_ID_PATTERN, description="An article id.")], index: IndexDep
) -> ArticleDetail:
    if not is_safe_id(article_id):
        raise HTTPException(422, detail="article_id: not a valid article id")
    article = await run_in_threadpool(index.article_with_text, article_id)
    if article is None:
        raise HTTPException(404, detail=f"no article {article_id!r}")
    return ArticleDetail(
        **_summary(index, article.id).model_dump(),
        text=article.text,
        captions=article.captions,
        index_version=index.version,
    )


def _summary(index: LoadedIndex, article_id: str) -> ArticleSummary:
    article = index.articles[article_id]
    return ArticleSummary(
        id=article.id,
        title=article.title,
        url=article.url,
        authors=article.authors,
        published=article.published,
        source=article.source,
        section=article.section,
        chunks=len(index.chunks_of(article.id)),
    )


def _article_page(
    index: LoadedIndex,
    offset: int,
    limit: int,
    source: str | None,
    author: str | None,
    q: str | None,
    date_from: date | None,
    date_to: date | None,
) -> ArticlePage:
    wanted_source = source.lower().removeprefix("www.") if source else None
    words = q.lower().split() if q else []
    matching = []
    for article in index.articles.values():
        if wanted_source and (article.source or "").lower().removeprefix("www.") != wanted_source:
            continue
        if author and not any(author.lower() in a.lower() for a in article.authors):
            continue
        if words and not all(w in article.title.lower() for w in words):
            continue
        if (date_from or date_to) and article.published is None:
            continue
        if date_from and article.published and article.published < date_from:
            continue
        if date_to and article.published and article.published > date_to:
            continue
        matching.append(article)
    # newest first; undated last; then by title for a stable order
    matching.sort(key=lambda a: (a.published is None, -(a.published.toordinal() if a.published else 0), a.title, a.id))
    items = [_summary(index, a.id) for a in matching[offset : offset + limit]]
    return ArticlePage(total=len(matching), offset=offset, limit=limit, items=items, index_version=index.version)
