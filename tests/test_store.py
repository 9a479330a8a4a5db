from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from embeddings.store import FaissStore, StoreConfig


def _unit(rows: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(rows, dim)).astype(np.float32)
    unit: np.ndarray = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return unit


def test_exact_search_finds_each_vector_first() -> None:
    vectors = _unit(200)
    store = FaissStore(16)
    store.add(np.arange(1000, 1200, dtype=np.int64), vectors)
    scores, ids = store.search(vectors[:5], 3)
    assert ids[:, 0].tolist() == [1000, 1001, 1002, 1003, 1004]
    assert np.allclose(scores[:, 0], 1.0, atol=1e-5)
    assert store.kind == "flat"


def test_hnsw_above_threshold_agrees_with_exact_search() -> None:
    vectors = _unit(3000, seed=1)
    ids = np.arange(3000, dtype=np.int64)
    exact, approximate = (
        FaissStore(16, StoreConfig(hnsw_threshold=10**9)),
        FaissStore(16, StoreConfig(hnsw_threshold=1000)),
    )
    exact.add(ids, vectors)
    approximate.add(ids, vectors)
    assert approximate.kind == "hnsw"
    queries = _unit(50, seed=2)
    _, exact_ids = exact.search(queries, 10)
    _, approx_ids = approximate.search(queries, 10)
    recall = np.mean(
        [len(set(a) & set(e)) / 10 for a, e in zip(approx_ids, exact_ids, strict=True)]
    )
    assert recall >= 0.95


def test_a_graph_is_built_on_every_core_and_searches_stay_on_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import faiss

    faiss.omp_set_num_threads(1)  # as the engine sets it for its questions
    used: list[int] = []
    store = FaissStore(16, StoreConfig(kind="hnsw"))
    store.add(np.arange(500, dtype=np.int64), _unit(500, seed=5))
    original = faiss.IndexHNSWFlat.add

    def add(index, vectors):  # type: ignore[no-untyped-def]
        used.append(faiss.omp_get_max_threads())
        return original(index, vectors)

    monkeypatch.setattr(faiss.IndexHNSWFlat, "add", add)
    store.search(_unit(1, seed=6), 5)  # the graph is built on first use
    assert used == [os.cpu_count()]
    assert faiss.omp_get_max_threads() == 1


KINDS = [
    StoreConfig(kind="flat"),
    StoreConfig(kind="hnsw"),
    StoreConfig(kind="ivfpq", pq_bytes=4),
]


@pytest.mark.parametrize("config", KINDS, ids=lambda c: c.kind)
def test_remove_deletes_from_results_and_survives_save_and_load(
    tmp_path: Path, config: StoreConfig
) -> None:
    vectors = _unit(2000, seed=3)
    store = FaissStore(16, config)
    store.add(np.arange(2000, dtype=np.int64), vectors)
    assert store.remove(np.array([7, 8, 99999], dtype=np.int64)) == 2
    _, ids = store.search(vectors[7:8], 1)
    assert ids[0, 0] != 7
    store.save(tmp_path)
    assert (tmp_path / f"{config.kind}.faiss").exists() == (config.kind != "flat")
    loaded = FaissStore.load(tmp_path, 16, config)
    assert isinstance(loaded._vectors.base, np.memmap)  # mapped, not read: large stores start fast
    assert len(loaded) == 1998 and loaded.kind == config.kind
    scores, ids = loaded.search(vectors[9:10], 1)
    assert ids[0, 0] == 9 and scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    assert np.allclose(loaded.vectors(np.array([9, 3])), vectors[[9, 3]])
    with pytest.raises(KeyError):
        loaded.vectors(np.array([7]))


def test_ivfpq_with_exact_rescoring_keeps_recall() -> None:
    # Clustered data, like embeddings of a real collection (random noise is not).
    rng = np.random.default_rng(5)
    centres = _unit(50, dim=64, seed=6)
    noisy = centres[rng.integers(0, 50, 20_000)] + 0.3 * _unit(20_000, dim=64, seed=7)
    vectors = (noisy / np.linalg.norm(noisy, axis=1, keepdims=True)).astype(np.float32)
    ids = np.arange(20_000, dtype=np.int64)
    exact, compressed = FaissStore(64), FaissStore(64, StoreConfig(kind="ivfpq", pq_bytes=16))
    exact.add(ids, vectors)
    compressed.add(ids, vectors)
    queries = (vectors[rng.integers(0, 20_000, 100)] + 0.05 * _unit(100, dim=64, seed=8)).astype(
        np.float32
    )
    _, expected = exact.search(queries, 10)
    scores, found = compressed.search(queries, 10)
    recall = np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found, expected, strict=True)])
    assert recall >= 0.95
    assert (np.diff(scores, axis=1) <= 1e-6).all()  # exact scores, best first


@pytest.mark.parametrize("config", KINDS, ids=lambda c: c.kind)
def test_search_among_allowed_ids_only(config: StoreConfig) -> None:
    vectors = _unit(2000, seed=4)
    store = FaissStore(16, config)
    store.add(np.arange(2000, dtype=np.int64), vectors)
    allowed = np.array([3, 50, 120], dtype=np.int64)
    _, ids = store.search(vectors[7:8], 10, allowed=allowed)
    assert sorted(ids[0].tolist()) == [3, 50, 120]
    _, ids = store.search(vectors[50:51], 1, allowed=allowed)
    assert ids[0].tolist() == [50]


def test_search_asks_for_more_than_stored() -> None:
    store = FaissStore(16)
    store.add(np.array([5], dtype=np.int64), _unit(1))
    _, ids = store.search(_unit(1), 10)
    assert ids.tolist() == [[5]]
