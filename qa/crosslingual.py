"""Questions in a language the index's encoder cannot read (Japanese, with the English default).

The index's vectors mean nothing for such a question, so the first stage finds its candidates
by keywords and, past those, nearest chunks that are little better than arbitrary. A
multilingual encoder then reads the question and those candidates at question time: it orders
them (fused with their BM25 rank where they have one) and gives quote selection the sentence
vectors to score with. Only these questions pay for the second model. What it has read stays
memoised by the text's digest, so a small corpus is read once and a re-index re-reads only the
passages it changed.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import replace

import numpy as np
import numpy.typing as npt

from embeddings.encoder import Encoder
from qa.index import Index, sentence_vector_id
from qa.retriever import Candidate, Query

RRF_K = 60
Vectors = npt.NDArray[np.float32]


class CrossLingualReader:
    def __init__(
        self,
        encoder: Encoder,
        depth: int,
        memo_size: int = 50_000,
    ) -> None:
        self.encoder = encoder
        self.depth = depth  # candidates read and re-ordered; the rest keep their order
        self.memo_size = memo_size  # passage vectors kept, least recently used dropped first
        self._memo: OrderedDict[bytes, Vectors] = OrderedDict()
        self._lock = threading.Lock()  # guards the memo
        # One encode at a time: questions arriving together after a re-index would otherwise
        # each encode the same new passages (measured: p99 30 s and 2.4 GB under 50 clients).
        self._encoding = threading.Lock()

    def read(
        self,
        index: Index,
        query: Query,
        candidates: list[Candidate],
        k: int,
        sentences: bool = True,
    ) -> tuple[Query, list[Candidate]]:
        """The best `k` candidates re-ordered, and the question as this encoder reads it: its
        vector, and (with `sentences`, for quote selection) the vectors of those candidates'
        sentences."""
        head, tail = candidates[: self.depth], candidates[self.depth :]
        vector = query.read_vector
        if vector is None:  # the engine reads such questions with this encoder (qa.batching)
            raise ValueError(f"question not read by {self.encoder.model_id}: {query.text!r}")
        chunks = self._vectors([c.chunk.text for c in head])
        kept = (_fused(head, (chunks @ vector).tolist()) + tail)[:k]
        read = replace(query, vector=vector, semantic=True, model_id=self.encoder.model_id)
        if sentences:
            ids = [sentence_vector_id(c.chunk.doc_id, i) for c in kept for i in c.chunk.sentences]
            texts = [_sentence(index, c, i) for c in kept for i in c.chunk.sentences]
            read = replace(read, sentence_vectors=dict(zip(ids, self._vectors(texts), strict=True)))
        return read, kept

    def _vectors(self, texts: list[str]) -> Vectors:
        """Vectors of `texts`, encoding only those not read before (each once)."""
        if not texts:
            return np.zeros((0, self.encoder.dimension), dtype=np.float32)
        keys = [hashlib.blake2b(text.encode(), digest_size=16).digest() for text in texts]
        known = self._recall(keys)
        if len(known) < len(set(keys)):
            with self._encoding:
                known.update(self._recall(keys))  # encoded meanwhile by another question
                missing = {key: t for key, t in zip(keys, texts, strict=True) if key not in known}
                if missing:
                    fresh = self.encoder.encode_passages(list(missing.values()))
                    new = dict(zip(missing, fresh, strict=True))
                    known.update(new)
                    with self._lock:
                        self._memo.update(new)
                        while len(self._memo) > self.memo_size:
                            self._memo.popitem(last=False)
        return np.vstack([known[key] for key in keys])

    def _recall(self, keys: list[bytes]) -> dict[bytes, Vectors]:
        with self._lock:
            known = {key: self._memo[key] for key in keys if key in self._memo}
            for key in known:
                self._memo.move_to_end(key)
        return known


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
