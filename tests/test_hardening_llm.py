"""Issue 12 item 7: the language-model client has a total deadline and a maximum reply size, and falls back to
the extractive answer on either. The model server is a real local HTTP server started here (it stands in for an
outside one) that drips its reply a byte at a time or sends a huge one; the question goes through the real
Byline HTTP server and engine."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from conftest import running_server

from index.settings import Settings

SAMPLE_QUESTION = "How did the Millbrook council vote on the bike lanes?"
DEADLINE_S = 1.5
MAX_REPLY = 64 * 1024


class _ModelServer:
    """A raw-socket HTTP server: ``drip`` sends its headers, then one byte every 0.3 s (each read is quick, the
    whole reply would take minutes); ``huge`` streams 200 MB without a length; ``declared`` announces 100 MB."""

    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sent = 0
        self.closed_early = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"

    def _serve(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(30)
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, _, rest = data.partition(b"\r\n\r\n")
            length = int(
                next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
            )
            while len(rest) < length:
                rest += conn.recv(65536)
            try:
                if self.behaviour == "drip":
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n")
                    for _ in range(1000):
                        conn.sendall(b" ")
                        self.sent += 1
                        time.sleep(0.3)
                elif self.behaviour == "declared":
                    conn.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n\r\n"
                    )
                    chunk = b"a" * 65536
                    for _ in range(100_000_000 // len(chunk)):
                        conn.sendall(chunk)
                        self.sent += len(chunk)
                else:  # huge, chunked, no length
                    conn.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                    )
                    chunk = b"a" * 65536
                    frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
                    for _ in range(200_000_000 // len(chunk)):
                        conn.sendall(frame)
                        self.sent += len(chunk)
            except OSError:  # the client hung up: what the deadline / size limit should do
                self.closed_early.set()

    def close(self) -> None:
        self.sock.close()


@contextmanager
def byline_with_model(sample_index: Path, encoder, model_url: str) -> Iterator[httpx.Client]:
    from service.answering.engine import Engine
    from service.web.api import create_app

    settings = Settings(
        index_dir=sample_index,
        llm_base_url=model_url,
        llm_timeout_s=DEADLINE_S,
        llm_max_reply_bytes=MAX_REPLY,
        rate_limit_per_minute=1_000_000,
    )
    engine = Engine(settings=settings, index_root=sample_index, encoder=encoder)
    with running_server(create_app(settings, engine)) as url, httpx.Client(base_url=url, timeout=120) as http:
        yield http


def ask(http: httpx.Client) -> tuple[dict, float]:
    started = time.perf_counter()
    response = http.post("/v1/ask", json={"question": SAMPLE_QUESTION})
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, response.text
    return response.json(), elapsed


def test_a_dripping_model_server_is_cut_at_the_total_deadline(sample_index: Path, encoder) -> None:
    model = _ModelServer("drip")
    try:
        with byline_with_model(sample_index, encoder, model.url) as http:
            answer, elapsed = ask(http)
            assert model.closed_early.wait(10), "the connection to the model server was not closed"
    finally:
        model.close()
    print(f"\ndripping model server: answered in {elapsed:.1f} s, {model.sent} bytes dripped")
    assert answer["mode"] == "extractive" and not answer["abstained"]
    assert "timed out after 1.5 s" in answer["fallback_reason"], answer["fallback_reason"]
    assert "[1]" in answer["answer"]
    assert elapsed < DEADLINE_S + 3, elapsed  # the deadline, not the 300 s of dripping
    assert model.sent < 20


@pytest.mark.parametrize("behaviour", ["huge", "declared"])
def test_a_huge_reply_is_refused_at_the_size_limit(sample_index: Path, encoder, behaviour: str) -> None:
    model = _ModelServer(behaviour)
    try:
        with byline_with_model(sample_index, encoder, model.url) as http:
            answer, elapsed = ask(http)
            assert model.closed_early.wait(10), "the connection to the model server was not closed"
    finally:
        model.close()
    print(f"\n{behaviour} reply: answered in {elapsed:.1f} s after {model.sent / 1e6:.1f} MB were sent")
    assert answer["mode"] == "extractive" and not answer["abstained"]
    assert f"larger than {MAX_REPLY} bytes" in answer["fallback_reason"], answer["fallback_reason"]
    assert model.sent < 20_000_000  # stopped long before the 100-200 MB (socket buffers hold a few MB)
