"""Stateless replicas (issue 15): two real ``byline serve`` processes over one index directory, their conversations in
one real PostgreSQL (tests/pg_server.py). A conversation started on replica A continues on replica B with its
context, reads the same on both, and survives kill -9 of A; a replica started afterwards serves it too.

Run with ``-s`` to see the transcript of requests and responses.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

import httpx

QUESTION = "How did the Millbrook council vote on the bike lanes?"
FOLLOW_UP = "Who voted against it?"  # "it" is the council vote of turn 1
KEYS = ("replica-key-a", "replica-key-b")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Replica:
    """One ``byline serve`` process on a free loopback port."""

    def __init__(self, name: str, index: Path, store_url: str) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log: IO[str] = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed in stop()
        env = dict(
            os.environ,
            BYLINE_CONVERSATION_STORE=store_url,
            BYLINE_API_KEYS=",".join(KEYS),
            BYLINE_RATE_LIMIT_PER_MINUTE="100000",
            HF_HUB_OFFLINE="1",
        )
        byline = Path(sys.executable).with_name("byline")
        command = [str(byline), "serve", "--index", str(index), "--host", "127.0.0.1", "--port", str(self.port)]
        self.process = subprocess.Popen(command, env=env, stdout=self.log, stderr=subprocess.STDOUT, text=True)

    def wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.url, timeout=5) as client:
            while time.monotonic() < deadline and self.process.poll() is None:
                try:
                    if client.get("/readyz").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.3)
        self.log.seek(0)
        raise RuntimeError(f"replica {self.name} did not become ready:\n{self.log.read()[-3000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


class Transcript:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def call(self, replica: Replica, method: str, path: str, key: str = KEYS[0], **kwargs: object) -> httpx.Response:
        with httpx.Client(base_url=replica.url, timeout=60, headers={"X-API-Key": key}) as client:
            response = client.request(method, path, **kwargs)  # type: ignore[arg-type]
        body = kwargs.get("json")
        self.lines.append(f"{replica.name} {method} {path}" + (f" {json.dumps(body)}" if body else "") + f" [{key}]")
        self.lines.append(f"  -> {response.status_code} {summary(response)}")
        return response

    def note(self, text: str) -> None:
        self.lines.append(f"-- {text}")


def summary(response: httpx.Response) -> str:
    """The key fields of a response, for the transcript."""
    if not response.content:
        return ""
    data = response.json()
    if "turns" in data:
        turns = [(t["turn"], t["standalone_question"]) for t in data["turns"]]
        return f"total_turns={data['total_turns']} turns={turns}"
    if "conversation_id" in data:
        cited = [s["title"] for s in data.get("sources", [])][:2]
        return (
            f"conversation_id={data['conversation_id']} turn={data['turn']} "
            f"standalone_question={data['standalone_question']!r} sources={cited}"
        )
    return json.dumps(data)[:200]


def test_two_replicas_share_conversations_through_postgresql(postgres, sample_index: Path) -> None:
    store_url = postgres.new_database()
    replicas = {"A": Replica("A", sample_index, store_url), "B": Replica("B", sample_index, store_url)}
    log = Transcript()
    try:
        for replica in replicas.values():
            replica.wait_ready()
        a, b = replicas["A"], replicas["B"]

        first = log.call(a, "POST", "/v1/chat", json={"question": QUESTION})
        assert first.status_code == 200 and first.json()["turn"] == 1 and first.json()["sources"]
        cid = first.json()["conversation_id"]

        second = log.call(b, "POST", "/v1/chat", json={"question": FOLLOW_UP, "conversation_id": cid})
        assert second.status_code == 200
        follow = second.json()
        assert follow["turn"] == 2 and follow["conversation_id"] == cid
        # B resolved the follow-up from turn 1, which A wrote: the context came through PostgreSQL
        assert "millbrook council vote" in follow["standalone_question"].lower(), follow["standalone_question"]

        pages = {name: log.call(r, "GET", f"/v1/conversations/{cid}").json() for name, r in replicas.items()}
        for page in pages.values():
            assert [t["turn"] for t in page["turns"]] == [1, 2] and page["total_turns"] == 2
            assert page["turns"][0]["answer"]["sources"] == first.json()["sources"]
        assert pages["A"]["turns"] == pages["B"]["turns"]

        # the owner is the same hash on every replica: the other key gets 404 on the replica that did not create it
        assert log.call(b, "GET", f"/v1/conversations/{cid}", key=KEYS[1]).status_code == 404

        log.note(f"kill -9 replica A (pid {a.process.pid})")
        os.kill(a.process.pid, signal.SIGKILL)
        a.process.wait(timeout=15)

        after = log.call(b, "GET", f"/v1/conversations/{cid}").json()
        assert [t["turn"] for t in after["turns"]] == [1, 2]
        assert after["turns"] == pages["B"]["turns"]
        third = log.call(b, "POST", "/v1/chat", json={"question": "How much will it cost?", "conversation_id": cid})
        assert third.status_code == 200 and third.json()["turn"] == 3

        log.note("start replica C over the same index and store")
        c = replicas["C"] = Replica("C", sample_index, store_url)
        c.wait_ready()
        fresh = log.call(c, "GET", f"/v1/conversations/{cid}").json()
        assert [t["turn"] for t in fresh["turns"]] == [1, 2, 3]
    finally:
        for replica in replicas.values():
            replica.stop()
        print("\n" + "\n".join(log.lines))


def test_postgres_down_is_503_and_one_shot_questions_still_answer(postgres, sample_index: Path, encoder) -> None:
    """A PostgreSQL of its own, stopped mid-run: conversation routes answer 503 with a clear message, /v1/ask 200."""
    from conftest import running_server
    from pg_server import PostgresServer

    from index.settings import Settings
    from service.answering.engine import Engine
    from service.web.api import create_app

    own = PostgresServer(postgres.bin_dir).start()
    stopped = False
    try:
        settings = Settings(
            conversation_store=own.new_database(),
            conversation_pool_timeout_s=1.0,
            api_keys=[],
            rate_limit_per_minute=10_000,
        )
        app = create_app(settings, Engine(index_root=sample_index, encoder=encoder))
        with running_server(app) as url, httpx.Client(base_url=url, timeout=60) as http:
            cid = http.post("/v1/chat", json={"question": QUESTION}).json()["conversation_id"]
            own.stop()
            stopped = True
            for response in (
                http.get(f"/v1/conversations/{cid}"),
                http.post("/v1/chat", json={"question": FOLLOW_UP, "conversation_id": cid}),
                http.post("/v1/chat", json={"question": QUESTION}),
                http.delete(f"/v1/conversations/{cid}"),
            ):
                assert response.status_code == 503, response.text
                assert response.json()["detail"].startswith("the conversation store is unavailable")
                assert response.headers["retry-after"] == "5"
            asked = http.post("/v1/ask", json={"question": QUESTION})
            assert asked.status_code == 200 and asked.json()["sources"]
    finally:
        if not stopped:
            own.stop()
