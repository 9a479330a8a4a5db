"""Questions in a language the index's encoder cannot read (Japanese, with the English default).

The index's vectors mean nothing for such a question, so the first stage finds its candidates
by keywords and, past those, nearest chunks that are little better than arbitrary. A
multilingual encoder then reads the question and those candidates at question time: it orders
them (fused with their BM25 rank where they have one) and gives quote selection the sentence
vectors to score with. Only these questions pay for the second model, and what it has read
stays memoised per index version, so a small corpus is read once.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import replace

import numpy as np
import numpy.typing as npt

from embeddings.encoder import Encoder
from embeddings.store import chunk_vector_id
from qa.index import Index, sentence_vector_id
from qa.retriever import Candidate, Query

RRF_K = 60
Vectors = npt.NDArray[np.float32]


class CrossLingualReader:
    def __init__(self, encoder: Encoder, depth: int, memo_size: int = 50_000) -> None:
        self.encoder = encoder
        self.depth = depth  # candidates read and re-ordered; the rest keep their order
        self.memo_size = memo_size  # passage vectors kept, over all index versions
        self._memo: OrderedDict[tuple[str, int], Vectors] = OrderedDict()
        self._lock = threading.Lock()

    def read(
        self, index: Index, query: Query, candidates: list[Candidate], k: int
    ) -> tuple[Query, list[Candidate]]:
        """The best `k` candidates re-ordered, and the question as this encoder reads it: its
        vector, and the vectors of those candidates' sentences for quote selection."""
        head, tail = candidates[: self.depth], candidates[self.depth :]
        vector = self.encoder.encode_queries([query.text])[0]
        chunks = self._vectors(
            index, [(chunk_vector_id(c.chunk.chunk_id), c.chunk.text) for c in head], "c"
        )
        kept = (_fused(head, (chunks @ vector).tolist()) + tail)[:k]
        sentences = [
            (sentence_vector_id(c.chunk.doc_id, i), _sentence(index, c, i))
            for c in kept
            for i in c.chunk.sentences
        ]
        vectors = self._vectors(index, sentences, "s")
        read = replace(
            query,
            vector=vector,
            semantic=True,
            model_id=self.encoder.model_id,
            sentence_vectors={vid: v for (vid, _), v in zip(sentences, vectors, strict=True)},
        )
        return read, kept

    def _vectors(self, index: Index, items: list[tuple[int, str]], kind: str) -> Vectors:
        """Vectors of (id, text) passages, encoding only those not read before."""
        keys = [(f"{index.version}/{kind}", vector_id) for vector_id, _ in items]
        with self._lock:
            known = {key: self._memo[key] for key in keys if key in self._memo}
            for key in known:
                self._memo.move_to_end(key)
        # overlapping chunks share sentences: each is encoded once
        missing = {
            key: text for key, (_, text) in zip(keys, items, strict=True) if key not in known
        }
        if missing:
            fresh = self.encoder.encode_passages(list(missing.values()))
            new = dict(zip(missing, fresh, strict=True))
            known.update(new)
            with self._lock:
                self._memo.update(new)
                while len(self._memo) > self.memo_size:
                    self._memo.popitem(last=False)
        if not keys:
            return np.zeros((0, self.encoder.dimension), dtype=np.float32)
        return np.vstack([known[key] for key in keys])


def _sentence(index: Index, candidate: Candidate, position: int) -> str:
    entry = index.entries[candidate.chunk.doc_id]
    span = entry.sentences[position]
    return entry.document.text[span.start : span.end]


def _fused(candidates: list[Candidate], scores: list[float]) -> list[Candidate]:
    """Order by this encoder's rank, fused (RRF) with the BM25 rank where a candidate has one;
    the first stage's dense rank is left out: it came from vectors that cannot read the
    question."""
    by_score = sorted(range(len(candidates)), key=lambda i: scores[i], reverse=True)
    rank = {i: r for r, i in enumerate(by_score, 1)}
    fused = []
    for i, c in enumerate(candidates):
        score = 1.0 / (RRF_K + rank[i])
        if c.bm25_rank is not None:
            score += 1.0 / (RRF_K + c.bm25_rank)
        fused.append(replace(c, score=score, rerank_score=scores[i]))
    fused.sort(key=lambda c: c.score, reverse=True)
    return fused
