"""Which vector store an index uses, and opening or creating one (FAISS or Milvus)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from embeddings.store import FaissStore, StoreConfig, VectorStore

if TYPE_CHECKING:
    from embeddings.milvus import MilvusStaging


@dataclass(frozen=True)
class StoreSettings:
    backend: Literal["faiss", "milvus"] = "faiss"
    faiss: StoreConfig = field(default_factory=StoreConfig)
    milvus_uri: str = "http://127.0.0.1:19530"
    milvus_token: str = ""
    milvus_collection: str = "verbatim"

    def new_store(self, name: str, dimension: int) -> VectorStore:
        """An empty store for a full build; `name` is "chunks" or "sentences"."""
        if self.backend == "milvus":
            from embeddings.milvus import MilvusStore

            return MilvusStore(
                dimension, self.milvus_uri, f"{self.milvus_collection}_{name}", self.milvus_token
            ).create()
        return FaissStore(dimension, self.faiss)

    def open_store(self, directory: Path, dimension: int) -> VectorStore:
        """The store an index version wrote into `directory`, whichever backend wrote it."""
        if (directory / "milvus.json").exists():
            from embeddings.milvus import MilvusStore

            uri = self.milvus_uri if self.backend == "milvus" else ""
            return MilvusStore.load(directory, dimension, uri, self.milvus_token)
        return FaissStore.load(directory, dimension, self.faiss)

    def staging(self, dimension: int) -> MilvusStaging | None:
        """Where `verbatim index --shard` workers leave vectors for the build (Milvus only)."""
        if self.backend != "milvus":
            return None
        from embeddings.milvus import MilvusStaging

        return MilvusStaging(
            dimension, self.milvus_uri, f"{self.milvus_collection}_staging", self.milvus_token
        )

    def holds(self, store: VectorStore) -> bool:
        """Whether `store` is of the configured backend (else a build moves the vectors)."""
        return (store.kind == "milvus") == (self.backend == "milvus")
