"""Incremental builds, atomic swaps and the model check, on real files, model and FAISS."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence

import numpy as np
import pytest

from embeddings.store import chunk_vector_id
from qa.engine import Verbatim
from qa.index import IndexMismatchError, load_index, sentence_vector_id

from .conftest import ROOT

SEED_A = "000_ca5c4864f6c7d21a"
SEED_B = "001_dd8c4ca6def8021f"
TROOPS = "How many U.S. military personnel are forward deployed in the region?"


@pytest.fixture
def embedded(make_engine: Callable[..., Verbatim], monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the texts handed to the encoder for embedding."""
    counts: list[int] = []
    engine = make_engine()
    original = engine.encoder.encode_passages

    def counting(texts: Sequence[str], progress=None):  # type: ignore[no-untyped-def]
        counts.append(len(texts))
        return original(texts, progress)

    monkeypatch.setattr(engine.encoder, "encode_passages", counting)
    return counts


def test_unchanged_rerun_embeds_nothing(make_engine, seed_dir, embedded) -> None:  # type: ignore[no-untyped-def]
    engine = make_engine()
    first = engine.build_index([seed_dir])
    assert sorted(first.added) == [SEED_A, SEED_B] and first.written
    assert sum(embedded) > 0
    embedded.clear()
    again = engine.build_index([seed_dir])
    assert sum(embedded) == 0
    assert again.unchanged == [SEED_A, SEED_B] and not again.written
    assert again.index_version == first.index_version


def test_editing_one_file_reembeds_only_it(make_engine, seed_dir, embedded) -> None:  # type: ignore[no-untyped-def]
    engine = make_engine()
    engine.build_index([seed_dir])
    index = engine.index
    edited = seed_dir / f"{SEED_B}.txt"
    edited.write_text(edited.read_text().replace("about 100,000", "about 90,000"))
    embedded.clear()
    report = engine.build_index([seed_dir])
    assert report.updated == [SEED_B] and report.unchanged == [SEED_A]
    new_index = engine.index
    b = new_index.entries[SEED_B]
    assert sum(embedded) == len(b.chunks) + len(b.sentences)
    assert new_index.entries[SEED_A] == index.entries[SEED_A]
    assert "about 90,000" in engine.ask(TROOPS).quotes[0].text


def test_a_text_both_chunk_and_sentence_is_encoded_once(make_engine, tmp_path, embedded) -> None:  # type: ignore[no-untyped-def]
    # A title above a paragraph too long to join it is a chunk of one sentence (a tenth of
    # SciFact's sentences are such titles); its vector is computed once and serves as both.
    folder = tmp_path / "docs"
    folder.mkdir()
    body = " ".join(f"Clause {n} of the treaty binds both parties to consult." for n in range(20))
    (folder / "treaty.txt").write_text(f"Treaty of Mutual Cooperation\n\n{body}\n")
    engine = make_engine()
    engine.build_index([folder])
    entry = engine.index.entries["treaty"]
    titles = [c for c in entry.chunks if len(c.sentences) == 1]
    assert [c.text for c in titles] == ["Treaty of Mutual Cooperation"]
    assert sum(embedded) == len(entry.chunks) + len(entry.sentences) - 1
    (title,) = titles
    np.testing.assert_array_equal(
        engine.index.chunk_store.vectors(np.array([chunk_vector_id(title.chunk_id)])),
        engine.index.sentence_store.vectors(
            np.array([sentence_vector_id("treaty", title.sentences[0])])
        ),
    )


def test_deleted_file_disappears_from_answers(make_engine, seed_dir) -> None:  # type: ignore[no-untyped-def]
    engine = make_engine()
    engine.build_index([seed_dir])
    assert engine.ask(TROOPS).quotes[0].doc_id == SEED_B
    (seed_dir / f"{SEED_B}.txt").unlink()
    report = engine.build_index([seed_dir])
    assert report.removed == [SEED_B]
    answer = engine.ask(TROOPS, top_k=5)
    assert all(q.doc_id != SEED_B for q in answer.quotes)
    assert len(engine.index.chunk_store) == len(engine.index.entries[SEED_A].chunks)


def test_unreadable_update_keeps_the_last_good_version(make_engine, seed_dir) -> None:  # type: ignore[no-untyped-def]
    engine = make_engine()
    engine.build_index([seed_dir])
    (seed_dir / f"{SEED_B}.txt").write_bytes(b"\x00\x01\x02 binary now")
    report = engine.build_index([seed_dir])
    assert report.kept_after_failure == [SEED_B]
    assert "binary" in report.failed[0].reason
    assert "about 100,000" in engine.ask(TROOPS).quotes[0].text


def test_index_built_with_another_model_is_refused(make_engine, seed_dir, tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = make_engine()
    engine.build_index([seed_dir])
    with pytest.raises(IndexMismatchError, match="re-index"):
        load_index(engine.settings.resolved_index_dir, "intfloat/multilingual-e5-small")
    other = make_engine(model=str(tmp_path / "no-such-model"))
    with pytest.raises(IndexMismatchError, match="verbatim index"):
        other.ask(TROOPS)


_KILLED_BUILD = """
import sys
from pathlib import Path
from qa import index as index_module
from qa.engine import Verbatim
from qa.settings import Settings

home, corpus, point = sys.argv[1:4]

def pause(*_):
    print("paused", flush=True)
    sys.stdin.readline()  # blocks until the parent kills this process

progress = None
if point == "embedding":
    progress = index_module.BuildProgress(start=lambda n: None, advance=pause)
else:
    write_files = index_module._fsync_tree
    index_module._fsync_tree = lambda root: (write_files(root), pause())
Verbatim(Settings(home=Path(home))).build_index([Path(corpus)], progress)
"""


@pytest.mark.parametrize("point", ["embedding", "writing"])
def test_killed_build_leaves_previous_index_serving(make_engine, seed_dir, tmp_path, point) -> None:  # type: ignore[no-untyped-def]
    engine = make_engine()
    before = engine.build_index([seed_dir])
    edited = seed_dir / f"{SEED_B}.txt"
    edited.write_text(edited.read_text().replace("about 100,000", "about 80,000"))
    (seed_dir / "extra.md").write_text("# Extra\n\nA new document about joint exercises in 2016.")

    child = subprocess.Popen(
        [sys.executable, "-c", _KILLED_BUILD, str(engine.settings.home), str(seed_dir), point],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=ROOT,
        text=True,
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "paused"
    child.send_signal(signal.SIGKILL)
    child.wait()

    survivor = make_engine()
    assert survivor.index.version == before.index_version
    assert "about 100,000" in survivor.ask(TROOPS).quotes[0].text

    after = survivor.build_index([seed_dir])
    clean = make_engine(home=tmp_path / "clean").build_index([seed_dir])
    assert after.index_version == clean.index_version
    resumed, fresh = survivor.index, make_engine(home=tmp_path / "clean").index
    assert json.dumps(sorted(resumed.chunks_by_vector_id)) == json.dumps(
        sorted(fresh.chunks_by_vector_id)
    )
    ids = np.array(sorted(resumed.chunks_by_vector_id), dtype=np.int64)
    assert np.allclose(resumed.chunk_store.vectors(ids), fresh.chunk_store.vectors(ids), atol=1e-5)
    assert not list(survivor.settings.resolved_index_dir.glob(".build-*"))
    assert "about 80,000" in survivor.ask(TROOPS).quotes[0].text
