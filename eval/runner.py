"""Run a question file against Byline and write ``report.json``, ``report.md`` and ``report.png``.

Two ways to reach the system, both through its public interface:

* in-process (``InProcessBackend``): an ``Engine`` and a ``ChatService`` over an index directory;
* over HTTP (``HttpBackend``): ``POST /v1/ask``, ``POST /v1/chat`` and ``GET /v1/articles/{id}`` only.

Each item is asked as a user would: the turns of a multi-turn item go through chat in one conversation;
a one-turn item goes through ask (or chat, with ``one_turn="chat"``). The item's ``date`` is sent as
``as_of``. Every follow-up that has a ``standalone`` form is also asked fresh (through ask) in that form,
to measure what the conversation costs retrieval (``followup_hits@5`` against ``standalone_hits@5``).

The short answer a factual answer leads with (``Answer.short_answer``, read from the API's JSON over HTTP) is
scored apart from the answer: ``short_answer_accuracy`` is the share right of the short answers there is
something to judge against (``metrics.short_answer_correct``), ``short_answer_coverage`` the share of the
right answers (on answerable questions) that led with a short answer at all.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, Field
from tqdm import tqdm

from eval import metrics
from eval.questions import QuestionItem, Turn, load_questions
from eval.report import REPORT_JSON, REPORT_MD, REPORT_PNG, plot, render_markdown, write_report  # noqa: F401 - re-exported
from service.answering.schemas import Answer, AskRequest, ChatAnswer, ChatRequest, Quote

FailureLabel = Literal["retrieval", "answer selection", "error"]
R = TypeVar("R", bound=AskRequest)
A = TypeVar("A", bound=Answer)


# ------------------------------------------------------------------------------------------ backends


class Backend(Protocol):
    target: str

    def ask(self, request: AskRequest) -> Answer: ...

    def chat(self, request: ChatRequest) -> ChatAnswer: ...

    def article_text(self, article_id: str) -> str | None: ...

    def close(self) -> None: ...


class InProcessBackend:
    """The engine and chat service in this process, over an index directory (``None``: the configured one)."""

    def __init__(self, index_root: Path | None = None, settings: Any = None, encoder: Any = None) -> None:
        from service.answering.chat import ChatService
        from service.answering.conversations import DB_NAME, SQLiteConversationStore
        from service.answering.engine import Engine

        self.engine = Engine(settings=settings, index_root=index_root, encoder=encoder)
        self.target = str(self.engine.root)
        # The run's conversations are its own: kept apart from the index's store, and removed afterwards.
        self._tmp = tempfile.TemporaryDirectory(prefix="byline-eval-")
        self.store = SQLiteConversationStore(Path(self._tmp.name) / DB_NAME)
        self.chat_service = ChatService(self.engine, self.store)

    def ask(self, request: AskRequest) -> Answer:
        return self.engine.ask(request)

    def chat(self, request: ChatRequest) -> ChatAnswer:
        return self.chat_service.chat(request)

    def article_text(self, article_id: str) -> str | None:
        return self.engine.index.article_text(article_id)

    def close(self) -> None:
        self.store.close()
        self._tmp.cleanup()


class HttpBackend:
    """A running service, through its public HTTP API only."""

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        timeout_s: float = 120.0,
        retries: int = 5,
        client: httpx.Client | None = None,
    ) -> None:
        """``client``: an already configured client (e.g. a test client of the app); ``url`` is then its name."""
        self.target = url.rstrip("/")
        self._own_client = client is None
        self.client = client or httpx.Client(base_url=self.target, timeout=timeout_s)
        if api_key:
            self.client.headers["X-API-Key"] = api_key
        self.retries = retries
        self._texts: dict[str, str | None] = {}
        self.versions: dict[str, None] = {}  # index versions the answers came from, in order of first use

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        for attempt in range(self.retries + 1):
            response = self.client.request(method, path, json=body)
            if response.status_code != 429 or attempt == self.retries:
                return response
            time.sleep(min(float(response.headers.get("Retry-After") or 2**attempt), 60.0))
        raise AssertionError("unreachable")

    def _post(self, path: str, request: AskRequest) -> dict[str, Any]:
        response = self._request("POST", path, request.model_dump(mode="json", exclude_none=True))
        if response.status_code != 200:
            raise RuntimeError(f"POST {path}: HTTP {response.status_code}: {response.text[:300]}")
        return response.json()

    def ask(self, request: AskRequest) -> Answer:
        return self._seen(Answer.model_validate(self._post("/v1/ask", request)))

    def chat(self, request: ChatRequest) -> ChatAnswer:
        return self._seen(ChatAnswer.model_validate(self._post("/v1/chat", request)))

    def _seen(self, answer: A) -> A:
        if answer.index_version:
            self.versions.setdefault(answer.index_version)
        return answer

    def index_version(self) -> str | None:
        """The index version(s) the answers came from (a reload mid-run gives several); without an answer,
        the one ``/readyz`` reports; None when neither says."""
        if self.versions:
            return ", ".join(self.versions)
        try:
            response = self._request("GET", "/readyz")
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        version = response.json().get("index_version")
        return version if isinstance(version, str) and version else None

    def article_text(self, article_id: str) -> str | None:
        if article_id not in self._texts:
            response = self._request("GET", f"/v1/articles/{article_id}")
            if response.status_code == 404:
                self._texts[article_id] = None
            elif response.status_code != 200:
                raise RuntimeError(f"GET /v1/articles/{article_id}: HTTP {response.status_code}")
            else:
                self._texts[article_id] = response.json().get("text")
        return self._texts[article_id]

    def close(self) -> None:
        if self._own_client:
            self.client.close()


# -------------------------------------------------------------------------------------- report format


class SourceRecord(BaseModel):
    n: int
    article_id: str
    chunk_id: int
    title: str
    quotes: list[Quote]
    supports: bool | None = Field(description="Quotes or passage contain an evidence or answer string.")


class PassageRecord(BaseModel):
    rank: int
    article_id: str
    chunk_id: int
    title: str
    score: float
    hit: bool
    text: str = Field(description="The passage's first characters.")


class StandaloneRecord(BaseModel):
    """The follow-up's standalone form, asked fresh."""

    question: str
    answer: str = ""
    abstained: bool = False
    first_hit_rank: int | None = None
    hit_at_5: float | None = None
    latency_ms: float | None = None
    error: str | None = None


