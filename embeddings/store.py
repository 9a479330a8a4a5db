"""Vector stores behind one interface. FAISS, embedded in the process, is the default.

`FaissStore` keeps the vectors themselves as the source of truth (so deletes and incremental
rebuilds never re-encode anything) and builds the FAISS index from them: exact inner-product
search for small collections, HNSW above `hnsw_threshold` vectors.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]
Ids = npt.NDArray[np.int64]

_VECTORS_FILE = "vectors.npy"
_IDS_FILE = "ids.npy"
# From here HNSW replaces exact search. SciFact's 50k sentence vectors answered in 9.4 ms p50
# (whole dense search) with HNSW against 15.5 ms exact, and built in 7 s; its 17.5k chunk vectors
# too, 4.4 ms against 6.3 ms, with the same nDCG@10 (0.685; 0.714 against 0.715 hybrid).
DEFAULT_HNSW_THRESHOLD = 10_000
_ADD_BATCH = 65_536
_EXACT_FILTER_LIMIT = 20_000  # allowed vectors scored exactly rather than through the index


def _faiss() -> Any:
    """faiss, imported on first use (it adds start-up time) and untyped (its stubs are partial)."""
    import faiss

    return faiss


class VectorStoreUnavailable(RuntimeError):
    """The vector store cannot be reached or used; the message says what to check."""


def checked(ids: Ids, vectors: Vectors, dimension: int) -> tuple[Ids, Vectors]:
    """`ids` and `vectors` as int64 and contiguous float32, or a ValueError saying what is off."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[1] != dimension:
        raise ValueError(f"expected vectors of dimension {dimension}, got {vectors.shape}")
    if len(ids) != len(vectors):
        raise ValueError("ids and vectors differ in length")
    return np.asarray(ids, dtype=np.int64), vectors


def set_search_threads(threads: int) -> None:
    """OpenMP threads FAISS uses per search (process-wide)."""
    _faiss().omp_set_num_threads(threads)


@contextmanager
def _every_core() -> Iterator[None]:
    """FAISS on every core for a while. Building an index parallelises where searching for
    one question does not (SciFact's 50k sentence vectors into HNSW: 12.3 s on one thread,
    5.5 s on two); the calling thread's own setting comes back afterwards."""
    faiss = _faiss()
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def chunk_vector_id(chunk_id: str) -> int:
    """A stable 63-bit integer id for a chunk id string (FAISS ids are int64)."""
    return int(hashlib.sha1(chunk_id.encode()).hexdigest()[:15], 16)


@dataclass(frozen=True)
class DocFields:
    """The document fields kept beside each vector by a store that filters on its server."""

    doc_id: str
    source: str = ""
    lang: str = ""
    date: str = ""  # ISO date, "" when the document has none


@dataclass(frozen=True)
class DocCondition:
    """A filter on document fields (all given conditions hold). Dates compare as ISO strings by
    prefix: date_to "2014" admits "2014-12-31"; a document without a date fails any date bound."""

    doc_ids: tuple[str, ...] | None = None
    source: str | None = None
    lang: str | None = None
    date_from: str | None = None
    date_to: str | None = None


class VectorStore(Protocol):
    """What the index builder and the retriever need from a vector store (FAISS or Milvus)."""

    dimension: int

    @property
    def kind(self) -> str: ...

    def __len__(self) -> int: ...

    def add(self, ids: Ids, vectors: Vectors, docs: Sequence[DocFields] | None = None) -> None:
        """Store vectors under their ids; `docs` gives each one's document fields (for stores
        that filter on their side)."""
        ...

    def remove(self, ids: Ids) -> int: ...

    def search(
        self,
        queries: Vectors,
        k: int,
        allowed: Ids | None = None,
        condition: DocCondition | None = None,
    ) -> tuple[Vectors, Ids]:
        """Scores and ids of the `k` nearest vectors per query (among `allowed` ids when
        given), best first; id -1 pads. `condition`, when given, selects the same vectors as
        `allowed` by document fields: a store that keeps them may filter by it instead."""
        ...

    def vectors(self, ids: Ids) -> Vectors:
        """The stored vectors of `ids`, in that order."""
        ...

    def save(self, directory: Path) -> None: ...


