"""Conversations over the engine: resolve a follow-up, answer it, and remember the turn."""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from index.reader import LoadedIndex
from index.settings import Settings
from index.tokens import count_tokens
from service.answering import followup
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
from service.answering.followup_llm import make_rewriter
from service.answering.schemas import Answer, AskRequest, ChatAnswer, ChatRequest

SOURCES_FOOTER = "Sources:"
_FOOTER_LINE = re.compile(r"^\[(\d+)\]\s+(?P<title>.+?)(?:\s+\u2014\s+.*)?$")
_URL = re.compile(r"https?://\S+")
_SHORT_ANSWER = re.compile(r"Answer: (.+?)(?: \[\d+\])?\n")  # the first line of a completion
HISTORY_MAX_TOKENS = 2000  # settings.history_max_tokens' default
HISTORY_MAX_TURNS = 20  # as many earlier turns as a stored conversation's recent history
MAX_FOOTER_LINES = 50  # sources read back from one assistant message
_MAX_TEXT_CHARS = 8000  # of one earlier message: more is never needed to resolve a follow-up


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
        self.settings = settings or engine.settings
        self.resolver = resolver or FollowupResolver(rewriter=make_rewriter(self.settings))
        threading.Thread(target=followup.warm, name="followup-warm", daemon=True).start()  # spaCy, ~1 s

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
        answer = self._ask(prepared.request, prepared.resolution)
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
        history = history_from_messages(earlier, index, self.resolver, self.settings.history_max_tokens)
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
        return self._ask(request, self.resolve_messages(request.question, earlier, self.engine.index))

    def _ask(self, request: AskRequest, resolution: Resolution) -> Answer:
        """Answer the resolved question; the earlier turns' questions join the search where the rewrite is unsure,
        and the reader's coverage of every follow-up, whose reader also favours the articles they cited."""
        answer = self.engine.ask(
            request,
            standalone=resolution.standalone,
            prefer_articles=resolution.prefer_articles or None,
            context=resolution.context or None,
            conversation=resolution.conversation,
            cited=resolution.cited,
        )
        return answer.model_copy(update={"assumed": resolution.assumed}) if resolution.assumed else answer


def history_from_messages(
    earlier: Sequence[tuple[str, str]],
    index: LoadedIndex,
    resolver: FollowupResolver,
    max_tokens: int = HISTORY_MAX_TOKENS,
    max_turns: int = HISTORY_MAX_TURNS,
) -> list[HistoryTurn]:
    """History turns from a client's transcript, for resolving its last question.

    The budget comes first: only the most recent exchanges that fit in ``max_tokens`` (counted on the raw
    question and reply, each cut to ``_MAX_TEXT_CHARS`` characters) and ``max_turns`` are read at all, the
    newest one always. Each kept user message is then resolved against the kept turns before it, and the
    articles it cited are read back from the assistant's "Sources:" footer (by URL, else by title). So a
    200-message, 110 KB transcript costs about what a short one does."""
    kept: list[tuple[str, str, str]] = []  # (question, answer body, footer), newest first
    used = 0
    for question, reply in reversed(earlier):
        if len(kept) >= max_turns:
            break
        question = question[:_MAX_TEXT_CHARS]
        body, _, footer = reply[: 4 * _MAX_TEXT_CHARS].partition(f"\n{SOURCES_FOOTER}")
        body = body[:_MAX_TEXT_CHARS].strip()
        cost = count_tokens(f"{question}\n{body}")
        if kept and used + cost > max_tokens:
            break
        kept.append((question, body, footer))
        used += cost
    kept.reverse()
    lookup = _ArticleLookup(index) if any(footer for _, _, footer in kept) else None
    turns: list[HistoryTurn] = []
    for question, body, footer in kept:
        cited = lookup.cited(footer) if lookup and footer else []
        standalone = resolver.resolve(question, turns).standalone if turns else question
        turns.append(
            HistoryTurn(
                question=question,
                standalone=standalone,
                answer_text=body,
                quotes=(),
                cited_article_ids=tuple(cited),
                short_answer=short.group(1) if (short := _SHORT_ANSWER.match(body)) else "",
            )
        )
    return turns


class _ArticleLookup:
    """Article ids by URL and by title, to read a "Sources:" footer back."""

    def __init__(self, index: LoadedIndex) -> None:
        self.by_url = {a.url: a.id for a in index.articles.values() if a.url}
        self.by_title: dict[str, str] = {}
        for article in index.articles.values():
            self.by_title.setdefault(article.title.strip().lower(), article.id)

    def cited(self, footer: str) -> list[str]:
        cited: list[str] = []
        for line in footer.splitlines()[:MAX_FOOTER_LINES]:
            line = line.strip()
            match = _FOOTER_LINE.match(line)
            if not match:
                continue
            article_id = next((self.by_url[u] for u in _URL.findall(line) if u in self.by_url), None)
            article_id = article_id or self.by_title.get(match.group("title").strip().lower())
            if article_id and article_id not in cited:
                cited.append(article_id)
        return cited


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
