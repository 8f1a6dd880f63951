"""The ingest job end to end on small real files: incremental, idempotent, atomic, and robust to bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from index.manifest import IndexError_, read_manifest
from index.publish import current_dir
from index.reader import load_index
from ingest.job import IngestError, run_ingest

ROOT = Path(__file__).resolve().parents[1]


def write_article(folder: Path, name: str, title: str, body: str) -> Path:
    path = folder / name
    path.write_text(f"{title}\n\n{body}\n")
    return path


BODY_A = (
    "The river council in Larkford voted on Tuesday to rebuild the old stone bridge. "
    "Mayor Ines Varga said the work would start in spring. "
    "Residents have crossed the river by ferry since the floods of last year."
)
BODY_B = (
    "A small observatory in the hills recorded an unusually bright meteor on Friday night. "
    "Astronomer Teo Lindqvist said the object burned up high over the valley. "
    "Nobody reported any damage."
)


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "articles"
    folder.mkdir()
    write_article(folder, "bridge.txt", "Larkford to rebuild its bridge", BODY_A)
    write_article(folder, "meteor.txt", "Bright meteor over the valley", BODY_B)
    return folder


def test_incremental_ingest(tmp_path: Path, corpus: Path, encoder) -> None:
    index = tmp_path / "index"
    first = run_ingest([corpus], index_root=index, encoder=encoder, progress=False)
    assert (first.added, first.chunks_embedded, first.published) == (2, 2, True)

    again = run_ingest([corpus], index_root=index, encoder=encoder, progress=False)
    assert (again.added, again.unchanged, again.chunks_embedded, again.published) == (0, 2, 0, False)
    assert "nothing changed" in again.render()
    assert again.version == first.version

    # a changed article replaces its chunks; the other keeps its chunk ids and vectors
    before = load_index(index)
    meteor_chunk = next(c.id for c in before.chunks.values() if "meteor" in c.text)
    write_article(corpus, "bridge.txt", "Larkford to rebuild its bridge", BODY_A + " The budget is two million.")
    changed = run_ingest([corpus], index_root=index, encoder=encoder, progress=False)
    assert (changed.updated, changed.unchanged, changed.chunks_embedded) == (1, 1, 1)
    after = load_index(index)
    assert meteor_chunk in after.chunks
    assert any("two million" in c.text for c in after.chunks.values())
    assert not any(c.text.endswith("since the floods of last year.") for c in after.chunks.values())
    assert after.vectors.ntotal == len(after.chunks) == 2

    # a duplicate (same content, different path) is stored once
    write_article(corpus, "meteor-copy.txt", "Bright meteor over the valley", BODY_B)
    dup = run_ingest([corpus], index_root=index, encoder=encoder, progress=False)
    assert dup.added == 0 and any("duplicate of" in reason for _, reason in dup.skipped)

    # --prune removes what is gone
    (corpus / "bridge.txt").unlink()
    kept = run_ingest([corpus], index_root=index, encoder=encoder, progress=False)
    assert kept.removed == 0 and load_index(index).manifest.counts["articles"] == 2
    pruned = run_ingest([corpus], index_root=index, prune=True, encoder=encoder, progress=False)
    assert pruned.removed == 1
    final = load_index(index)
    assert final.manifest.counts == {"articles": 1, "chunks": 1}
    assert final.bm25.size == final.vectors.ntotal == 1


def test_bad_input_is_reported_per_file(tmp_path: Path, corpus: Path, encoder) -> None:
    (corpus / "empty.txt").write_text("")
    (corpus / "binary.txt").write_bytes(b"\x00\x01\x02\xff" * 100)
    (corpus / "notes.pdf").write_bytes(b"%PDF-1.4")
    (corpus / "records.jsonl").write_text(
        json.dumps({"title": "Harbour reopens", "text": "The harbour reopened after repairs to the pier."})
        + "\n{not json\n"
        + json.dumps({"text": "A record without a title."})
        + "\n"
    )
    locked = corpus / "locked.txt"
    locked.write_text("Locked\n\nYou cannot read this.")
    locked.chmod(0)
    big = corpus / "big.txt"
    with big.open("w") as handle:
        handle.write("Huge\n\n")
        handle.write(("All work and no play. " * 1000 + "\n") * 2300)  # about 50 MB
    summary = run_ingest(
        [corpus, tmp_path / "missing-dir"], index_root=tmp_path / "index", encoder=encoder, progress=False
    )
    skipped = " | ".join(f"{origin}: {reason}" for origin, reason in summary.skipped)
    for name in (
        "empty.txt",
        "binary.txt",
        "notes.pdf",
        "records.jsonl:2",
        "records.jsonl:3",
        "big.txt",
        "missing-dir",
    ):
        assert name in skipped, skipped
    if os.geteuid() != 0:  # root can read anything
        assert "locked.txt" in skipped
    assert summary.added >= 3 and summary.published


def test_settings_mismatch_is_refused(tmp_path: Path, corpus: Path, encoder, settings) -> None:
    index = tmp_path / "index"
    run_ingest([corpus], index_root=index, encoder=encoder, progress=False)
    other = settings.model_copy(update={"chunk_target_tokens": 120})
    with pytest.raises(IngestError, match="target_tokens"):
        run_ingest([corpus], index_root=index, settings=other, encoder=encoder, progress=False)
    rebuilt = run_ingest([corpus], index_root=index, settings=other, rebuild=True, encoder=encoder, progress=False)
    assert rebuilt.published and read_manifest(current_dir(index)).chunking.target_tokens == 120


@pytest.mark.parametrize("victim", ["metadata.sqlite", "vectors.faiss", "bm25/data.csc.index.npy", "manifest.json"])
def test_corrupt_files_are_named_at_load(tmp_path: Path, corpus: Path, encoder, victim: str) -> None:
    index = tmp_path / "index"
    run_ingest([corpus], index_root=index, encoder=encoder, progress=False)
    path = current_dir(index) / victim
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(IndexError_, match=victim.split("/")[-1].replace(".", r"\.")):
        load_index(index)
