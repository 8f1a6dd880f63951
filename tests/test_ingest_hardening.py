"""Ingest hardening (issue 12, items 12-16): one writer per index, clear errors for missing or empty
input, article ids independent of how a path is spelled, a report that escapes control characters, and
boilerplate rules that keep real paragraphs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from index.lock import LOCK_FILE
from index.metadata import METADATA, connect, iter_articles
from index.publish import VERSIONS, current_dir
from ingest.cleaner import clean
from ingest.job import run_ingest

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT.parent / "shared" / "corpus" / "seed"
SEED_NAME = "armenia-and-russia-its-complicated.txt"
BYLINE = [sys.executable, "-m", "byline", "ingest"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}

BRIDGE = (
    "Larkford to rebuild its bridge\n\n"
    "The river council in Larkford voted on Tuesday to rebuild the old stone bridge. "
    "Mayor Ines Varga said the work would start in spring.\n"
)
METEOR = (
    "Bright meteor over the valley\n\n"
    "A small observatory in the hills recorded an unusually bright meteor on Friday night. "
    "Astronomer Teo Lindqvist said the object burned up high over the valley.\n"
)


def stored_articles(index: Path) -> dict[str, tuple[str, str]]:
    """id -> (title, text) of the published version."""
    with connect(current_dir(index) / METADATA, readonly=True) as conn:
        return {a.id: (a.title, a.text) for a in iter_articles(conn, with_text=True)}


# ------------------------------------------------------------------------------ 12: one writer at a time


def start_ingest(index: Path, source: Path, log: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [*BYLINE, str(source), "--index", str(index), "--quiet", *extra],
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=log.open("w"),
        text=True,
    )


def wait_until(condition, process: subprocess.Popen, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"the ingest exited ({process.returncode}) before {what}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting until {what}")
        time.sleep(0.05)


def holds_lock(index: Path, pid: int):
    def check() -> bool:
        try:
            return json.loads((index / LOCK_FILE).read_text() or "{}").get("pid") == pid
        except (OSError, ValueError):
            return False

    return check


def two_jobs(tmp_path: Path, wait: bool) -> tuple[subprocess.Popen, subprocess.Popen, Path, Path]:
    """Job A takes the index's lock and is frozen (SIGSTOP) while job B starts on the same index."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "bridge.txt").write_text(BRIDGE)
    (tmp_path / "b" / "meteor.txt").write_text(METEOR)
    index = tmp_path / "index"
    extra = ["--wait"] if wait else []
    log_a, log_b = tmp_path / "a.err", tmp_path / "b.err"
    job_a = start_ingest(index, tmp_path / "a", log_a, *extra)
    try:
        wait_until(holds_lock(index, job_a.pid), job_a, "job A holds the index lock")
        os.kill(job_a.pid, signal.SIGSTOP)
        job_b = start_ingest(index, tmp_path / "b", log_b, *extra)
    except BaseException:
        job_a.kill()
        raise
    return job_a, job_b, log_b, index


def test_second_ingest_fails_at_once_naming_the_job_that_holds_the_index(tmp_path: Path) -> None:
    job_a, job_b, log_b, index = two_jobs(tmp_path, wait=False)
    try:
        out_b, _ = job_b.communicate(timeout=60)  # job A is still frozen with the lock: B must not wait
        err_b = log_b.read_text()
        assert job_b.returncode == 1, (out_b, err_b)
        assert err_b.startswith("ingest failed: ") and err_b.count("\n") == 1, err_b
        assert f"another ingest job (pid {job_a.pid}" in err_b and "--wait" in err_b
        assert "Traceback" not in err_b
    finally:
        os.kill(job_a.pid, signal.SIGCONT)
    out_a, _ = job_a.communicate(timeout=120)
    assert job_a.returncode == 0, out_a
    assert [title for title, _ in stored_articles(index).values()] == ["Larkford to rebuild its bridge"]


def test_with_wait_both_ingests_succeed_and_no_article_is_lost(tmp_path: Path) -> None:
    job_a, job_b, log_b, index = two_jobs(tmp_path, wait=True)
    try:
        wait_until(lambda: "waiting" in log_b.read_text(), job_b, "job B says it is waiting")
        assert f"pid {job_a.pid}" in log_b.read_text()
        assert job_b.poll() is None  # still waiting for A
    finally:
        os.kill(job_a.pid, signal.SIGCONT)
    out_a, _ = job_a.communicate(timeout=120)
    out_b, _ = job_b.communicate(timeout=120)
    assert (job_a.returncode, job_b.returncode) == (0, 0), (out_a, out_b, log_b.read_text())
    assert "1 added" in out_a and "1 added" in out_b
    titles = sorted(title for title, _ in stored_articles(index).values())
    assert titles == ["Bright meteor over the valley", "Larkford to rebuild its bridge"]


# ------------------------------------------------------------------------------ 13: missing or empty input


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*BYLINE, *args, "--quiet"], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)


def assert_clean_failure(result: subprocess.CompletedProcess, phrase: str) -> None:
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stderr.startswith("ingest failed: ") and result.stderr.count("\n") == 1, result.stderr
    assert phrase in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""


def test_missing_path_is_a_clear_error_and_writes_nothing(tmp_path: Path) -> None:
    index = tmp_path / "X"
    result = run_cli("/nonexistent/path", "--index", str(index))
    assert_clean_failure(result, "no such file or directory: /nonexistent/path")
    assert not index.exists()


