"""Issue 12 items 2 and 8, against the real ``byline serve`` process: forwarded headers are believed only from
configured proxies (the per-IP limit, the failed-key limit and the logged client use the real peer), and
half-sent requests, idle keep-alive connections and too many connections are handled from the settings."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from conftest import ROOT

REQUEST_TIMEOUT_S = 1.0
KEEPALIVE_S = 1.0
MAX_CONNECTIONS = 150


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Served:
    def __init__(self, url: str, port: int, log: Path) -> None:
        self.url = url
        self.port = port
        self.log = log

    def access_lines(self, path: str, expect: int) -> list[dict]:
        """The access-log records of ``path``, once ``expect`` of them are written (the server logs a request
        after its response is sent, so under load a line can lag the reply; 10 s at most)."""
        deadline = time.monotonic() + 10
        while True:
            lines = [
                json.loads(line)
                for line in self.log.read_text(errors="replace").splitlines()
                if line.startswith("{") and '"client"' in line
            ]
            lines = [line for line in lines if line["path"] == path]
            if len(lines) >= expect or time.monotonic() > deadline:
                return lines
            time.sleep(0.05)


@contextmanager
def byline_serve(index: Path, tmp: Path, **env: str) -> Iterator[Served]:
    """``python -m byline serve`` on a free port with ``BYLINE_*`` settings from ``env``; stopped at the end."""
    port = free_port()
    log = tmp / f"serve-{port}.log"
    environment = {**os.environ, "BYLINE_RATE_LIMIT_PER_MINUTE": "1000000", **env}
    command = [sys.executable, "-m", "byline", "serve", "--index", str(index), "--port", str(port)]
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=environment, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, log.read_text()[-3000:]
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "byline serve did not start"
            time.sleep(0.2)
        yield Served(url, port, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def plain(sample_index: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """No keys, 3 requests a minute per client, short timeouts, a connection limit; no trusted proxy."""
    with byline_serve(
        sample_index,
        tmp_path_factory.mktemp("serve-plain"),
        BYLINE_RATE_LIMIT_PER_MINUTE="3",
        BYLINE_HTTP_REQUEST_TIMEOUT_S=str(REQUEST_TIMEOUT_S),
        BYLINE_HTTP_KEEPALIVE_TIMEOUT_S=str(KEEPALIVE_S),
        BYLINE_HTTP_MAX_CONNECTIONS=str(MAX_CONNECTIONS),
    ) as served:
        yield served


def forged(i: int) -> dict[str, str]:
    return {"X-Forwarded-For": f"203.0.113.{i}", "X-Forwarded-Proto": "https", "X-Real-IP": f"198.51.100.{i}"}


# --------------------------------------------------------------------------------------------------
# 2. forwarded headers


def test_forwarded_headers_do_not_rotate_past_the_per_ip_limit(plain: Served) -> None:
    statuses = [httpx.get(f"{plain.url}/v1/models", headers=forged(i)).status_code for i in range(6)]
    assert statuses[:3] == [200, 200, 200] and statuses[3:] == [429, 429, 429], statuses
    lines = plain.access_lines("/v1/models", expect=6)
    assert len(lines) == 6 and {line["client"] for line in lines} == {"127.0.0.1"}, lines


def test_forwarded_headers_do_not_rotate_past_the_failed_key_limit(sample_index: Path, tmp_path: Path) -> None:
    with byline_serve(sample_index, tmp_path, BYLINE_API_KEYS="right-key", BYLINE_RATE_LIMIT_PER_MINUTE="3") as s:
        wrong = [
            httpx.get(f"{s.url}/v1/models", headers={**forged(i), "X-API-Key": f"guess-{i}"}).status_code
            for i in range(6)
        ]
        assert wrong == [401, 401, 401, 429, 429, 429], wrong
        logged = {line["client"] for line in s.access_lines("/v1/models", expect=6)}
        assert logged == {"127.0.0.1"}, logged


def test_a_configured_proxy_is_believed(sample_index: Path, tmp_path: Path) -> None:
    with byline_serve(
        sample_index,
        tmp_path,
        BYLINE_API_KEYS="right-key",
        BYLINE_RATE_LIMIT_PER_MINUTE="3",
        BYLINE_TRUSTED_PROXIES="127.0.0.1",
    ) as s:
        wrong = [
            httpx.get(f"{s.url}/v1/models", headers={**forged(i), "X-API-Key": "guess"}).status_code for i in range(6)
        ]
        assert wrong == [401] * 6, wrong  # six different clients behind the proxy, one failure each
        logged = {line["client"] for line in s.access_lines("/v1/models", expect=6)}
        assert logged == {f"203.0.113.{i}" for i in range(6)}, logged


# --------------------------------------------------------------------------------------------------
# 8. request and keep-alive timeouts, connection limit


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """True when the server closes ``sock`` (EOF or reset) within ``seconds``, whatever it sends first."""
    sock.settimeout(seconds)
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            if not sock.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False
    return False


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def test_half_sent_requests_are_closed(plain: Served) -> None:
    slow_headers = [connect(plain.port) for _ in range(100)]
    for i, sock in enumerate(slow_headers):
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow-" + str(i).encode())  # never finished
    silent = [connect(plain.port) for _ in range(10)]  # connected, nothing sent
    half_line = [connect(plain.port) for _ in range(5)]
    for sock in half_line:
        sock.sendall(b"GET /heal")
    half_body = [connect(plain.port) for _ in range(5)]
    for sock in half_body:
        sock.sendall(
            b"POST /v1/ask HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            b'Content-Length: 1000\r\n\r\n{"question": "Who'
        )
    started = time.monotonic()
    try:
        everything = slow_headers + silent + half_line + half_body
        still_open = [i for i, sock in enumerate(everything) if not closed_within(sock, REQUEST_TIMEOUT_S + 4)]
        elapsed = time.monotonic() - started
    finally:
        for sock in slow_headers + silent + half_line + half_body:
            sock.close()
    print(f"\n{len(everything)} half-sent connections: {len(still_open)} still open after {elapsed:.1f} s")
    assert not still_open, f"{len(still_open)} of {len(everything)} half-sent connections still open"
    assert httpx.get(f"{plain.url}/healthz").status_code == 200  # the server still serves


def test_a_slow_but_complete_request_is_not_cut(plain: Served) -> None:
    with connect(plain.port) as sock:
        for piece in (b"GET /healthz HTTP/1.1\r\n", b"Host: localhost\r\n", b"Connection: close\r\n\r\n"):
            sock.sendall(piece)
            time.sleep(REQUEST_TIMEOUT_S / 4)
        sock.settimeout(10)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200"), reply[:200]


def test_idle_keep_alive_connections_are_closed(plain: Served) -> None:
    with connect(plain.port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        sock.settimeout(10)
        reply = b""
        while b'"ok"' not in reply:
            reply += sock.recv(65536)
        assert reply.startswith(b"HTTP/1.1 200")
        assert closed_within(sock, KEEPALIVE_S + 3), "an idle keep-alive connection stayed open"


def test_connections_above_the_limit_get_503(plain: Served) -> None:
    idle = [connect(plain.port) for _ in range(MAX_CONNECTIONS + 10)]
    try:
        time.sleep(0.2)
        crowded = httpx.get(f"{plain.url}/healthz", timeout=10)
    finally:
        for sock in idle:
            sock.close()
    assert crowded.status_code == 503, crowded.status_code
    deadline = time.monotonic() + 10
    while (after := httpx.get(f"{plain.url}/healthz", timeout=10)).status_code != 200:
        assert time.monotonic() < deadline, after.status_code
        time.sleep(0.1)
