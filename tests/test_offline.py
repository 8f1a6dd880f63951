"""Models and tokenizer files load from installed packages with the network unreachable."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = r"""
import socket, sys

def refuse(*args, **kwargs):
    raise OSError("network access attempted during offline load")

socket.socket.connect = refuse
socket.create_connection = refuse

from index.encoder import get_encoder
from index.tokens import count_tokens
vector = get_encoder().embed_query("Why does Pashinyan say Russia failed Armenia?")
assert vector.shape == (384,), vector.shape
assert count_tokens("Hello world") == 2
print("offline-ok")
"""


def _run(prefix: list[str], cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "BYLINE_CACHE_DIR": str(cache), "HOME": str(cache)}
    env.pop("TIKTOKEN_CACHE_DIR", None)
    return subprocess.run(
        [*prefix, sys.executable, "-c", SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parents[1],
    )


def test_loads_with_sockets_refused(tmp_path: Path) -> None:
    result = _run([], tmp_path / "cache")
    assert "offline-ok" in result.stdout, result.stderr[-2000:]


@pytest.mark.skipif(shutil.which("unshare") is None, reason="unshare is not available")
def test_loads_in_a_network_namespace_without_network(tmp_path: Path) -> None:
    probe = subprocess.run(["unshare", "-rn", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("cannot create a network namespace here")
    result = _run(["unshare", "-rn"], tmp_path / "cache")
    assert "offline-ok" in result.stdout, result.stderr[-2000:]


def test_weights_are_verified(tmp_path: Path) -> None:
    from index.encoder import EncoderError, model_path, verify_weights

    verify_weights(model_path())  # the packaged weights pass
    fake = tmp_path / "model"
    fake.mkdir()
    (fake / "model.safetensors").write_bytes(b"not the weights")
    with pytest.raises(EncoderError, match="refusing to load"):
        verify_weights(fake)