@dataclass(frozen=True)
class StoreConfig:
    """Which FAISS index serves the vectors, and its parameters (docs/scaling.md)."""

    kind: Literal["auto", "flat", "hnsw", "ivfpq"] = "auto"  # auto: flat, HNSW from threshold
    hnsw_threshold: int = DEFAULT_HNSW_THRESHOLD
    hnsw_m: int = 32
    hnsw_ef_construction: int = 80
    hnsw_ef_search: int = 128
    # 1M vectors: nprobe 128 with 40 x k re-scored gives recall@10 0.977 at 2.5 ms p50; nprobe 64
    # with 20 x k, 0.894 at 2.2 ms (docs/scaling.md)
    ivf_nprobe: int = 128  # inverted lists visited per search
    pq_bytes: int = 48  # bytes per vector in the product quantiser (384-d: 8 dims per byte)
    refine: int = 40  # IVF-PQ: k x refine candidates re-scored exactly from the stored vectors


class FaissStore:
    """Vectors and ids (the source of truth, memory-mapped once saved) and a FAISS index over
    them: exact `flat`, graph `hnsw`, or compressed `ivfpq` whose candidates are re-scored
    exactly against the stored vectors."""

    def __init__(self, dimension: int, config: StoreConfig | None = None) -> None:
        self.dimension = dimension
        self.config = config or StoreConfig()
        self._ids: Ids = np.zeros(0, dtype=np.int64)
        self._vectors: Vectors = np.zeros((0, dimension), dtype=np.float32)
        self._index: Any = None
        self._sorted: tuple[Ids, Ids] | None = None  # ids sorted, and their rows
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def kind(self) -> str:
        if self.config.kind != "auto":
            return self.config.kind
        return "hnsw" if len(self) >= self.config.hnsw_threshold else "flat"

    def add(self, ids: Ids, vectors: Vectors, docs: Sequence[DocFields] | None = None) -> None:
        ids, vectors = checked(ids, vectors, self.dimension)
        if np.isin(ids, self._ids).any() or len(np.unique(ids)) != len(ids):
            raise ValueError("duplicate vector ids")
        if len(self._ids):
            self._ids = np.concatenate([self._ids, ids])
            self._vectors = np.concatenate([self._vectors, vectors])
        else:  # the first batch is kept as it is: a large build never holds its vectors twice
            self._ids, self._vectors = ids, vectors
        self._index = self._sorted = None

    def remove(self, ids: Ids) -> int:
        keep = ~np.isin(self._ids, np.asarray(ids, dtype=np.int64))
        removed = int(len(keep) - keep.sum())
        if removed:
            self._ids = self._ids[keep]
            self._vectors = self._vectors[keep]
            self._index = self._sorted = None
        return removed

    def search(
        self,
        queries: Vectors,
        k: int,
        allowed: Ids | None = None,
        condition: DocCondition | None = None,
    ) -> tuple[Vectors, Ids]:
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dimension)
        params = None
        if allowed is not None:
            rows = self._rows_of(np.asarray(allowed, dtype=np.int64))
            if len(rows) <= _EXACT_FILTER_LIMIT:
                # A selective filter defeats approximate indexes (HNSW's graph and IVF's lists
                # may hold none of the allowed vectors near the query): score them all exactly.
                return self._exact_among(queries, np.sort(rows), k)
            params = self._search_parameters(_faiss().IDSelectorBatch(rows))
        if len(self) == 0 or k <= 0:
            empty = np.zeros((len(queries), 0))
            return empty.astype(np.float32), empty.astype(np.int64)
        k = min(k, len(self))
        wanted = k * self.config.refine if self.kind == "ivfpq" else k
        scores, positions = self._built().search(queries, min(wanted, len(self)), params=params)
        if self.kind == "ivfpq":
            scores, positions = self._rescored(queries, positions, k)
        ids = np.where(positions >= 0, self._ids[np.clip(positions, 0, None)], -1)
        return scores.astype(np.float32), ids.astype(np.int64)

    def vectors(self, ids: Ids) -> Vectors:
        """The stored vectors for `ids` (all must be present), in that order."""
        rows = self._rows_of(np.asarray(ids, dtype=np.int64), strict=True)
        return np.asarray(self._vectors[rows], dtype=np.float32)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        np.save(directory / _VECTORS_FILE, self._vectors)
        np.save(directory / _IDS_FILE, self._ids)
        if self.kind != "flat":  # graphs and trained quantisers are costly to rebuild
            _faiss().write_index(self._built(), str(directory / _index_file(self.kind)))

    @classmethod
    def load(cls, directory: Path, dimension: int, config: StoreConfig | None = None) -> FaissStore:
        """Vectors are memory-mapped: a large store opens in milliseconds and only the pages a
        search touches are read."""
        store = cls(dimension, config)
        # A plain ndarray view of the map: np.memmap's Python-level bookkeeping on every
        # slice cost ~12% of server CPU under load.
        store._vectors = np.load(directory / _VECTORS_FILE, mmap_mode="r").view(np.ndarray)
        store._ids = np.load(directory / _IDS_FILE)
        if store._vectors.shape != (len(store._ids), dimension):
            raise ValueError(
                f"vector file shape {store._vectors.shape} does not match the manifest"
            )
        index_file = directory / _index_file(store.kind)
        if store.kind != "flat" and index_file.exists():
            faiss = _faiss()
            flags = faiss.IO_FLAG_MMAP if store.kind == "ivfpq" else 0
            store._index = faiss.read_index(str(index_file), flags)
            store._tune(store._index)
        return store

    def _rows_of(self, ids: Ids, strict: bool = False) -> Ids:
        """Rows of `ids` in the store (binary search over the sorted ids: no per-id dict,
        which would cost ~100 bytes per vector at a million vectors)."""
        if self._sorted is None:
            order = np.argsort(self._ids, kind="stable")
            self._sorted = (self._ids[order], order)
        sorted_ids, order = self._sorted
        where = np.clip(np.searchsorted(sorted_ids, ids), 0, max(len(sorted_ids) - 1, 0))
        found = (sorted_ids[where] == ids) if len(sorted_ids) else np.zeros(len(ids), bool)
        if strict and not found.all():
            raise KeyError(f"unknown vector ids: {ids[~found][:5].tolist()}")
        rows: Ids = order[where[found]].astype(np.int64)
        return rows

    def _exact_among(self, queries: Vectors, rows: Ids, k: int) -> tuple[Vectors, Ids]:
        k = min(k, len(rows))
        exact = queries @ np.asarray(self._vectors[rows], dtype=np.float32).T
        best = np.argsort(-exact, axis=1, kind="stable")[:, :k]
        scores = np.take_along_axis(exact, best, axis=1).astype(np.float32)
        return scores, self._ids[rows[best]].astype(np.int64)

    def _rescored(self, queries: Vectors, positions: Ids, k: int) -> tuple[Vectors, Ids]:
        """Exact inner products for the compressed index's candidates, best k kept."""
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        best = np.full((len(queries), k), -1, dtype=np.int64)
        for row, (query, found) in enumerate(zip(queries, positions, strict=True)):
            candidates = np.sort(found[found >= 0])  # sorted rows read the mapped file in order
            exact = np.asarray(self._vectors[candidates], dtype=np.float32) @ query
            top = np.argsort(-exact, kind="stable")[:k]
            scores[row, : len(top)] = exact[top]
            best[row, : len(top)] = candidates[top]
        return scores, best

    def _search_parameters(self, selector: Any) -> Any:
        faiss = _faiss()
        if self.kind == "hnsw":
            return faiss.SearchParametersHNSW(sel=selector, efSearch=self.config.hnsw_ef_search)
        if self.kind == "ivfpq":
            return faiss.SearchParametersIVF(sel=selector, nprobe=self.config.ivf_nprobe)
        return faiss.SearchParameters(sel=selector)

    def _built(self) -> Any:
        with self._lock:
            if self._index is None:
                self._index = self._build()
            return self._index

    def _build(self) -> Any:
        faiss = _faiss()
        index: Any
        if self.kind == "hnsw":
            index = faiss.IndexHNSWFlat(
                self.dimension, self.config.hnsw_m, faiss.METRIC_INNER_PRODUCT
            )
            index.hnsw.efConstruction = self.config.hnsw_ef_construction
        elif self.kind == "ivfpq":
            # About 2 * sqrt(n) lists (1M vectors: 2,000), each trained on at least 39 points
            # (FAISS's minimum) and at most 64 (more only slows training).
            lists = max(1, min(int(2 * np.sqrt(len(self))), len(self) // 39))
            index = faiss.index_factory(
                self.dimension, f"IVF{lists},PQ{self.config.pq_bytes}x8", faiss.METRIC_INNER_PRODUCT
            )
            sample = np.random.default_rng(0).choice(
                len(self), size=min(len(self), max(64 * lists, 10_000)), replace=False
            )
            index.train(np.ascontiguousarray(self._vectors[np.sort(sample)], dtype=np.float32))
        else:
            index = faiss.IndexFlatIP(self.dimension)
        with _every_core():
            for start in range(0, len(self), _ADD_BATCH):  # bounded memory: one batch at once
                index.add(np.ascontiguousarray(self._vectors[start : start + _ADD_BATCH]))
        self._tune(index)
        return index

    def _tune(self, index: Any) -> None:
        if self.kind == "hnsw":
            index.hnsw.efSearch = self.config.hnsw_ef_search
        elif self.kind == "ivfpq":
            _faiss().extract_index_ivf(index).nprobe = self.config.ivf_nprobe


def _index_file(kind: str) -> str:
    return f"{kind}.faiss"