class TurnRecord(BaseModel):
    turn: int = Field(description="1-based position in the conversation.")
    question: str
    expected_standalone: str | None = None
    searched: str | None = Field(default=None, description="The standalone question the system searched.")
    evidence: list[str] = Field(default_factory=list)
    answer_any: list[str] = Field(default_factory=list)
    answer: str = ""
    abstained: bool = False
    mode: str | None = None
    sources: list[SourceRecord] = Field(default_factory=list)
    passages: list[PassageRecord] = Field(default_factory=list)
    first_hit_rank: int | None = None
    hit_at_1: float | None = None
    hit_at_5: float | None = None
    hit_at_10: float | None = None
    reciprocal_rank: float | None = None
    answer_correct: bool | None = None
    short_answer: str | None = Field(default=None, description="The short answer's text, None without one.")
    short_answer_correct: bool | None = Field(
        default=None, description="None with nothing to judge (see metrics.short_answer_correct)."
    )
    citation_valid: bool | None = None
    citation_problems: list[str] = Field(default_factory=list)
    citation_support: float | None = None
    answer_supported: bool | None = None
    latency_ms: float | None = None
    standalone: StandaloneRecord | None = None
    failure: FailureLabel | None = None
    error: str | None = None


class ItemRecord(BaseModel):
    id: str
    unanswerable: bool
    date: dt.date | None = None
    conversation_id: str | None = None
    turns: list[TurnRecord]

    @property
    def failed(self) -> int:
        return sum(turn.failure is not None for turn in self.turns)


class Metrics(BaseModel):
    """One set of summary figures; fractions are 0..1 and null where the set has no such items."""

    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True, serialize_by_alias=True)

    n_items: int
    n_turns: int
    n_errors: int = 0
    n_abstained: int = 0
    hits_at_1: float | None = Field(default=None, alias="hits@1")
    hits_at_5: float | None = Field(default=None, alias="hits@5")
    hits_at_10: float | None = Field(default=None, alias="hits@10")
    mrr_at_10: float | None = Field(default=None, alias="mrr@10")
    answer_accuracy: float | None = None
    short_answer_accuracy: float | None = Field(
        default=None, description="Of the short answers there was something to judge against, the share right."
    )
    short_answer_coverage: float | None = Field(
        default=None,
        description="Of the right answers on answerable questions, the share that led with a short answer at all.",
    )
    answered_precision: float | None = Field(default=None, description="Of the answers given, the share right.")
    citation_validity: float | None = None
    citation_support: float | None = None
    citation_support_answerable: float | None = None
    answer_support: float | None = None
    abstention_precision: float | None = None
    abstention_recall: float | None = None
    followup_hits_at_5: float | None = Field(default=None, alias="followup_hits@5")
    standalone_hits_at_5: float | None = Field(default=None, alias="standalone_hits@5")
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None


