"""Issue 12 item 11: when the conversation store cannot be written (its disk is full), ``/v1/chat`` answers 503
with a clear message and ``/v1/ask`` keeps answering. The failure is real, in a real ``byline serve`` process:

- ``tmpfs``: the store lives on a 192 KB tmpfs mounted in a private mount namespace (``unshare -rm``), so
  SQLite gets a real ENOSPC once the turns have filled it (skipped where user namespaces are not allowed);
- ``rlimit``: the running server's RLIMIT_FSIZE is lowered (``prlimit``) so that no file can grow: every write
  fails with EFBIG, as on the ingest side in ``test_faults.py``.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import ROOT
from test_hardening_serve import free_port

SAMPLE_QUESTION = "How did the Millbrook council vote on the bike lanes?"
IGNORE_SIGXFSZ_THEN_EXEC = (
    "import os, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); os.execv(sys.executable, sys.argv[1:])"
)


def can_mount_tmpfs(where: Path) -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", 'mount -t tmpfs -o size=64k byline-probe "$0"', str(where)],
        capture_output=True,
        timeout=30,
    )
    return probe.returncode == 0


def start(command: list[str], env: dict[str, str], port: int) -> subprocess.Popen:
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180
    while True:
        assert process.poll() is None, process.stderr.read().decode()[-3000:] if process.stderr else ""
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "byline serve did not become ready"
        time.sleep(0.3)


@pytest.mark.parametrize("how", ["tmpfs", "rlimit"])
def test_a_full_conversation_disk_is_503_for_chat_and_ask_keeps_answering(
    how: str, sample_index: Path, tmp_path: Path
) -> None:
    index = tmp_path / "index"
    shutil.copytree(sample_index, index, ignore=shutil.ignore_patterns("conversations.sqlite*"))
    store_dir = tmp_path / "store"
    store_dir.mkdir()
    port = free_port()
    serve = [sys.executable, "-m", "byline", "serve", "--index", str(index), "--port", str(port)]
    env = {**os.environ, "BYLINE_RATE_LIMIT_PER_MINUTE": "1000000"}
    if how == "tmpfs":
        if not can_mount_tmpfs(store_dir):
            pytest.skip("cannot mount a tmpfs in a private mount namespace here")
        env["BYLINE_CONVERSATION_STORE"] = f"sqlite:///{store_dir}/conversations.sqlite"
        command = ["unshare", "-rm", "sh", "-c", 'mount -t tmpfs -o size=192k byline-full "$0" && exec "$@"']
        command += [str(store_dir), sys.executable, "-c", IGNORE_SIGXFSZ_THEN_EXEC, *serve]
    else:
        command = [sys.executable, "-c", IGNORE_SIGXFSZ_THEN_EXEC, *serve]
    process = start(command, env, port)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=120) as http:
            first = http.post("/v1/chat", json={"question": SAMPLE_QUESTION})
            assert first.status_code == 200, first.text  # the store works until its disk is full
            if how == "rlimit":
                resource.prlimit(process.pid, resource.RLIMIT_FSIZE, (1, 1))  # no file may grow any more
            statuses = []
            for _ in range(60):
                response = http.post("/v1/chat", json={"question": SAMPLE_QUESTION})
                statuses.append(response.status_code)
                if response.status_code != 200:
                    break
            assert statuses[-1] == 503, statuses
            assert set(statuses) <= {200, 503}, statuses
            detail = response.json()["detail"]
            assert (
                "conversations are unavailable" in detail
                and "cannot be written" in detail
                and "(/v1/ask) still answer" in detail
            ), detail
            assert response.headers.get("retry-after")
            # one-shot questions keep answering, the follow-up of the earlier conversation is refused clearly
            for _ in range(3):
                ask = http.post("/v1/ask", json={"question": SAMPLE_QUESTION})
                assert ask.status_code == 200 and not ask.json()["abstained"], ask.text
            completions = http.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "Who?"}]})
            assert completions.status_code == 200, completions.text
            follow_up = {"question": "And then?", "conversation_id": first.json()["conversation_id"]}
            again = http.post("/v1/chat", json=follow_up)
            assert again.status_code == 503, again.text
            assert http.get("/readyz").status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            _, stderr = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            _, stderr = process.communicate(timeout=10)
    log = stderr.decode(errors="replace")
    print(f"\n{how}: /v1/chat statuses {statuses}")
    assert "conversation store error" in log, log[-3000:]
    assert "Traceback" not in log.split("conversation store error", 1)[0][-200:]
