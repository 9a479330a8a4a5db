"""Vector stores behind one interface. FAISS, embedded in the process, is the default.

`FaissStore` keeps the vectors themselves as the source of truth (so deletes and incremental
rebuilds never re-encode anything) and builds the FAISS index from them: exact inner-product
search for small collections, HNSW above `hnsw_threshold` vectors.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]
Ids = npt.NDArray[np.int64]

_VECTORS_FILE = "vectors.npy"
_IDS_FILE = "ids.npy"
_FAISS_FILE = "hnsw.faiss"
DEFAULT_HNSW_THRESHOLD = 50_000


def _faiss() -> Any:
    """faiss, imported on first use (it adds start-up time) and untyped (its stubs are partial)."""
    import faiss

    return faiss


def set_search_threads(threads: int) -> None:
    """OpenMP threads FAISS uses per search (process-wide)."""
    _faiss().omp_set_num_threads(threads)


def chunk_vector_id(chunk_id: str) -> int:
    """A stable 63-bit integer id for a chunk id string (FAISS ids are int64)."""
    return int(hashlib.sha1(chunk_id.encode()).hexdigest()[:15], 16)


class VectorStore(Protocol):
    """What the index builder and the retriever need from a vector store."""

    dimension: int

    def __len__(self) -> int: ...

    def add(self, ids: Ids, vectors: Vectors) -> None: ...

    def remove(self, ids: Ids) -> int: ...

    def search(self, queries: Vectors, k: int, allowed: Ids | None = None) -> tuple[Vectors, Ids]:
        """Scores and ids of the `k` nearest vectors per query (among `allowed` ids when
        given), best first; id -1 pads."""
        ...

    def save(self, directory: Path) -> None: ...


class FaissStore:
    def __init__(self, dimension: int, hnsw_threshold: int = DEFAULT_HNSW_THRESHOLD) -> None:
        self.dimension = dimension
        self.hnsw_threshold = hnsw_threshold
        self._ids: Ids = np.zeros(0, dtype=np.int64)
        self._vectors: Vectors = np.zeros((0, dimension), dtype=np.float32)
        self._index: Any = None
        self._rows: dict[int, int] | None = None
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def kind(self) -> str:
        return "hnsw" if len(self) >= self.hnsw_threshold else "flat"

    def add(self, ids: Ids, vectors: Vectors) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dimension:
            raise ValueError(f"expected vectors of dimension {self.dimension}, got {vectors.shape}")
        if len(ids) != len(vectors):
            raise ValueError("ids and vectors differ in length")
        ids = np.asarray(ids, dtype=np.int64)
        if np.isin(ids, self._ids).any() or len(np.unique(ids)) != len(ids):
            raise ValueError("duplicate vector ids")
        self._ids = np.concatenate([self._ids, ids])
        self._vectors = np.vstack([self._vectors, vectors])
        self._index = self._rows = None

    def remove(self, ids: Ids) -> int:
        keep = ~np.isin(self._ids, np.asarray(ids, dtype=np.int64))
        removed = int(len(keep) - keep.sum())
        if removed:
            self._ids = self._ids[keep]
            self._vectors = self._vectors[keep]
            self._index = self._rows = None
        return removed

    def search(self, queries: Vectors, k: int, allowed: Ids | None = None) -> tuple[Vectors, Ids]:
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dimension)
        params = None
        if allowed is not None:
            faiss = _faiss()

            rows = np.flatnonzero(np.isin(self._ids, allowed)).astype(np.int64)
            k = min(k, len(rows))
            selector = faiss.IDSelectorBatch(rows)
            params = (
                faiss.SearchParametersHNSW(sel=selector, efSearch=128)
                if self.kind == "hnsw"
                else faiss.SearchParameters(sel=selector)
            )
        if len(self) == 0 or k <= 0:
            empty = np.zeros((len(queries), 0))
            return empty.astype(np.float32), empty.astype(np.int64)
        scores, positions = self._built().search(queries, min(k, len(self)), params=params)
        ids = np.where(positions >= 0, self._ids[np.clip(positions, 0, None)], -1)
        return scores.astype(np.float32), ids.astype(np.int64)

    def vectors(self, ids: Ids) -> Vectors:
        """The stored vectors for `ids` (all must be present), in that order."""
        if self._rows is None:
            self._rows = {int(vector_id): row for row, vector_id in enumerate(self._ids)}
        return self._vectors[[self._rows[int(vector_id)] for vector_id in ids]]

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        np.save(directory / _VECTORS_FILE, self._vectors)
        np.save(directory / _IDS_FILE, self._ids)
        if self.kind == "hnsw":
            faiss = _faiss()

            faiss.write_index(self._built(), str(directory / _FAISS_FILE))

    @classmethod
    def load(
        cls, directory: Path, dimension: int, hnsw_threshold: int = DEFAULT_HNSW_THRESHOLD
    ) -> FaissStore:
        store = cls(dimension, hnsw_threshold)
        store._vectors = np.load(directory / _VECTORS_FILE)
        store._ids = np.load(directory / _IDS_FILE)
        if store._vectors.shape != (len(store._ids), dimension):
            raise ValueError(
                f"vector file shape {store._vectors.shape} does not match the manifest"
            )
        if store.kind == "hnsw" and (directory / _FAISS_FILE).exists():
            faiss = _faiss()

            store._index = faiss.read_index(str(directory / _FAISS_FILE))
        return store

    def _built(self) -> Any:
        with self._lock:
            if self._index is None:
                self._index = self._build()
            return self._index

    def _build(self) -> Any:
        faiss = _faiss()

        index: Any
        if self.kind == "hnsw":
            index = faiss.IndexHNSWFlat(self.dimension, 32, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = 80
            index.hnsw.efSearch = 128
        else:
            index = faiss.IndexFlatIP(self.dimension)
        index.add(self._vectors)
        return index
