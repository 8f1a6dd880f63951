"""Shared fixtures: real encoder, real indexes built by the real ingest job (once per session)."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from service.answering.reading.base import CandidateSentence, Question
    from service.answering.schemas import Answer

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SEED_DIR = SHARED / "corpus" / "seed"
SEED_FILE = SEED_DIR / "armenia-and-russia-its-complicated.txt"
NEWS = SHARED / "corpus" / "news-2023q4.jsonl"
REALTIMEQA = SHARED / "eval" / "realtimeqa-dev.jsonl"
SAMPLES = ROOT / "samples"
SEED_QUESTION = "Why does Pashinyan say Russia failed Armenia?"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is not present")
    return path


@pytest.fixture(scope="session")
def encoder():
    from index.encoder import get_encoder

    return get_encoder()


@pytest.fixture(scope="session")
def settings():
    from index.settings import get_settings

    return get_settings()


@pytest.fixture(scope="session")
def sample_index(tmp_path_factory: pytest.TempPathFactory, encoder) -> Path:
    """An index of the project's own sample articles (always available)."""
    from ingest.job import run_ingest

    root = tmp_path_factory.mktemp("sample-index")
    run_ingest([SAMPLES], index_root=root, encoder=encoder, progress=False)
    return root


@pytest.fixture(scope="session")
def seed_index(tmp_path_factory: pytest.TempPathFactory, encoder) -> Path:
    """An index of the seed article plus the project's samples (skipped when ../shared is absent)."""
    from ingest.job import run_ingest

    need(SEED_FILE)
    root = tmp_path_factory.mktemp("seed-index")
    run_ingest([SEED_DIR, SAMPLES], index_root=root, encoder=encoder, progress=False)
    return root


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server (tests/pg_server.py) for the session; skipped when PostgreSQL or psycopg is absent."""
    from pg_server import PostgresServer, find_postgres_bin

    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install -e '.[postgres]')")
    pytest.importorskip("psycopg_pool", reason="psycopg_pool is not installed (pip install -e '.[postgres]')")
    bin_dir, reason = find_postgres_bin()
    if bin_dir is None:
        pytest.skip(reason)
    server = PostgresServer(bin_dir).start()
    yield server
    server.stop()


def make_answer(question: str, text: str = "An answer. [1]", article_id: str = "a1", quote: str = "A quote.") -> Answer:
    """A small stored answer with one cited quote, for conversation-store tests."""
    from datetime import date

    from service.answering.schemas import Answer, Quote, Source

    return Answer(
        question=question,
        standalone_question=question,
        answer=text,
        sources=[
            Source(
                n=1,
                article_id=article_id,
                chunk_id=1,
                title="A title",
                quotes=[Quote(text=quote, start=5, end=5 + len(quote))],
                passage=quote,
                passage_start=5,
                passage_end=5 + len(quote),
            )
        ],
        as_of=date(2024, 1, 1),
        index_version="v1",
    )


def small_llm_missing() -> str | None:
    """Why the 0.5B Qwen cannot run here (llama-cpp-python or its part wheels missing), or None."""
    import importlib.util

    from index.settings import get_settings
    from service.answering.reading.llm_model import missing_parts

    if importlib.util.find_spec("llama_cpp") is None:
        return "llama-cpp-python is not installed (make .venv/.llm-installed)"
    joined = get_settings().cache_dir / "llm" / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
    if not joined.exists() and missing_parts("0.5b"):
        return f"the 0.5B model's part wheels are not installed (missing parts {missing_parts('0.5b')})"
    return None


needs_small_llm = pytest.mark.skipif(small_llm_missing() is not None, reason=str(small_llm_missing()))


def reader_question(text: str) -> Question:
    """A reader's Question for ``text`` (its kind from the wh-words; a zero vector)."""
    import numpy as np

    from service.answering.reading.base import Question
    from service.answering.reading.kinds import question_kind

    return Question(text, np.zeros(384, dtype=np.float32), question_kind(text))


def reader_candidates(question: Question, texts: list[str]) -> list[CandidateSentence]:
    """Candidate sentences of one article, in rank order, with their cheap features (every word weighing 1)."""
    from service.answering.reading.base import CandidateSentence
    from service.answering.reading.features import cheap_features, content_words

    out, position, words = [], 0, content_words(question.text)
    for rank, text in enumerate(texts, start=1):
        c = CandidateSentence("a", 0, position, position + len(text), text, rank, rank - 1)
        c.features = cheap_features(question, words, c, lambda _w: 1.0)
        out.append(c)
        position += len(text) + 1
    return out


@contextmanager
def running_server(app: object) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a thread on a free loopback port; yield its base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