class Summary(Metrics):
    groups: dict[str, Metrics] = Field(default_factory=dict, description="answerable, unanswerable, followup.")


class Report(BaseModel):
    questions: str
    target: str
    mode: Literal["in-process", "http"]
    k: int
    index_version: str | None = None
    started: dt.datetime
    seconds: float
    hits_curve: list[float] = Field(description="Hits@1..Hits@k over the answerable turns.")
    summary: Summary
    items: list[ItemRecord]


# ------------------------------------------------------------------------------------------- scoring


def retrieval_figures(turn: Turn, passages: Sequence[str], k: int) -> dict[str, Any]:
    """First-hit rank, Hits@1/5/10 and reciprocal rank of one turn's top-k passages; {} with nothing to find.

    Hits@n is left out (None) when fewer than n passages were asked for.
    """
    if not metrics.targets(turn.evidence, turn.answer_any):
        return {}
    rank = metrics.first_hit_rank(passages[:k], turn.evidence, turn.answer_any)
    figures: dict[str, Any] = {"first_hit_rank": rank, "reciprocal_rank": metrics.reciprocal_rank(rank, 10)}
    figures.update({f"hit_at_{n}": metrics.hit_at(rank, n) for n in (1, 5, 10) if k >= n})
    return figures


def score_turn(
    turn: Turn, position: int, unanswerable: bool, answer: Answer, k: int, article_text: metrics.ArticleText
) -> TurnRecord:
    """Every per-turn figure for one answer."""
    wanted = metrics.targets(turn.evidence, turn.answer_any)
    passages = answer.passages[:k]
    cited = metrics.cited_sources(answer.answer, answer.sources)
    check = metrics.check_citations(answer.answer, answer.sources, article_text, answer.abstained)
    expected = [*turn.evidence, *turn.answer_any]
    short = answer.short_answer.text if answer.short_answer is not None else None
    return TurnRecord(
        turn=position,
        question=turn.question,
        expected_standalone=turn.standalone,
        searched=answer.standalone_question,
        evidence=turn.evidence,
        answer_any=turn.answer_any,
        answer=answer.answer,
        abstained=answer.abstained,
        mode=answer.mode,
        sources=[
            SourceRecord(
                n=s.n,
                article_id=s.article_id,
                chunk_id=s.chunk_id,
                title=s.title,
                quotes=s.quotes,
                supports=metrics.source_supports(s, expected) if expected else None,
            )
            for s in answer.sources
        ],
        passages=[
            PassageRecord(
                rank=p.rank,
                article_id=p.article_id,
                chunk_id=p.chunk_id,
                title=p.title,
                score=p.score,
                hit=bool(wanted) and metrics.contains_any(p.text, wanted),
                text=p.text[:300],
            )
            for p in passages
        ],
        answer_correct=metrics.answer_correct(answer.answer, turn.answer_any, answer.abstained, unanswerable),
        short_answer=short,
        short_answer_correct=metrics.short_answer_correct(short, turn.answer_any, answer.abstained, unanswerable),
        citation_valid=check.valid,
        citation_problems=check.problems,
        citation_support=metrics.citation_support(cited, turn.evidence, turn.answer_any),
        answer_supported=metrics.answer_supported(cited, turn.evidence, turn.answer_any, answer.abstained),
        **retrieval_figures(turn, [p.text for p in passages], k),
    )


def failed_turn(turn: Turn, position: int, unanswerable: bool, k: int, error: str) -> TurnRecord:
    """A turn whose request failed: it retrieved nothing and answered nothing."""
    return TurnRecord(
        turn=position,
        question=turn.question,
        expected_standalone=turn.standalone,
        evidence=turn.evidence,
        answer_any=turn.answer_any,
        answer_correct=False if unanswerable or turn.answer_any else None,
        failure="error",
        error=error,
        **retrieval_figures(turn, [], k),
    )


def label_failure(record: TurnRecord, unanswerable: bool) -> FailureLabel | None:
    """Why a turn went wrong: nothing useful retrieved, or the answer/citations chosen from it were wrong."""
    if record.error:
        return "error"
    if unanswerable:
        return None if record.abstained else "answer selection"
    if record.answer_correct is False or record.citation_valid is False or record.answer_supported is False:
        return "retrieval" if record.hit_at_1 is not None and record.first_hit_rank is None else "answer selection"
    return None


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


