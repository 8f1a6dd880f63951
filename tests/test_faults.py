"""Faults from outside our control: a killed ingest job, a full disk, a publication under live traffic and
corrupted files in a newly published version. The published index must always stay usable."""

from __future__ import annotations

import errno
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from conftest import running_server

from index.manifest import MANIFEST, read_manifest
from index.publish import CURRENT, STAGING_PREFIX, VERSIONS, current_dir, current_version
from index.reader import LoadedIndex, load_index
from index.settings import Settings
from ingest.job import IngestError, run_ingest

ROOT = Path(__file__).resolve().parents[1]

WORDS = (
    "harbour council bridge river festival museum budget school railway station market farmers winter "
    "storm mayor library orchestra stadium hospital clinic factory workers union strike election vote "
    "parliament minister airport runway museum gallery painting theatre season drought rainfall reservoir "
    "vineyard harvest bakery cooperative tram line bicycle lanes ferry island lighthouse mountain pass tunnel"
).split()

BIG_ARTICLES = 16  # generated articles that make a full ingest run last a few seconds


def write_article(folder: Path, name: str, title: str, body: str) -> Path:
    path = folder / name
    path.write_text(f"{title}\n\n{body}\n")
    return path


def generated_body(rng: random.Random, sentences: int) -> str:
    out = []
    for _ in range(sentences):
        words = [rng.choice(WORDS) for _ in range(rng.randint(8, 18))]
        out.append(" ".join(words).capitalize() + ".")
    return " ".join(out)


SMALL = {
    "bridge.txt": (
        "Larkford to rebuild its bridge",
        "The river council in Larkford voted on Tuesday to rebuild the old stone bridge. "
        "Mayor Ines Varga said the work would start in spring.",
    ),
    "meteor.txt": (
        "Bright meteor over the valley",
        "A small observatory in the hills recorded an unusually bright meteor on Friday night. "
        "Astronomer Teo Lindqvist said the object burned up high over the valley.",
    ),
    "harbour.txt": (
        "Harbour reopens after repairs",
        "The harbour of Saltmere reopened on Monday after six months of repairs to the pier. "
        "Fishing boats returned the same morning.",
    ),
}


@pytest.fixture()
def small(tmp_path: Path) -> Path:
    folder = tmp_path / "small"
    folder.mkdir()
    for name, (title, body) in SMALL.items():
        write_article(folder, name, title, body)
    return folder


@pytest.fixture()
def big(tmp_path: Path) -> Path:
    """Enough generated articles that a full ingest run lasts a few seconds."""
    folder = tmp_path / "big"
    folder.mkdir()
    rng = random.Random(1234)
    for i in range(BIG_ARTICLES):
        write_article(folder, f"gen-{i:03d}.txt", f"Generated report number {i}", generated_body(rng, 24))
    return folder


def staging_dirs(root: Path) -> list[Path]:
    return list((root / VERSIONS).glob(f"{STAGING_PREFIX}*"))


def complete_versions(root: Path) -> list[str]:
    return sorted(p.name for p in (root / VERSIONS).iterdir() if p.is_dir() and not p.name.startswith("."))


# --------------------------------------------------------------------------------------------------
# (a) kill -9 at random points of a run

KILL_SCRIPT = """
import sys
from pathlib import Path
import ingest.job as job
_write = job._write_version
def traced(*args, **kwargs):
    print("writing", flush=True)
    return _write(*args, **kwargs)
job._write_version = traced
job.run_ingest([Path(p) for p in sys.argv[2:]], index_root=Path(sys.argv[1]), rebuild=True, progress=False)
print("done", flush=True)
"""
KILLS = 20


