"""Second stage: re-score the first stage's best candidates with a stronger signal.

No cross-encoder weights ship in a PyPI package, so the offline options are:

- `sentences`: each chunk's best sentence (cosine of the question with the sentence vectors
  already in the index), fused with the first-stage rank. Free: no model runs.
- `bi-encoder`: a second, stronger sentence-transformers model (e.g. all-mpnet-base-v2)
  encodes the question and the candidate chunks at query time; fused with the first stage.
- `cross-encoder`: any sentence-transformers `CrossEncoder` name or path a user configures;
  its score alone orders the candidates (it reads question and passage together, so it is
  the stronger judge).

Fusion is reciprocal rank fusion, like the hybrid retriever: ranks need no calibration.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from embeddings.encoder import Encoder, EncoderConfig, ModelLoadError
from qa.index import Index, sentence_vector_id
from qa.retriever import Candidate, Query

RerankerKind = Literal["none", "sentences", "bi-encoder", "cross-encoder"]
RRF_K = 60


@dataclass(frozen=True)
class RerankSettings:
    kind: RerankerKind = "none"
    model: str | None = None  # the bi-encoder or cross-encoder; a name or a local path
    depth: int = 30  # candidates re-scored; the rest keep their order below them


class Reranker(Protocol):
    def rerank(self, index: Index, query: Query, candidates: list[Candidate]) -> list[Candidate]:
        """The same candidates, re-scored (`rerank_score`) and re-ordered, best first."""
        ...


class SentenceReranker:
    def __init__(self, depth: int) -> None:
        self.depth = depth

    def rerank(self, index: Index, query: Query, candidates: list[Candidate]) -> list[Candidate]:
        if not query.semantic:  # the sentence vectors can't judge this question's language
            return candidates
        head, tail = candidates[: self.depth], candidates[self.depth :]
        ids = [[sentence_vector_id(c.chunk.doc_id, i) for i in c.chunk.sentences] for c in head]
        # one read for every candidate's sentences (a round trip each, with Milvus)
        flat = np.array([i for chunk_ids in ids for i in chunk_ids], dtype=np.int64)
        vector = query.vector.reshape(-1)
        cosines = index.sentence_store.vectors(flat) @ vector if len(flat) else np.zeros(0)
        scores, start = [], 0
        for chunk_ids in ids:
            best = cosines[start : start + len(chunk_ids)]
            scores.append(float(best.max()) if len(best) else 0.0)
            start += len(chunk_ids)
        return _fused(head, scores) + tail


class BiEncoderReranker:
    def __init__(self, encoder: Encoder, depth: int) -> None:
        self.encoder = encoder
        self.depth = depth

    def rerank(self, index: Index, query: Query, candidates: list[Candidate]) -> list[Candidate]:
        head, tail = candidates[: self.depth], candidates[self.depth :]
        if not head:
            return candidates
        question = self.encoder.encode_queries([query.text])[0]
        passages = self.encoder.encode_passages([c.chunk.text for c in head])
        return _fused(head, (passages @ question).tolist()) + tail


class CrossEncoderReranker:
    def __init__(self, model: str, depth: int) -> None:
        self.model_name = model
        self.depth = depth
        self._model: Any = None

    def rerank(self, index: Index, query: Query, candidates: list[Candidate]) -> list[Candidate]:
        head, tail = candidates[: self.depth], candidates[self.depth :]
        if not head:
            return candidates
        scores = self._loaded().predict(
            [(query.text, c.chunk.text) for c in head], show_progress_bar=False
        )
        rescored = [
            replace(c, score=float(s), rerank_score=float(s))
            for c, s in zip(head, np.asarray(scores).reshape(-1).tolist(), strict=True)
        ]
        rescored.sort(key=lambda c: c.score, reverse=True)
        return rescored + tail

    def _loaded(self) -> Any:
        if self._model is None:
            try:
                from sentence_transformers import CrossEncoder

                self._model = CrossEncoder(self.model_name, device="cpu")
            except Exception as exc:
                raise ModelLoadError(
                    f"cannot load cross-encoder {self.model_name!r}: {exc}. Set "
                    "VERBATIM_RERANKER_MODEL to a local CrossEncoder folder."
                ) from exc
        return self._model


def make_reranker(settings: RerankSettings, cache_dir: Path | None = None) -> Reranker | None:
    """The configured reranker (its model loads on first use), or None."""
    if settings.kind == "none":
        return None
    if settings.kind == "sentences":
        return SentenceReranker(settings.depth)
    if not settings.model:
        raise ModelLoadError(
            f"the {settings.kind} reranker needs a model: set VERBATIM_RERANKER_MODEL"
        )
    if settings.kind == "bi-encoder":
        return BiEncoderReranker(
            Encoder(EncoderConfig(model=settings.model, cache_dir=cache_dir)), settings.depth
        )
    return CrossEncoderReranker(settings.model, settings.depth)


def _fused(candidates: list[Candidate], rerank_scores: list[float]) -> list[Candidate]:
    """Order by RRF of the first-stage rank and the rank by `rerank_scores`."""
    by_rerank = sorted(range(len(candidates)), key=lambda i: rerank_scores[i], reverse=True)
    rerank_rank = {i: rank for rank, i in enumerate(by_rerank, 1)}
    fused = [
        replace(
            c,
            score=1.0 / (RRF_K + first) + 1.0 / (RRF_K + rerank_rank[i]),
            rerank_score=rerank_scores[i],
        )
        for i, (first, c) in enumerate(enumerate(candidates, 1))
    ]
    fused.sort(key=lambda c: c.score, reverse=True)
    return fused