def _timed(call: Callable[[R], A], request: R) -> tuple[A, float]:
    """The call's answer and its wall-clock time in milliseconds (what the user waits)."""
    started = time.perf_counter()
    answer = call(request)
    return answer, round((time.perf_counter() - started) * 1000, 2)


def run_item(item: QuestionItem, backend: Backend, k: int, one_turn: Literal["ask", "chat"] = "ask") -> ItemRecord:
    """Ask one item's turns as a user would and score every answer."""
    record = ItemRecord(id=item.id, unanswerable=item.unanswerable, date=item.date, turns=[])
    use_chat = item.is_conversation or one_turn == "chat"
    broken: str | None = None
    for position, turn in enumerate(item.turns, start=1):
        if broken is not None:
            record.turns.append(failed_turn(turn, position, item.unanswerable, k, f"not asked: {broken}"))
            continue
        try:
            if use_chat:
                request = ChatRequest(
                    question=turn.question, k=k, as_of=item.date, conversation_id=record.conversation_id
                )
                reply, latency = _timed(backend.chat, request)
                record.conversation_id = reply.conversation_id
                answer: Answer = reply
            else:
                answer, latency = _timed(backend.ask, AskRequest(question=turn.question, k=k, as_of=item.date))
            scored = score_turn(turn, position, item.unanswerable, answer, k, backend.article_text)
            scored.latency_ms = latency
        except httpx.ConnectError:
            raise  # the service is not there: nothing to evaluate
        except Exception as exc:  # noqa: BLE001 - one failed request must not end the run; it is reported
            broken = f"turn {position} failed"
            scored = failed_turn(turn, position, item.unanswerable, k, _describe(exc))
        if position > 1 and turn.standalone:
            scored.standalone = ask_standalone(turn, item.date, backend, k)
        scored.failure = label_failure(scored, item.unanswerable)
        record.turns.append(scored)
    return record


def ask_standalone(turn: Turn, as_of: dt.date | None, backend: Backend, k: int) -> StandaloneRecord:
    assert turn.standalone is not None
    try:
        answer, latency = _timed(backend.ask, AskRequest(question=turn.standalone, k=k, as_of=as_of))
    except Exception as exc:  # noqa: BLE001 - reported like a failed turn
        figures = retrieval_figures(turn, [], k)
        return StandaloneRecord(question=turn.standalone, error=_describe(exc), hit_at_5=figures.get("hit_at_5"))
    figures = retrieval_figures(turn, [p.text for p in answer.passages], k)
    return StandaloneRecord(
        question=turn.standalone,
        answer=answer.answer,
        abstained=answer.abstained,
        first_hit_rank=figures.get("first_hit_rank"),
        hit_at_5=figures.get("hit_at_5"),
        latency_ms=latency,
    )


# ------------------------------------------------------------------------------------------- summary


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def summarize(pairs: Sequence[tuple[ItemRecord, TurnRecord]]) -> Metrics:
    """Summary figures over (item, turn) pairs."""
    turns = [turn for _, turn in pairs]
    answered = [turn for turn in turns if turn.error is None]
    answerable = [turn for item, turn in pairs if not item.unanswerable]
    followups = [turn for turn in turns if turn.turn > 1]
    latencies = [turn.latency_ms for turn in answered if turn.latency_ms is not None]
    abstain = metrics.abstention([turn.abstained for turn in turns], [item.unanswerable for item, _ in pairs])
    figures = {
        "n_items": len({item.id for item, _ in pairs}),
        "n_turns": len(turns),
        "n_errors": len(turns) - len(answered),
        "n_abstained": sum(turn.abstained for turn in turns),
        "hits@1": metrics.mean(turn.hit_at_1 for turn in turns),
        "hits@5": metrics.mean(turn.hit_at_5 for turn in turns),
        "hits@10": metrics.mean(turn.hit_at_10 for turn in turns),
        "mrr@10": metrics.mean(turn.reciprocal_rank for turn in turns),
        "answer_accuracy": metrics.mean(turn.answer_correct for turn in turns),
        "short_answer_accuracy": metrics.mean(turn.short_answer_correct for turn in turns),
        "short_answer_coverage": metrics.short_answer_coverage(
            [turn.short_answer is not None for turn in turns],
            [turn.answer_correct for turn in turns],
            [item.unanswerable for item, _ in pairs],
        ),
        "answered_precision": metrics.answered_precision(
            [turn.answer_correct for turn in answered], [turn.abstained for turn in answered]
        ),
        "citation_validity": metrics.mean(turn.citation_valid for turn in turns),
        "citation_support": metrics.mean(turn.citation_support for turn in turns),
        "citation_support_answerable": metrics.mean(turn.citation_support for turn in answerable),
        "answer_support": metrics.mean(turn.answer_supported for turn in turns),
        "abstention_precision": abstain.precision,
        "abstention_recall": abstain.recall,
        "followup_hits@5": metrics.mean(turn.hit_at_5 for turn in followups),
        "standalone_hits@5": metrics.mean(turn.standalone.hit_at_5 for turn in followups if turn.standalone),
        "latency_p50_ms": metrics.percentile(latencies, 50),
        "latency_p95_ms": metrics.percentile(latencies, 95),
    }
    return Metrics.model_validate(
        {key: _round(value) if isinstance(value, float) else value for key, value in figures.items()}
    )


