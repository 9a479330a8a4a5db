"""The keyword (BM25) index over chunks, built with bm25s and saved beside the vector stores.

BM25's document frequencies depend on the whole collection, so the bm25s matrix is rebuilt
on every index build, from token lists kept per chunk (`tokens.jsonl`): only new or changed
documents are tokenised again, which is the costly part (a Japanese morphological analyser).
Rebuilding the matrix from tokens takes about a second per 20k chunks.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import bm25s
import numpy as np
import numpy.typing as npt

from embeddings.store import Ids

_IDS = "ids.npy"
_TOKENS = "tokens.jsonl"
_BM25 = "bm25"

# bm25s logs through `logging`; ours stay quiet unless asked.
logging.getLogger("bm25s").setLevel(logging.WARNING)


class KeywordIndex:
    """BM25 scores of chunks (keyed by chunk vector id) for a tokenised question."""

    def __init__(self, bm25: bm25s.BM25 | None, ids: Ids) -> None:
        self._bm25 = bm25  # None when the collection has no tokens: nothing can match
        self.ids = ids
        self._position = {int(vector_id): i for i, vector_id in enumerate(ids.tolist())}

    @classmethod
    def build(cls, ids: Ids, tokens: list[list[str]]) -> KeywordIndex:
        if len(ids) != len(tokens):
            raise ValueError("one token list per chunk id")
        if not any(tokens):  # bm25s cannot index a collection without a single token
            return cls(None, ids)
        bm25 = bm25s.BM25()
        bm25.index(tokens, show_progress=False)
        return cls(bm25, ids)

    def __len__(self) -> int:
        return len(self.ids)

    def search(
        self, query_tokens: list[str], k: int, allowed: Ids | None = None
    ) -> tuple[npt.NDArray[np.float32], Ids]:
        """The `k` best-scoring chunks with a score above 0 (of `allowed` only, when given)."""
        none = np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
        if self._bm25 is None:
            return none
        known = [t for t in query_tokens if t in self._bm25.vocab_dict]
        if not known:
            return none
        scores = self._bm25.get_scores(known).astype(np.float32)
        if allowed is not None:
            mask = np.zeros(len(self.ids), dtype=bool)
            mask[[self._position[i] for i in allowed.tolist() if i in self._position]] = True
            scores = np.where(mask, scores, 0.0)
        k = min(k, int(np.count_nonzero(scores)))
        if k == 0:
            return none
        best = np.argpartition(-scores, k - 1)[:k]
        best = best[np.argsort(-scores[best], kind="stable")]
        return scores[best], self.ids[best]

    def idf(self, tokens: list[str]) -> dict[str, float]:
        """BM25's inverse document frequency of each token the collection holds."""
        if self._bm25 is None:
            return {}
        vocabulary = self._bm25.vocab_dict
        indptr = self._bm25.scores["indptr"]
        total = float(self._bm25.scores["num_docs"])
        weights = {}
        for token in set(tokens):
            column = vocabulary.get(token)
            if column is None:
                continue
            df = float(indptr[column + 1] - indptr[column])
            weights[token] = float(np.log(1.0 + (total - df + 0.5) / (df + 0.5)))
        return weights

    def unseen_share(self, tokens: list[str]) -> float:
        """The share of the tokens' IDF that the collection never holds, a token it lacks
        weighing what a token of a single chunk would: how much of a question is about
        something the documents never mention."""
        unique = set(tokens)
        if not unique:
            return 0.0
        if self._bm25 is None:
            return 1.0
        known = self.idf(list(unique))
        total = float(self._bm25.scores["num_docs"])
        unseen = (len(unique) - len(known)) * float(np.log(1.0 + (total - 0.5) / 1.5))
        return unseen / (unseen + sum(known.values())) if unseen else 0.0

    def save(self, directory: Path, tokens: list[list[str]]) -> None:
        """The matrix for searching, and the token lists for the next incremental build."""
        directory.mkdir(parents=True, exist_ok=True)
        np.save(directory / _IDS, self.ids)
        with (directory / _TOKENS).open("w", encoding="utf-8") as out:
            for chunk_tokens in tokens:
                out.write(json.dumps(chunk_tokens, ensure_ascii=False) + "\n")
        if self._bm25 is not None:
            self._bm25.save(directory / _BM25, show_progress=False)

    @classmethod
    def load(cls, directory: Path) -> KeywordIndex:
        ids = np.load(directory / _IDS)
        if not (directory / _BM25).exists():
            return cls(None, ids)
        bm25 = bm25s.BM25.load(directory / _BM25, mmap=True, show_progress=False)
        return cls(bm25, ids)


def load_tokens(directory: Path) -> dict[int, list[str]]:
    """Token lists by chunk vector id, as the last build saved them."""
    ids = np.load(directory / _IDS)
    with (directory / _TOKENS).open(encoding="utf-8") as lines:
        return {int(i): json.loads(line) for i, line in zip(ids.tolist(), lines, strict=True)}