def test_empty_folder_is_a_clear_error_and_writes_nothing(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    index = tmp_path / "X"
    assert_clean_failure(run_cli(str(empty), "--index", str(index)), "no articles found")
    assert not index.exists()

    # into an existing index: the same error, and no new version
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "bridge.txt").write_text(BRIDGE)
    assert run_cli(str(tmp_path / "one"), "--index", str(index)).returncode == 0
    versions = sorted(p.name for p in (index / VERSIONS).iterdir())
    assert_clean_failure(run_cli(str(empty), "--index", str(index), "--prune"), "no articles found")
    assert sorted(p.name for p in (index / VERSIONS).iterdir()) == versions
    assert len(stored_articles(index)) == 1


# ------------------------------------------------------------------------------ 14: ids from the real path


def test_a_file_is_one_article_however_its_path_is_spelled(
    tmp_path: Path, encoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "x"
    folder.mkdir()
    article = folder / "bridge.txt"
    article.write_text(BRIDGE)
    (tmp_path / "link.txt").symlink_to(article)
    index = tmp_path / "index"
    monkeypatch.chdir(tmp_path)

    first = run_ingest([article.resolve()], index_root=index, encoder=encoder, progress=False)
    assert first.added == 1
    [article_id] = stored_articles(index)

    for number, spelling in enumerate([Path("x/bridge.txt"), Path("./x/../x/bridge.txt"), Path("link.txt")]):
        # the text changes each time: the same article must be updated, never a second one added
        article.write_text(BRIDGE + f"\nCorrection number {number}: the vote was on Wednesday.\n")
        summary = run_ingest([spelling], index_root=index, encoder=encoder, progress=False)
        assert (summary.added, summary.updated, summary.articles_total) == (0, 1, 1), (spelling, summary)
        stored = stored_articles(index)
        assert list(stored) == [article_id]
        assert f"Correction number {number}" in stored[article_id][1]  # no stale text is served


def test_an_index_built_with_path_spelled_ids_gets_no_second_copy_of_the_seed(
    tmp_path: Path, encoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ingest.job as job
    from index.models import legacy_article_id

    if not (SEED / SEED_NAME).exists():
        pytest.skip(f"{SEED} is not present")
    index = tmp_path / "index"
    monkeypatch.chdir(ROOT)
    relative = Path("..") / "shared" / "corpus" / "seed"  # as the Makefile spells it
    with monkeypatch.context() as old_ids:
        old_ids.setattr(job, "stable_article_id", legacy_article_id)  # what an index built before has
        run_ingest([relative], index_root=index, encoder=encoder, progress=False)
    [old_id] = stored_articles(index)

    again = run_ingest([relative], index_root=index, encoder=encoder, progress=False)
    assert again.articles_total == 1 and again.added == 0
    [new_id] = stored_articles(index)
    assert new_id != old_id  # the article moved to its real-path id (replaced, not duplicated)
    assert run_ingest([SEED.resolve()], index_root=index, encoder=encoder, progress=False).unchanged == 1
    assert list(stored_articles(index)) == [new_id]


# ------------------------------------------------------------------------------ 15: the report is escaped


def test_the_report_escapes_control_characters_in_names(tmp_path: Path, encoder) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "bridge.txt").write_text(BRIDGE)
    (folder / "evil\n  skipped fake.txt: pwned.txt").write_text("")  # empty: reported as skipped
    (folder / "\x1b[31mred\x1b[0m.pdf").write_bytes(b"%PDF-1.4")  # unsupported: reported as skipped
    summary = run_ingest([folder], index_root=tmp_path / "index", encoder=encoder, progress=False)
    report = summary.render()
    assert "\x1b" not in report
    skipped_lines = [line for line in report.splitlines() if line.startswith("  skipped ")]
    assert len(skipped_lines) == 2, report
    assert any("evil\\n  skipped fake.txt: pwned.txt: empty file" in line for line in skipped_lines)
    assert any("\\x1b[31mred\\x1b[0m.pdf: unsupported extension" in line for line in skipped_lines)


def test_cli_errors_escape_control_characters(tmp_path: Path) -> None:
    result = run_cli(str(tmp_path / "missing\n\x1b[2Jfake line"), "--index", str(tmp_path / "X"))
    assert_clean_failure(result, "missing\\n\\x1b[2Jfake line")
    assert "\x1b" not in result.stderr


# ------------------------------------------------------------------------------ 16: "click here" in prose

PHISHING = (
    "Security researchers said staff at the county office were told in an email to click here to claim "
    "a holiday bonus, and that several of them did before the IT department blocked the link."
)


def test_a_paragraph_that_mentions_click_here_is_kept() -> None:
    assert clean(PHISHING).text == PHISHING
    promo = "Prices rose again in May. To read the full report, click here. Click here to subscribe."
    cleaned = clean(promo)
    assert cleaned.text == "Prices rose again in May."  # calls to action still go
    assert cleaned.dropped == ["To read the full report, click here.", "Click here to subscribe."]


def test_an_article_whose_only_paragraph_says_click_here_is_ingested(tmp_path: Path, encoder) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "phishing.txt").write_text(f"County staff fall for phishing email\n\n{PHISHING}\n")
    summary = run_ingest([folder], index_root=tmp_path / "index", encoder=encoder, progress=False)
    assert (summary.added, summary.skipped) == (1, [])
    [(title, text)] = stored_articles(tmp_path / "index").values()
    assert text == PHISHING
