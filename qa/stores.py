"""Which vector store an index uses, and opening or creating one (FAISS or Milvus)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
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
    # Sentence vectors are read by id (quote selection) and searched only for sentence recall;
    # without it their FAISS store stays flat: no graph to build (SciFact: 5.5 s) or load.
    search_sentences: bool = False

    def new_store(self, name: str, dimension: int) -> VectorStore:
        """An empty store for a full build; `name` is "chunks" or "sentences"."""
        if self.backend == "milvus":
            from embeddings.milvus import MilvusStore

            return MilvusStore(
                dimension, self.milvus_uri, f"{self.milvus_collection}_{name}", self.milvus_token
            ).create()
        return FaissStore(dimension, self._faiss_config(name))

    def open_store(self, version_dir: Path, name: str, dimension: int) -> VectorStore:
        """The `name` store ("chunks" or "sentences") an index version wrote, whichever
        backend wrote it."""
        directory = version_dir / name
        if (directory / "milvus.json").exists():
            from embeddings.milvus import MilvusStore

            uri = self.milvus_uri if self.backend == "milvus" else ""
            return MilvusStore.load(directory, dimension, uri, self.milvus_token)
        return FaissStore.load(directory, dimension, self._faiss_config(name))

    def _faiss_config(self, name: str) -> StoreConfig:
        if name == "sentences" and not self.search_sentences:
            return replace(self.faiss, kind="flat")
        return self.faiss

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