def start_job(index: Path, *corpora: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, str(index), *map(str, corpora)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def wait_for_line(proc: subprocess.Popen[str], wanted: str) -> bool:
    assert proc.stdout is not None
    return any(line.strip() == wanted for line in proc.stdout)


def test_kill_9_at_random_points_never_breaks_the_published_version(
    tmp_path: Path, small: Path, big: Path, encoder, settings
) -> None:
    index = tmp_path / "index"
    run_ingest([small], index_root=index, encoder=encoder, progress=False)

    # calibrate: one undisturbed run (it publishes), timing the whole run and its write phase
    started = time.monotonic()
    proc = start_job(index, small, big)
    assert wait_for_line(proc, "writing"), "the calibration run never reached the write phase"
    writing_at = time.monotonic()
    assert wait_for_line(proc, "done") and proc.wait(timeout=120) == 0
    total_s, write_s = time.monotonic() - started, time.monotonic() - writing_at
    assert load_index(index).manifest.counts["articles"] == len(SMALL) + BIG_ARTICLES

    rng = random.Random(20240607)
    outcomes = {"before publishing": 0, "after publishing": 0}
    for attempt in range(KILLS):
        published = current_version(index)
        proc = start_job(index, small, big)
        if attempt % 2 == 0:  # anywhere in the run (imports, reading, embedding, writing)
            time.sleep(rng.uniform(0.1, total_s * 1.05))
        else:  # within the short write-and-publish phase, where the files and CURRENT change
            delay = rng.uniform(0.0, write_s * 1.2)
            assert wait_for_line(proc, "writing"), "the run never reached the write phase"
            time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        assert proc.stdout is not None
        proc.stdout.close()

        now = current_version(index)
        loaded = load_index(index)  # verifies every checksum of whatever CURRENT names
        assert loaded.version == now
        assert loaded.vectors.ntotal == len(loaded.chunks) == loaded.bm25.size
        if now != published:  # the killed run got to publish: then its version is complete
            assert loaded.manifest.counts["articles"] == len(SMALL) + BIG_ARTICLES
        outcomes["before publishing" if now == published else "after publishing"] += 1
        loaded.close()

        # the next ingest completes, publishes and cleans up what the killed run left behind
        title, body = SMALL["bridge.txt"]
        write_article(small, "bridge.txt", title, f"{body} Update number {attempt}.")
        summary = run_ingest([small], index_root=index, encoder=encoder, progress=False)
        assert summary.published and summary.updated == 1
        after = load_index(index)
        assert after.version == summary.version == current_version(index)
        assert any(f"Update number {attempt}." in c.text for c in after.chunks.values())
        after.close()
        assert not staging_dirs(index), staging_dirs(index)
        assert len(complete_versions(index)) <= settings.keep_versions
    leftovers = sorted(p.name for p in index.glob(f".{CURRENT}.*.tmp"))  # harmless: CURRENT is replaced atomically
    print(f"\nkill -9 x{KILLS} (run {total_s:.1f} s, write phase {write_s:.2f} s): {outcomes}; tmp left: {leftovers}")
    assert outcomes["before publishing"] > 0


# --------------------------------------------------------------------------------------------------
# (b) a failed write (disk full) inside the job


def _enospc(*args: object, **kwargs: object) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _sqlite_full(*args: object, **kwargs: object) -> None:
    raise sqlite3.OperationalError("database or disk is full")


FAULTS = {
    "copy metadata": ("shutil.copyfile", _enospc),
    "numpy save": ("numpy.save", _enospc),
    "sqlite write": ("ingest.job.write_chunks", _sqlite_full),
    "fsync": ("os.fsync", _enospc),
    "rename into versions": ("os.rename", _enospc),
    "replace CURRENT": ("os.replace", _enospc),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_failed_write_is_a_clear_error_and_leaves_the_published_version(
    tmp_path: Path, small: Path, encoder, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    index = tmp_path / "index"
    first = run_ingest([small], index_root=index, encoder=encoder, progress=False)
    current_bytes = (index / CURRENT).read_bytes()
    title, body = SMALL["meteor.txt"]
    write_article(small, "meteor.txt", title, body + " It was seen from three towns.")

    target, failure = FAULTS[fault]
    module_name, attr = target.rsplit(".", 1)
    with monkeypatch.context() as patch:
        patch.setattr(f"{module_name}.{attr}", failure)
        with pytest.raises(IngestError) as caught:
            run_ingest([small], index_root=index, encoder=encoder, progress=False)
    message = str(caught.value)
    assert "could not write the new index version" in message and "the published index is unchanged" in message
    assert "No space left on device" in message or "disk is full" in message

    assert (index / CURRENT).read_bytes() == current_bytes
    loaded = load_index(index)
    assert loaded.version == first.version
    assert not any("three towns" in c.text for c in loaded.chunks.values())
    loaded.close()
    assert not staging_dirs(index)

    retry = run_ingest([small], index_root=index, encoder=encoder, progress=False)  # the disk has room again
    assert retry.published and retry.updated == 1
    assert any("three towns" in c.text for c in load_index(index).chunks.values())


RLIMIT_SCRIPT = """
import resource, signal, sys
from pathlib import Path
from ingest.job import IngestError, run_ingest
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
limit = int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
try:
    run_ingest([Path(p) for p in sys.argv[3:]], index_root=Path(sys.argv[1]), progress=False)
except IngestError as exc:
    print("IngestError:", exc)
    sys.exit(3)
"""


def assert_ingest_fails_under_file_size_limit(index: Path, limit: int, published: str, *corpora: Path) -> None:
    """Run the ingest under a real RLIMIT_FSIZE: a clear error, and the published version untouched."""
    done = subprocess.run(
        [sys.executable, "-c", RLIMIT_SCRIPT, str(index), str(limit), *map(str, corpora)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 3, (done.stdout, done.stderr[-3000:])
    assert "could not write the new index version" in done.stdout and "unchanged" in done.stdout
    assert current_version(index) == published
    assert load_index(index).version == published
    assert not staging_dirs(index)


def test_a_real_file_size_limit_fails_cleanly(tmp_path: Path, small: Path, big: Path, encoder) -> None:
    """A real OS-level write failure (RLIMIT_FSIZE: EFBIG), no mocks: a clear error, nothing published."""
    index = tmp_path / "index"
    first = run_ingest([small], index_root=index, encoder=encoder, progress=False)
    limit = max(p.stat().st_size for p in current_dir(index).rglob("*") if p.is_file()) + 4096
    assert_ingest_fails_under_file_size_limit(index, limit, first.version, small, big)


def test_a_file_size_limit_hit_while_writing_the_vector_index_fails_cleanly(
    tmp_path: Path, small: Path, encoder
) -> None:
    """The same real fault, aimed at the FAISS file: every other file of the version fits under the limit."""
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    rng = random.Random(5)
    for i in range(150):  # one short chunk each: many vectors, little text
        write_article(tiny, f"t{i:03d}.txt", f"Note {i}", generated_body(rng, 1))
    scratch = tmp_path / "scratch"
    run_ingest([small, tiny], index_root=scratch, encoder=encoder, progress=False)
    sizes = {p.name: p.stat().st_size for p in current_dir(scratch).rglob("*") if p.is_file()}
    limit = sizes["vectors.npy"] + 64
    assert sizes["vectors.faiss"] > limit and max(v for k, v in sizes.items() if k != "vectors.faiss") < limit, sizes

    index = tmp_path / "index"
    first = run_ingest([small], index_root=index, encoder=encoder, progress=False)
    assert_ingest_fails_under_file_size_limit(index, limit, first.version, small, tiny)


# --------------------------------------------------------------------------------------------------
# (c) publishing under a continuous stream of requests

QUESTION = "What did the Oakridge Glassworks announce about glassblowers?"
GLASSWORKS = (
    "Oakridge Glassworks Reopens Its Furnace",
    "The Oakridge Glassworks relit its main furnace on Tuesday after a two-year shutdown, and the company "
    "said it would hire forty glassblowers by the end of the year. The owners credited a state loan of "
    "$2 million for the restart.",
)


def wait_until(condition, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def copy_index(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("conversations.sqlite*"))
    return target


def test_publishing_under_live_traffic_never_mixes_versions(tmp_path: Path, sample_index: Path, encoder) -> None:
    from service.answering.engine import Engine
    from service.web.api import create_app

    root = copy_index(sample_index, tmp_path / "index")
    settings = Settings(index_dir=root, reload_check_s=0.05, rate_limit_per_minute=1_000_000)
    engine = Engine(settings=settings, index_root=root, encoder=encoder)
    old_version = engine.index.version
    extra = tmp_path / "extra"
    extra.mkdir()
    write_article(extra, "glassworks.txt", *GLASSWORKS)

    results: list[tuple[int, dict]] = []
    failures: list[str] = []
    stop = threading.Event()

    def stream(url: str) -> None:
        with httpx.Client(base_url=url, timeout=60) as http:
            while not stop.is_set():
                try:
                    response = http.post("/v1/ask", json={"question": QUESTION})
                    results.append((response.status_code, response.json()))
                except Exception as exc:  # noqa: BLE001 - every failure is a finding
                    failures.append(repr(exc))

    with running_server(create_app(settings, engine)) as url, httpx.Client(base_url=url, timeout=60) as http:
        threads = [threading.Thread(target=stream, args=(url,), daemon=True) for _ in range(3)]
        for thread in threads:
            thread.start()
        wait_until(lambda: len(results) >= 40 or bool(failures))
        summary = run_ingest([extra], index_root=root, encoder=encoder, progress=False)
        new_version = summary.version
        assert new_version and new_version != old_version
        deadline = time.monotonic() + 30
        while not any(body.get("index_version") == new_version for _, body in list(results)):
            assert time.monotonic() < deadline, "the new version was never served"
            assert not failures, failures[:5]
            time.sleep(0.05)
        seen_new = len(results)
        wait_until(lambda: len(results) >= seen_new + 40 or bool(failures))
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        assert http.get("/readyz").json()["index_version"] == new_version

    assert not failures, failures[:5]
    assert [status for status, _ in results if status != 200] == []
    versions = {body["index_version"] for _, body in results}
    assert versions == {old_version, new_version}, versions
    # no mixing: every citation of a response exists, with the quoted text, in the version it names
    indexes = {old_version: LoadedIndex(root / VERSIONS / old_version), new_version: load_index(root)}
    for _, body in results:
        index = indexes[body["index_version"]]
        for source in body["sources"]:
            article = index.article_with_text(source["article_id"])
            assert article is not None, (body["index_version"], source["article_id"])
            for quote in source["quotes"]:
                assert article.text[quote["start"] : quote["end"]] == quote["text"]
    cited_new = [b for _, b in results if any(s["title"] == GLASSWORKS[0] for s in b["sources"])]
    assert cited_new and all(b["index_version"] == new_version for b in cited_new)
    print(f"\nlive publication: {len(results)} requests, all 200, versions {sorted(versions)}")


# --------------------------------------------------------------------------------------------------
# (d) a corrupted file in a newly published version


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def delete(path: Path) -> None:
    path.unlink()


def test_corrupt_files_in_a_new_version_are_refused_at_reload(tmp_path: Path, sample_index: Path, encoder) -> None:
    from service.answering.engine import Engine
    from service.web.api import create_app

    root = copy_index(sample_index, tmp_path / "index")
    settings = Settings(index_dir=root, reload_check_s=0.05, rate_limit_per_minute=1_000_000)
    engine = Engine(settings=settings, index_root=root, encoder=encoder)
    good = engine.index.version
    names = sorted(read_manifest(current_dir(root)).files) + [MANIFEST]
    cases = [(name, flip_byte) for name in names] + [
        ("metadata.sqlite", truncate),
        ("vectors.faiss", delete),
        ("vectors.npy", truncate),
        (MANIFEST, truncate),
        (MANIFEST, delete),
    ]
    extra = tmp_path / "extra"
    extra.mkdir()
    write_article(extra, "glassworks.txt", *GLASSWORKS)

    with running_server(create_app(settings, engine)) as url, httpx.Client(base_url=url, timeout=60) as http:
        for i, (name, damage) in enumerate(cases):
            # build a real new version beside the served root, damage one file, then publish it
            builder = copy_index(root, tmp_path / f"builder-{i}")
            summary = run_ingest([extra], index_root=builder, encoder=encoder, progress=False)
            assert summary.version
            bad_dir = builder / VERSIONS / summary.version
            damage(bad_dir / name)
            shutil.copytree(bad_dir, root / VERSIONS / summary.version)
            tmp = root / ".CURRENT.test"
            tmp.write_text(summary.version + "\n")
            os.replace(tmp, root / CURRENT)
            shutil.rmtree(builder)

            deadline = time.monotonic() + 20
            while True:
                ready = http.get("/readyz").json()
                if ready["reload_error"] and summary.version in ready["reload_error"]:
                    break
                assert time.monotonic() < deadline, f"{name} ({damage.__name__}): never refused: {ready}"
                time.sleep(0.05)
            assert ready["index_version"] == good, (name, damage.__name__)
            assert Path(name).name in ready["reload_error"], (name, damage.__name__, ready["reload_error"])
            answer = http.post("/v1/ask", json={"question": "How did the Millbrook council vote on the bike lanes?"})
            assert answer.status_code == 200 and answer.json()["index_version"] == good
            (root / CURRENT).write_text(good + "\n")  # the operator rolls back; the service never left it
            shutil.rmtree(root / VERSIONS / summary.version)

        # a good version afterwards is picked up and clears the error
        summary = run_ingest([extra], index_root=root, encoder=encoder, progress=False)
        deadline = time.monotonic() + 20
        while (ready := http.get("/readyz").json())["index_version"] != summary.version:
            assert time.monotonic() < deadline, ready
            time.sleep(0.05)
        assert ready["reload_error"] is None
    print(f"\ncorrupt versions refused: {len(cases)} ({', '.join(f'{n}:{d.__name__}' for n, d in cases)})")


# --------------------------------------------------------------------------------------------------
# (e) path-like parameters cannot reach files; unknown conversations are 404

TRAVERSALS = [
    "/v1/articles/..%2F..%2Fetc%2Fpasswd",
    "/v1/articles/..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/v1/articles/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/v1/articles/..%252F..%252Fetc%252Fpasswd",
    "/v1/articles/....%2F%2F....%2F%2Fetc%2Fpasswd",
    "/v1/articles/%2Fetc%2Fpasswd",
    "/v1/articles/..%5C..%5Cwindows%5Cwin.ini",
    "/v1/articles/..",
    "/v1/articles/%2e%2e",
    "/v1/articles/%00",
    "/v1/articles/metadata.sqlite",
    "/v1/articles/../../etc/passwd",
    "/v1/articles/..%2F..%2Fmetadata.sqlite",
    "/v1/conversations/..%2F..%2Fetc%2Fpasswd",
    "/v1/conversations/..%2F..%2Fconversations.sqlite",
    "/v1/conversations/%2e%2e%2f%2e%2e%2fCURRENT",
    "/v1/conversations/../../etc/passwd",
    "/static/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    "/static/../../../../etc/passwd",
    "/static/%2e%2e/%2e%2e/api.py",
    "/static/..%2F..%2Fapi.py",
    "/static/%2e%2e%2f%2e%2e%2f%2e%2e%2fpyproject.toml",
    "/static//etc/passwd",
    "/..%2F..%2Fetc%2Fpasswd",
]


def raw_request(url: str, method: str, path: str) -> tuple[int, str, bytes]:
    """Send ``path`` exactly as written (no client-side normalisation of dot segments or escapes)."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.getheader("content-type") or "", response.read()
    finally:
        connection.close()


def test_path_like_parameters_cannot_reach_files(sample_index: Path, encoder) -> None:
    from service.answering.engine import Engine
    from service.web.api import create_app

    engine = Engine(index_root=sample_index, encoder=encoder)
    secrets = [b"root:x:0:0", b"SQLite format 3", b"def create_app", b"[project]", b"[fonts]"]
    requests = 0
    with running_server(create_app(engine=engine)) as url:
        for path in TRAVERSALS:
            methods = ["GET", "DELETE"] if path.startswith("/v1/conversations/") else ["GET"]
            for method in methods:
                status, content_type, body = raw_request(url, method, path)
                requests += 1
                where = f"{method} {path} -> {status} {body[:200]!r}"
                assert status in (400, 404, 405, 422), where
                assert content_type.startswith("application/json"), where
                assert not any(secret in body for secret in secrets), where
                detail = httpx.Response(status, content=body).json()["detail"]
                assert isinstance(detail, str) and detail, where

        rng = random.Random(99)
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        with httpx.Client(base_url=url, timeout=30) as http:
            for _ in range(10):
                cid = "".join(rng.choice(alphabet) for _ in range(22))
                for method in ("GET", "DELETE"):
                    response = http.request(method, f"/v1/conversations/{cid}")
                    requests += 1
                    assert response.status_code == 404 and cid in response.json()["detail"], response.text
                chat = http.post("/v1/chat", json={"question": "And then?", "conversation_id": cid})
                requests += 1
                assert chat.status_code == 404 and "detail" in chat.json(), chat.text
    print(f"\npath traversal and unknown ids: {requests} requests, all refused with JSON")
