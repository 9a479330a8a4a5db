"""The Milvus vector store against a real Milvus server, beside FAISS: both stores must
behave the same, and an index on Milvus must give the answers an index on FAISS gives."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest

from bots.http import create_app
from embeddings.milvus import MilvusStore
from embeddings.store import (
    DocCondition,
    DocFields,
    FaissStore,
    VectorStore,
    VectorStoreUnavailable,
)
from qa.engine import Verbatim
from qa.filters import Filters
from qa.index import VerbatimIndexError

from .live_server import LiveServer

TROOPS = "How many U.S. military personnel are forward deployed in the region?"
QUESTIONS = [
    TROOPS,
    "When was the Japan-U.S. Joint Declaration on Security issued?",
    "What will the Japan-U.S. Alliance continue to be?",
]


def _unit(rows: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(rows, 16)).astype(np.float32)
    unit: np.ndarray = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return unit


@pytest.fixture(params=["faiss", "milvus"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> VectorStore:
    if request.param == "faiss":
        return FaissStore(16)
    uri = request.getfixturevalue("milvus")
    return MilvusStore(16, uri, f"test_{tmp_path.name.replace('-', '_')}"[:60]).create()


DOCS = [
    DocFields("doc0", source="MOFA", lang="en", date="2014-12-19"),
    DocFields("doc1", source="MOFA", lang="ja", date="1996-04-17"),
    DocFields("doc2", lang="en"),  # no source, no date
]


def test_both_stores_add_search_filter_and_remove_alike(store: VectorStore) -> None:
    vectors = _unit(300, seed=1)
    ids = np.arange(1000, 1300, dtype=np.int64)
    store.add(ids, vectors, [DOCS[i % 3] for i in range(300)])
    assert len(store) == 300
    scores, found = store.search(vectors[:3], 5)
    assert found[:, 0].tolist() == [1000, 1001, 1002]
    assert np.allclose(scores[:, 0], 1.0, atol=1e-4)
    assert np.allclose(store.vectors(np.array([1005, 1001])), vectors[[5, 1]], atol=1e-6)
    allowed = np.array([1010, 1020, 1030], dtype=np.int64)
    _, only = store.search(vectors[:1], 10, allowed)
    assert sorted(i for i in only[0].tolist() if i >= 0) == [1010, 1020, 1030]
    # A condition on document fields selects what its ids select (Milvus filters by it).
    conditions = {
        "doc0": DocCondition(doc_ids=("doc0",)),
        "doc1": DocCondition(lang="ja"),
        "doc0 doc1": DocCondition(source="MOFA"),
        "doc0 ": DocCondition(date_from="2000", date_to="2014"),
        "doc1 ": DocCondition(date_to="1996-04"),
    }
    for names, condition in conditions.items():
        owners = {int(name[-1]) for name in names.split()}
        selected = ids[[i % 3 in owners for i in range(300)]]
        _, hits = store.search(vectors[:2], 20, selected, condition)
        assert {i for i in hits.ravel().tolist() if i >= 0} <= set(selected.tolist()), condition
        assert (hits[:, :10] >= 0).all(), condition
    store.remove(np.array([1000, 1001], dtype=np.int64))
    _, after = store.search(vectors[:1], 3)
    assert 1000 not in after[0].tolist() and len(store) == 298


def test_milvus_index_answers_like_faiss_and_updates_incrementally(
    milvus: str, make_engine: Callable[..., Verbatim], tmp_path: Path, seed_dir: Path
) -> None:
    faiss_engine = make_engine(home=tmp_path / "faiss")
    faiss_engine.build_index([seed_dir])
    engine = make_engine(home=tmp_path / "milvus", vector_store="milvus", milvus_uri=milvus)
    engine.build_index([seed_dir])
    assert engine.index.manifest["vector_store"]["kind"] == "milvus"
    selections = [
        None,
        Filters(source="Ministry of Foreign Affairs of Japan"),
        Filters(date_from="2014", date_to="2014-12"),
        Filters(doc_ids=["001_dd8c4ca6def8021f"], lang="en"),
    ]
    for question in QUESTIONS:
        for filters in selections:  # filtered on the Milvus server by document fields
            on_milvus = engine.search(question, 5, filters)
            on_faiss = faiss_engine.search(question, 5, filters)
            assert [p.chunk_id for p in on_milvus.passages] == [
                p.chunk_id for p in on_faiss.passages
            ], filters
        assert [q.text for q in engine.ask(question).quotes] == [
            q.text for q in faiss_engine.ask(question).quotes
        ]
    extra = seed_dir / "exercise.txt"
    extra.write_text("Exercise notes\n\nThe logistics exercise used the code KX-7741 in 2016.")
    report = engine.build_index([seed_dir])
    assert report.added == ["exercise"] and report.chunks_embedded == 1  # only the new file
    assert engine.search("code KX-7741", 1).passages[0].doc_id == "exercise"
    extra.unlink()
    engine.build_index([seed_dir])
    assert all(p.doc_id != "exercise" for p in engine.search("code KX-7741", 10).passages)


def test_a_settled_version_reads_bounded_and_answers_the_same(
    milvus: str, make_engine: Callable[..., Verbatim], tmp_path: Path, seed_dir: Path
) -> None:
    """Strong reads wait for the server's next tick (~200 ms each, a dozen per question); once
    a version's vectors are older than Milvus's graceful time, Bounded reads must see them all
    (`make bench-replicas` measures the difference)."""
    settings = {"vector_store": "milvus", "milvus_uri": milvus, "milvus_collection": "settled"}
    builder = make_engine(home=tmp_path / "builder", **settings)
    builder.build_index([seed_dir])
    fresh = [
        [(q.doc_id, q.char_start, q.char_end) for q in builder.ask(x).quotes] for x in QUESTIONS
    ]
    for pointer in builder.index.directory.glob("*/milvus.json"):
        written = pointer.stat().st_mtime
        os.utime(pointer, (written - 60, written - 60))  # as if built a minute ago
    index_dir = builder.settings.resolved_index_dir
    reader = make_engine(home=tmp_path / "reader", index_dir=index_dir, **settings)
    settled = [
        [(q.doc_id, q.char_start, q.char_end) for q in reader.ask(x).quotes] for x in QUESTIONS
    ]
    assert settled == fresh


def test_switching_to_milvus_moves_vectors_without_encoding(
    milvus: str, make_engine: Callable[..., Verbatim], tmp_path: Path
) -> None:
    make_engine(home=tmp_path / "home").build_index()
    moved = make_engine(home=tmp_path / "home", vector_store="milvus", milvus_uri=milvus)
    report = moved.build_index()
    assert report.written and report.chunks_embedded == 0 and report.sentences_embedded == 0
    assert "100,000" in moved.ask(TROOPS).quotes[0].text


def test_missing_collection_and_outage_are_clear_and_fast(
    milvus: str, make_engine: Callable[..., Verbatim], tmp_path: Path
) -> None:
    engine = make_engine(
        home=tmp_path / "home", vector_store="milvus", milvus_uri=milvus, milvus_collection="gone"
    )
    engine.build_index()
    MilvusStore(384, milvus, "gone_chunks")._connected().drop_collection("gone_chunks")
    engine.reload()
    with pytest.raises(
        VectorStoreUnavailable, match=r"no collection 'gone_chunks'.*verbatim index"
    ):
        engine.ask(TROOPS)

    settings = engine.settings.model_copy(update={"milvus_uri": "http://127.0.0.1:9"})  # closed
    started = time.monotonic()
    with LiveServer(create_app(settings, Verbatim(settings, engine.encoder))) as server:
        ready = _poll_until_not_loading(f"{server.url}/readyz")
        asked = httpx.post(f"{server.url}/v1/ask", json={"question": TROOPS}, timeout=30)
    assert ready.status_code == 503 and "Milvus" in ready.json()["error"]["message"]
    assert asked.status_code == 503 and "Milvus" in asked.json()["error"]["message"]
    assert time.monotonic() - started < 60  # an outage is an answer, never a hang


def _poll_until_not_loading(url: str) -> httpx.Response:
    """/readyz until start-up has finished one way or the other (bounded)."""
    deadline = time.monotonic() + 60
    while True:
        response = httpx.get(url, timeout=30)
        if "loading" not in response.text or time.monotonic() > deadline:
            return response
        time.sleep(0.1)  # waiting on a starting server's state, with a deadline


def test_shards_encoded_on_several_machines_make_one_index(
    milvus: str, make_engine: Callable[..., Verbatim], tmp_path: Path, seed_dir: Path
) -> None:
    for number in range(4):
        (seed_dir / f"note_{number}.md").write_text(
            f"# Note {number}\n\nExercise {number} tested the logistics code KX-{7740 + number}. "
            "It ran for two weeks."
        )
    options = {"vector_store": "milvus", "milvus_uri": milvus, "milvus_collection": "sharded"}
    # Two "machines": own homes, one shared Milvus. Each encodes only its share.
    reports = [
        make_engine(home=tmp_path / f"worker{shard}", **options).prepare_shard([seed_dir], shard, 2)
        for shard in (1, 2)
    ]
    shares = [set(report.added) for report in reports]
    assert shares[0] and shares[1] and not shares[0] & shares[1]
    assert shares[0] | shares[1] == {path.stem for path in seed_dir.iterdir()}
    edited = seed_dir / "note_0.md"  # changed after staging: its staged vectors must not be used
    edited.write_text(edited.read_text().replace("two weeks", "three weeks"))

    coordinator = make_engine(home=tmp_path / "coordinator", **options)
    built = coordinator.build_index([seed_dir])
    note = coordinator.index.entries["note_0"]
    assert (built.chunks_embedded, built.sentences_embedded) == (
        len(note.chunks),
        len(note.sentences),
    )  # only the edited document was encoded here; the rest came from the workers
    reference = make_engine(home=tmp_path / "faiss")
    reference.build_index([seed_dir])
    for question in [*QUESTIONS, "Which exercise used the code KX-7742?"]:
        assert [p.chunk_id for p in coordinator.search(question, 5).passages] == [
            p.chunk_id for p in reference.search(question, 5).passages
        ]
        assert [q.text for q in coordinator.ask(question).quotes] == [
            q.text for q in reference.ask(question).quotes
        ]
    staging = coordinator.settings.store.staging(coordinator.encoder.dimension)
    assert staging is not None
    assert set(staging.staged_keys(sorted(shares[0] | shares[1]))) == {"note_0"}  # used: gone


def test_shard_needs_a_shared_store(make_engine: Callable[..., Verbatim]) -> None:
    with pytest.raises(VerbatimIndexError, match="VERBATIM_VECTOR_STORE=milvus"):
        make_engine().prepare_shard(None, 1, 2)


def test_each_collection_has_its_own_milvus_collections(
    milvus: str, make_engine: Callable[..., Verbatim], tmp_path: Path
) -> None:
    home, hr = tmp_path / "home", tmp_path / "hr"
    hr.mkdir()
    (hr / "leave.md").write_text("# Leave\n\nEmployees may take sixteen weeks of leave.\n")
    shared = {"home": home, "vector_store": "milvus", "milvus_uri": milvus}
    seeds = make_engine(**shared, milvus_collection="teams")
    seeds.build_index()
    people = make_engine(**shared, milvus_collection="teams", collection="hr")
    people.build_index([hr])
    client = MilvusStore(384, milvus, "teams_chunks")._connected()
    assert {"teams_chunks", "teams_hr_chunks"} <= set(client.list_collections())
    assert people.ask("How many weeks of leave?").quotes[0].doc_id == "leave"
    people.build_index([hr])  # a re-index of one collection leaves the other as it was
    assert seeds.ask(TROOPS).quotes[0].doc_id == "001_dd8c4ca6def8021f"
    assert {d.doc_id for d in seeds.documents()} == {"000_ca5c4864f6c7d21a", "001_dd8c4ca6def8021f"}
