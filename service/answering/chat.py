"""Conversations over the engine: resolve a follow-up, answer it, and remember the turn."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from index.reader import LoadedIndex
from index.settings import Settings
from service.answering.conversations import (
    DEFAULT_PAGE_SIZE,
    Conversation,
    ConversationFull,
    ConversationNotFound,
    ConversationStore,
    history_tokens,
    new_conversation_id,
)
from service.answering.engine import Engine
from service.answering.followup import FollowupResolver, HistoryTurn, Resolution
from service.answering.schemas import Answer, AskRequest, ChatAnswer, ChatRequest

SOURCES_FOOTER = "Sources:"
_FOOTER_LINE = re.compile(r"^\[(\d+)\]\s+(?P<title>.+?)(?:\s+\u2014\s+.*)?$")
_URL = re.compile(r"https?://\S+")


@dataclass(frozen=True)
class PreparedTurn:
    """A turn whose question has been resolved but not yet answered."""

    conversation_id: str
    new: bool
    resolution: Resolution
    request: AskRequest
    owner: str | None = None


class ChatService:
    def __init__(
        self,
        engine: Engine,
        store: ConversationStore,
        resolver: FollowupResolver | None = None,
        settings: Settings | None = None,
    ) -> None:
        self.engine = engine
        self.store = store
        self.resolver = resolver or FollowupResolver()
        self.settings = settings or engine.settings

    # --- one turn ---
    def prepare(self, request: ChatRequest, owner: str | None = None) -> PreparedTurn:
        """Check the conversation and resolve the question. Raises ConversationNotFound for an unknown id (or
        another owner's, or an expired one) and ConversationFull when it has no room for another turn."""
        if request.conversation_id is None:
            conversation_id, new, history = new_conversation_id(), True, []
        else:
            conversation_id, new = request.conversation_id, False
            self.store.check_room(conversation_id, owner=owner)
            history = self.store.recent_history(conversation_id, self.settings.history_max_tokens, owner=owner)
        resolution = self.resolver.resolve(request.question, history)
        ask = AskRequest(question=request.question, k=request.k, filters=request.filters, as_of=request.as_of)
        return PreparedTurn(conversation_id, new, resolution, ask, owner)

    def complete(self, prepared: PreparedTurn) -> ChatAnswer:
        """Answer a prepared turn and store it (one transaction)."""
        answer = self.engine.ask(
            prepared.request,
            standalone=prepared.resolution.standalone,
            prefer_articles=prepared.resolution.prefer_articles or None,
        )
        turn = self.store.add_turn(
            prepared.conversation_id,
            prepared.request.question,
            answer.standalone_question,
            answer,
            create=prepared.new,
            owner=prepared.owner,
        )
        return ChatAnswer(**answer.model_dump(), conversation_id=prepared.conversation_id, turn=turn)

    def chat(self, request: ChatRequest, owner: str | None = None) -> ChatAnswer:
        return self.complete(self.prepare(request, owner))

    # --- history ---
    def history(
        self, conversation_id: str, owner: str | None = None, offset: int = 0, limit: int = DEFAULT_PAGE_SIZE
    ) -> Conversation:
        """One page of the conversation's turns (only that page is read)."""
        return self.store.get(conversation_id, owner=owner, offset=offset, limit=limit)

    def delete(self, conversation_id: str, owner: str | None = None) -> None:
        self.store.delete(conversation_id, owner=owner)

    # --- stateless conversations (the OpenAI-compatible endpoint keeps its history in the request) ---
    def resolve_messages(self, question: str, earlier: Sequence[tuple[str, str]], index: LoadedIndex) -> Resolution:
        """Resolve ``question`` against earlier (user, assistant) exchanges given by the client."""
        history = history_from_messages(earlier, index, self.resolver)
        bounded: list[HistoryTurn] = []
        used = 0
        for turn in reversed(history):
            cost = history_tokens(turn)
            if bounded and used + cost > self.settings.history_max_tokens:
                break
            bounded.append(turn)
            used += cost
        bounded.reverse()
        return self.resolver.resolve(question, bounded)

    def answer_messages(self, request: AskRequest, earlier: Sequence[tuple[str, str]]) -> Answer:
        resolution = self.resolve_messages(request.question, earlier, self.engine.index)
        return self.engine.ask(
            request, standalone=resolution.standalone, prefer_articles=resolution.prefer_articles or None
        )


def history_from_messages(
    earlier: Sequence[tuple[str, str]], index: LoadedIndex, resolver: FollowupResolver
) -> list[HistoryTurn]:
    """History turns from a client's transcript: each user message resolved in turn, cited articles read back
    from the assistant's "Sources:" footer (by URL, else by title)."""
    by_url = {a.url: a.id for a in index.articles.values() if a.url}
    by_title: dict[str, str] = {}
    for article in index.articles.values():
        by_title.setdefault(article.title.strip().lower(), article.id)
    turns: list[HistoryTurn] = []
    for question, reply in earlier:
        body, _, footer = reply.partition(f"\n{SOURCES_FOOTER}")
        cited: list[str] = []
        for line in footer.splitlines():
            line = line.strip()
            match = _FOOTER_LINE.match(line)
            if not match:
                continue
            article_id = next((by_url[u] for u in _URL.findall(line) if u in by_url), None)
            article_id = article_id or by_title.get(match.group("title").strip().lower())
            if article_id and article_id not in cited:
                cited.append(article_id)
        standalone = resolver.resolve(question, turns).standalone if turns else question
        turns.append(
            HistoryTurn(
                question=question,
                standalone=standalone,
                answer_text=body.strip(),
                quotes=(),
                cited_article_ids=tuple(cited),
            )
        )
    return turns


def sources_footer(answer: Answer) -> str:
    """The plain-text list of sources appended to an answer for clients that only show text."""
    if not answer.sources:
        return ""
    lines = [SOURCES_FOOTER]
    for source in answer.sources:
        details = ", ".join(p for p in (source.source, source.published.isoformat() if source.published else None) if p)
        line = f"[{source.n}] {source.title}"
        if details:
            line += f" \u2014 {details}"
        if source.url:
            line += f" \u2014 {source.url}"
        lines.append(line)
    return "\n".join(lines)


__all__ = [
    "ChatService",
    "ConversationFull",
    "ConversationNotFound",
    "PreparedTurn",
    "history_from_messages",
    "sources_footer",
]