def summarize_items(items: Sequence[ItemRecord]) -> Summary:
    pairs = [(item, turn) for item in items for turn in item.turns]
    groups = {
        "answerable": [(item, turn) for item, turn in pairs if not item.unanswerable],
        "unanswerable": [(item, turn) for item, turn in pairs if item.unanswerable],
        "followup": [(item, turn) for item, turn in pairs if turn.turn > 1],
    }
    overall = summarize(pairs)
    return Summary(**overall.model_dump(by_alias=False), groups={name: summarize(g) for name, g in groups.items()})


def hits_curve(items: Sequence[ItemRecord], k: int) -> list[float]:
    ranks = [turn.first_hit_rank for item in items for turn in item.turns if turn.hit_at_1 is not None]
    return [round(value, 4) for value in metrics.hits_curve(ranks, k)]


# -------------------------------------------------------------------------------------------- running


def evaluate(
    items: Sequence[QuestionItem],
    backend: Backend,
    *,
    k: int = 10,
    questions: str = "<questions>",
    mode: Literal["in-process", "http"] = "in-process",
    one_turn: Literal["ask", "chat"] = "ask",
    progress: bool = True,
) -> Report:
    started = dt.datetime.now(dt.UTC)
    clock = time.perf_counter()
    records: list[ItemRecord] = []
    failed = 0
    with tqdm(items, desc="eval", unit="item", disable=not progress) as bar:
        for item in bar:
            record = run_item(item, backend, k, one_turn)
            records.append(record)
            failed += record.failed > 0
            bar.set_postfix(failed=failed)
    return Report(
        questions=questions,
        target=backend.target,
        mode=mode,
        k=k,
        index_version=_index_version(backend),
        started=started,
        seconds=round(time.perf_counter() - clock, 2),
        hits_curve=hits_curve(records, k),
        summary=summarize_items(records),
        items=records,
    )


def _index_version(backend: Backend) -> str | None:
    engine = getattr(backend, "engine", None)
    if engine is not None:
        return engine.index.version
    ask_service = getattr(backend, "index_version", None)
    return ask_service() if callable(ask_service) else None


def open_backend(
    *,
    index_root: Path | None = None,
    url: str | None = None,
    api_key: str | None = None,
    settings: Any = None,
    encoder: Any = None,
) -> Backend:
    """The service at ``url`` over HTTP, or the engine over ``index_root`` in this process."""
    return HttpBackend(url, api_key) if url else InProcessBackend(index_root, settings, encoder)


def run_eval(
    questions: Path,
    out_dir: Path,
    *,
    index_root: Path | None = None,
    url: str | None = None,
    k: int = 10,
    limit: int | None = None,
    one_turn: Literal["ask", "chat"] = "ask",
    api_key: str | None = None,
    settings: Any = None,
    encoder: Any = None,
    progress: bool = True,
    backend: Backend | None = None,
) -> Report:
    """Load, run and report: the whole of ``byline eval``. ``backend``: one already opened (``open_backend``)."""
    if backend is None:
        items = load_questions(questions)  # a bad file is reported before the index is loaded
        backend = open_backend(index_root=index_root, url=url, api_key=api_key, settings=settings, encoder=encoder)
    else:
        try:
            items = load_questions(questions)
        except BaseException:
            backend.close()
            raise
    if limit is not None:
        items = items[:limit]
    try:
        report = evaluate(
            items,
            backend,
            k=k,
            questions=str(questions),
            mode="http" if url else "in-process",
            one_turn=one_turn,
            progress=progress,
        )
    finally:
        backend.close()
    write_report(report, out_dir)
    return report
