"""The Milvus vector store: the same interface as `FaissStore`, for when one machine is not enough.

Only pymilvus's `MilvusClient` API is used (collections, upsert, delete, search, get), the part
shared by a Milvus standalone server, a Milvus cluster (shards, replicas) and managed Milvus, so
the same code runs on all of them: point `VERBATIM_MILVUS_URI` at the cluster's proxy.

A collection per store (`<prefix>_chunks`, `<prefix>_sentences`) holds the vector id, the
vector (HNSW, inner product) and its document's id, source, language and date, so a filtered
question is one server-side expression however many vectors it selects (collections made
before the fields existed still filter, by vector id).
Every call has a timeout, so an outage becomes a `VectorStoreUnavailable` error in seconds,
never a hang.

Reads are Strong (they wait for the server's next time tick, ~200 ms, to see every write) only
while an index version is young: its vectors are all written before its pointer file, and once
that file is `SETTLED_S` old, Bounded reads (every write older than Milvus's graceful time, 5 s
by default, without waiting) see them all. A question reads the stores about a dozen times, so
this is the difference between ~4 s and a few milliseconds of Milvus per answer.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embeddings.store import (
    DocCondition,
    DocFields,
    Ids,
    Vectors,
    VectorStoreUnavailable,
    checked,
)

_POINTER = "milvus.json"
_BATCH = 1000  # rows per upsert or get: bounded request sizes
_SCHEMA = 2  # 1: id, doc_id, vector; 2: also source, lang, date
# Seconds after a version's pointer file is written from which its reads are Bounded: Milvus's
# graceful time (5 s) with room for clocks that differ between machines
SETTLED_S = 30.0


class MilvusStore:
    kind = "milvus"

    def __init__(
        self, dimension: int, uri: str, collection: str, token: str = "", timeout: float = 10.0
    ) -> None:
        self.dimension = dimension
        self.uri = uri
        self.collection = collection
        self.timeout = timeout
        self._token = token
        self._client: Any = None
        self.schema = _SCHEMA
        self._strong_until = math.inf  # a store this process writes reads its own writes

    # ------------------------------------------------------------ lifecycle

    def create(self) -> MilvusStore:
        """Start an empty collection (a full rebuild), replacing one of the same name."""
        from pymilvus import DataType, MilvusClient

        client = self._connected()
        self._call(lambda: client.drop_collection(self.collection))
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("doc_id", DataType.VARCHAR, max_length=512)
        schema.add_field("source", DataType.VARCHAR, max_length=512)
        schema.add_field("lang", DataType.VARCHAR, max_length=16)
        schema.add_field("date", DataType.VARCHAR, max_length=32)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dimension)
        index = client.prepare_index_params()
        index.add_index(
            field_name="vector",
            index_type="HNSW",
            metric_type="IP",
            params={"M": 32, "efConstruction": 80},
        )
        self._call(
            lambda: client.create_collection(
                self.collection, schema=schema, index_params=index, consistency_level="Strong"
            )
        )
        return self

    def save(self, directory: Path) -> None:
        """The vectors live in Milvus; the index version records where."""
        directory.mkdir(parents=True, exist_ok=True)
        pointer = {
            "uri": self.uri,
            "collection": self.collection,
            "dimension": self.dimension,
            "schema": self.schema,
        }
        (directory / _POINTER).write_text(json.dumps(pointer))

    @classmethod
    def load(cls, directory: Path, dimension: int, uri: str, token: str = "") -> MilvusStore:
        pointer = json.loads((directory / _POINTER).read_text())
        store = cls(dimension, uri or pointer["uri"], pointer["collection"], token)
        store.schema = int(pointer.get("schema", 1))
        store._strong_until = (directory / _POINTER).stat().st_mtime + SETTLED_S
        client = store._connected()
        if not store._call(lambda: client.has_collection(store.collection)):
            raise VectorStoreUnavailable(
                f"Milvus at {store.uri} has no collection {store.collection!r}: "
                "run `verbatim index` to build it"
            )
        store._call(lambda: client.load_collection(store.collection))
        return store

    # ------------------------------------------------------------ the store interface

    def __len__(self) -> int:
        client = self._connected()
        rows = self._call(
            lambda: client.query(
                self.collection, filter="", output_fields=["count(*)"], **self._reading()
            )
        )
        return int(rows[0]["count(*)"])

    def add(self, ids: Ids, vectors: Vectors, docs: Sequence[DocFields] | None = None) -> None:
        ids, vectors = checked(ids, vectors, self.dimension)
        owners = list(docs) if docs is not None else [DocFields("")] * len(ids)
        client = self._connected()
        for start in range(0, len(ids), _BATCH):
            rows = [
                {"id": int(i), **self._fields(owner), "vector": vector.tolist()}
                for i, owner, vector in zip(
                    ids[start : start + _BATCH],
                    owners[start : start + _BATCH],
                    vectors[start : start + _BATCH],
                    strict=True,
                )
            ]
            self._call(lambda rows=rows: client.upsert(self.collection, data=rows))

    def remove(self, ids: Ids) -> int:
        if not len(ids):
            return 0
        client = self._connected()
        removed = 0
        for start in range(0, len(ids), _BATCH):
            batch = [int(i) for i in ids[start : start + _BATCH]]
            result = self._call(lambda batch=batch: client.delete(self.collection, ids=batch))
            removed += _count(result, len(batch))
        return removed

    def search(
        self,
        queries: Vectors,
        k: int,
        allowed: Ids | None = None,
        condition: DocCondition | None = None,
    ) -> tuple[Vectors, Ids]:
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dimension)
        if allowed is not None and not len(allowed):
            empty = np.zeros((len(queries), 0))
            return empty.astype(np.float32), empty.astype(np.int64)
        if condition is not None and self.schema >= 2:
            expression = milvus_expression(condition)
        elif allowed is not None:
            expression = f"id in [{', '.join(str(int(i)) for i in allowed)}]"
        else:
            expression = ""
        client = self._connected()
        hits = self._call(
            lambda: client.search(
                self.collection,
                data=queries.tolist(),
                limit=k,
                filter=expression,
                search_params={"metric_type": "IP", "params": {"ef": max(128, k)}},
                **self._reading(),
            )
        )
        width = max((len(h) for h in hits), default=0)
        scores = np.full((len(queries), width), -np.inf, dtype=np.float32)
        found = np.full((len(queries), width), -1, dtype=np.int64)
        for row, row_hits in enumerate(hits):
            for column, hit in enumerate(row_hits):
                scores[row, column] = hit["distance"]
                found[row, column] = hit["id"]
        return scores, found

    def vectors(self, ids: Ids) -> Vectors:
        """The stored vectors for `ids` (all must be present), in that order."""
        client = self._connected()
        by_id: dict[int, list[float]] = {}
        wanted = [int(i) for i in ids]
        for start in range(0, len(wanted), _BATCH):
            batch = wanted[start : start + _BATCH]
            rows = self._call(
                lambda batch=batch: client.get(
                    self.collection, ids=batch, output_fields=["vector"], **self._reading()
                )
            )
            by_id.update({int(r["id"]): r["vector"] for r in rows})
        missing = [i for i in wanted if i not in by_id]
        if missing:
            raise KeyError(f"unknown vector ids: {missing[:5]}")
        return np.array([by_id[i] for i in wanted], dtype=np.float32).reshape(-1, self.dimension)

    def _fields(self, doc: DocFields) -> dict[str, str]:
        if self.schema < 2:
            return {"doc_id": doc.doc_id}
        return {"doc_id": doc.doc_id, "source": doc.source, "lang": doc.lang, "date": doc.date}

    def _reading(self) -> dict[str, str]:
        """The consistency of a read now (the module's docstring says why)."""
        return {"consistency_level": "Strong" if time.time() < self._strong_until else "Bounded"}

    # ------------------------------------------------------------ connection

    def _connected(self) -> Any:
        if self._client is None:
            from pymilvus import MilvusClient

            self._client = self._call(
                lambda: MilvusClient(uri=self.uri, token=self._token, timeout=self.timeout)
            )
        return self._client

    def _call(self, action: Any) -> Any:
        from pymilvus.exceptions import MilvusException

        try:
            return action()
        except MilvusException as exc:
            raise VectorStoreUnavailable(
                f"Milvus at {self.uri} failed: {exc}. Check that it runs and that "
                "VERBATIM_MILVUS_URI points at it"
            ) from exc


def milvus_expression(condition: DocCondition) -> str:
    """`condition` as a Milvus boolean expression over the document fields."""
    terms = []
    if condition.doc_ids is not None:
        terms.append(f"doc_id in {_strings(condition.doc_ids)}")
    if condition.source is not None:
        terms.append(f"source == {_string(condition.source)}")
    if condition.lang is not None:
        terms.append(f"lang == {_string(condition.lang)}")
    if condition.date_from is not None or condition.date_to is not None:
        terms.append('date != ""')
    if condition.date_from is not None:
        terms.append(f"date >= {_string(condition.date_from)}")
    if condition.date_to is not None:
        # "2014" admits every date that starts with it: "~" sorts after digits, "-", "T", ":".
        terms.append(f"date <= {_string(condition.date_to + '~')}")
    return " and ".join(terms)


def _string(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def _strings(values: Sequence[str]) -> str:
    return "[" + ", ".join(_string(v) for v in values) + "]"


def _count(result: Any, default: int) -> int:
    """Deleted rows as pymilvus reports them (a dict or a list of ids, by version)."""
    if isinstance(result, dict) and "delete_count" in result:
        return int(result["delete_count"])
    if isinstance(result, list):
        return len(result)
    return default


class MilvusStaging:
    """Vectors that `verbatim index --shard I/N` workers encoded, waiting for the build that
    makes them an index version.

    Several machines each encode a share of the corpus into one staging collection
    (`<prefix>_staging`), keyed by document and a `key` naming the document's bytes, the model
    and the chunking; the coordinating `verbatim index` then takes the vectors of every document
    whose key matches instead of encoding it. The live collections are never touched by the
    workers, so a running server keeps answering from the index it loaded.
    """

    def __init__(self, dimension: int, uri: str, collection: str, token: str = "") -> None:
        self._store = MilvusStore(dimension, uri, collection, token)
        self.collection = collection

    def ensure(self) -> MilvusStaging:
        """Create the staging collection when it does not exist yet (workers share it)."""
        from pymilvus import DataType, MilvusClient

        client = self._store._connected()
        if self._exists():
            return self
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("pk", DataType.VARCHAR, is_primary=True, max_length=600)
        schema.add_field("doc_id", DataType.VARCHAR, max_length=512)
        schema.add_field("key", DataType.VARCHAR, max_length=64)
        schema.add_field("role", DataType.VARCHAR, max_length=8)  # "chunk" or "sentence"
        schema.add_field("position", DataType.INT64)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self._store.dimension)
        index = client.prepare_index_params()
        index.add_index(field_name="vector", index_type="FLAT", metric_type="IP")
        self._store._call(
            lambda: client.create_collection(
                self.collection, schema=schema, index_params=index, consistency_level="Strong"
            )
        )
        return self

    def put(self, doc_id: str, key: str, chunks: Vectors, sentences: Vectors) -> None:
        """Stage one document's vectors (replacing what was staged for it before)."""
        client = self._store._connected()
        self._store._call(
            lambda: client.delete(self.collection, filter=f"doc_id == {_string(doc_id)}")
        )
        rows = [
            {
                "pk": f"{doc_id}\x00{role}\x00{position}",
                "doc_id": doc_id,
                "key": key,
                "role": role,
                "position": position,
                "vector": vector.tolist(),
            }
            for role, vectors in (("chunk", chunks), ("sentence", sentences))
            for position, vector in enumerate(vectors)
        ]
        for start in range(0, len(rows), _BATCH):
            batch = rows[start : start + _BATCH]
            self._store._call(lambda batch=batch: client.upsert(self.collection, data=batch))

    def staged_keys(self, doc_ids: Sequence[str]) -> dict[str, str]:
        """The key staged for each of `doc_ids` that has vectors waiting."""
        if not doc_ids or not self._exists():
            return {}
        client = self._store._connected()
        keys: dict[str, str] = {}
        for start in range(0, len(doc_ids), _BATCH):
            batch = list(doc_ids[start : start + _BATCH])
            rows = self._store._call(
                lambda batch=batch: client.query(
                    self.collection,
                    filter=f"doc_id in {_strings(batch)} and position == 0",
                    output_fields=["doc_id", "key"],
                )
            )
            keys.update({row["doc_id"]: row["key"] for row in rows})
        return keys

    def take(
        self, doc_id: str, key: str, chunks: int, sentences: int
    ) -> tuple[Vectors, Vectors] | None:
        """The staged vectors of `doc_id` when they were made for `key` and are all there."""
        if not self._exists():
            return None
        client = self._store._connected()
        rows = self._store._call(
            lambda: client.query(
                self.collection,
                filter=f"doc_id == {_string(doc_id)} and key == {_string(key)}",
                output_fields=["role", "position", "vector"],
            )
        )
        found: dict[str, dict[int, list[float]]] = {"chunk": {}, "sentence": {}}
        for row in rows:
            found[row["role"]][int(row["position"])] = row["vector"]
        if len(found["chunk"]) != chunks or len(found["sentence"]) != sentences:
            return None
        dimension = self._store.dimension
        return (
            np.array([found["chunk"][i] for i in range(chunks)], np.float32).reshape(-1, dimension),
            np.array([found["sentence"][i] for i in range(sentences)], np.float32).reshape(
                -1, dimension
            ),
        )

    def discard(self, doc_ids: Sequence[str]) -> None:
        """Drop staged vectors once an index version holds them."""
        if not doc_ids or not self._exists():
            return
        client = self._store._connected()
        for start in range(0, len(doc_ids), _BATCH):
            batch = list(doc_ids[start : start + _BATCH])
            self._store._call(
                lambda batch=batch: client.delete(
                    self.collection, filter=f"doc_id in {_strings(batch)}"
                )
            )

    def _exists(self) -> bool:
        """Whether the collection exists; loaded for queries when it does."""
        client = self._store._connected()
        if not self._store._call(lambda: client.has_collection(self.collection)):
            return False
        self._store._call(lambda: client.load_collection(self.collection))
        return True
