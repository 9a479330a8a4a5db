"""Retrieval stage: question vector in, scored chunks out. Swappable (dense today; BM25 or
hybrid retrievers implement the same `retrieve`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from corpus.models import Chunk
from embeddings.store import chunk_vector_id
from qa.index import Index


@dataclass(frozen=True)
class Candidate:
    chunk: Chunk
    score: float


class Retriever(Protocol):
    def retrieve(
        self, query_vector: npt.NDArray[np.float32], k: int, doc_ids: set[str] | None = None
    ) -> list[Candidate]:
        """The best `k` chunks (of the documents in `doc_ids` only, when given), best first."""
        ...


class DenseRetriever:
    """Nearest chunks by inner product of unit vectors (cosine similarity).

    With `sentence_recall`, the chunks holding the nearest sentences join the candidates too:
    a chunk whose one answering sentence is diluted by its neighbours is still found.
    Every candidate is scored by its own chunk vector, so the two routes rank alike.
    """

    def __init__(self, index: Index, sentence_recall: int = 0) -> None:
        self.index = index
        self.sentence_recall = sentence_recall

    def retrieve(
        self, query_vector: npt.NDArray[np.float32], k: int, doc_ids: set[str] | None = None
    ) -> list[Candidate]:
        query = query_vector.reshape(1, -1)
        chunks_allowed = sentences_allowed = None
        if doc_ids is not None:
            chunks_allowed, sentences_allowed = self.index.vector_ids_of(doc_ids)
        scores, ids = self.index.chunk_store.search(query, k, chunks_allowed)
        found = {
            int(vector_id): float(score)
            for score, vector_id in zip(scores[0], ids[0], strict=True)
            if vector_id >= 0
        }
        if self.sentence_recall:
            _, sentence_ids = self.index.sentence_store.search(
                query, self.sentence_recall, sentences_allowed
            )
            extra = {
                chunk_vector_id(self.index.chunk_of_sentence[int(s)].chunk_id)
                for s in sentence_ids[0]
                if s >= 0
            } - found.keys()
            if extra:
                extra_ids = np.array(sorted(extra), dtype=np.int64)
                extra_scores = self.index.chunk_store.vectors(extra_ids) @ query_vector.reshape(-1)
                found.update(zip(extra_ids.tolist(), extra_scores.tolist(), strict=True))
        ranked = sorted(found.items(), key=lambda item: item[1], reverse=True)
        return [Candidate(self.index.chunks_by_vector_id[i], score) for i, score in ranked]
