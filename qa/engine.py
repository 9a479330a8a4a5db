"""The one core API every door calls: build the index, ask, search, list documents."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

from corpus.loader import default_corpus_dir
from corpus.models import Document
from embeddings.encoder import Encoder
from qa.answer import Answer, Passage, Quote, SearchResult
from qa.filters import Filters
from qa.index import (
    BuildProgress,
    BuildReport,
    Index,
    IndexBuilder,
    current_version_dir,
    load_index,
)
from qa.quotes import QuoteSelector, ScoredQuote, diverse
from qa.retriever import DenseRetriever
from qa.settings import Settings


class DocumentNotFoundError(KeyError):
    pass


class Verbatim:
    """Answers questions from an index with exact quotes.

    The encoder loads once and is shared; the index is loaded on first use and reloaded when
    a build swaps in a new version, so a long-running server picks up re-indexes.
    """

    def __init__(self, settings: Settings | None = None, encoder: Encoder | None = None) -> None:
        self.settings = settings or Settings()
        self.encoder = encoder or Encoder(self.settings.encoder)
        self._index: Index | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------ indexing

    def build_index(
        self, paths: Sequence[Path] | None = None, progress: BuildProgress | None = None
    ) -> BuildReport:
        """Index `paths` (default: the packaged seed corpus) incrementally and swap it in."""
        builder = IndexBuilder(
            self.settings.resolved_index_dir,
            self.encoder,
            self.settings.chunker,
            hnsw_threshold=self.settings.hnsw_threshold,
            max_file_bytes=int(self.settings.max_file_mb * 1024 * 1024),
        )
        report = builder.build(list(paths) if paths else [default_corpus_dir()], progress)
        self.reload()
        return report

    def ensure_index(self, progress: BuildProgress | None = None) -> BuildReport | None:
        """Build the default corpus when no index exists yet, so asking works with no setup."""
        if current_version_dir(self.settings.resolved_index_dir) is not None:
            return None
        return self.build_index(None, progress)

    @property
    def index(self) -> Index:
        directory = current_version_dir(self.settings.resolved_index_dir)
        with self._lock:
            if self._index is None or self._index.directory != directory:
                self._index = load_index(
                    self.settings.resolved_index_dir,
                    self.encoder.model_id,
                    self.settings.hnsw_threshold,
                )
            return self._index

    def reload(self) -> None:
        with self._lock:
            self._index = None

    # ------------------------------------------------------------ questions

    def ask(
        self, question: str, top_k: int | None = None, filters: Filters | None = None
    ) -> Answer:
        if not question.strip():
            raise ValueError("the question is empty")
        started = time.perf_counter()
        top_k = top_k or self.settings.top_k
        index = self.index
        query = self.encoder.encode_queries([question])[0]
        retriever = DenseRetriever(index, sentence_recall=self.settings.candidates)
        candidates = retriever.retrieve(
            query, max(self.settings.candidates, top_k), self._doc_ids(index, filters)
        )
        ranked = QuoteSelector(index, self.settings.quotes).rank(query, candidates)
        answering = [q for q in ranked if q.score >= self.settings.threshold]
        if answering:
            chosen, status, closest = diverse(answering, top_k), "answered", False
        else:
            chosen, status, closest = ranked[:1], "no_answer", True
        return Answer(
            question=question,
            status=status,
            quotes=[self._quote(index, q, rank, closest) for rank, q in enumerate(chosen, 1)],
            index_version=index.version,
            took_ms=round((time.perf_counter() - started) * 1000, 2),
        )

    def search(
        self, question: str, top_k: int | None = None, filters: Filters | None = None
    ) -> SearchResult:
        if not question.strip():
            raise ValueError("the question is empty")
        started = time.perf_counter()
        index = self.index
        query = self.encoder.encode_queries([question])[0]
        candidates = DenseRetriever(index).retrieve(
            query, top_k or self.settings.top_k, self._doc_ids(index, filters)
        )
        passages = [
            Passage(
                rank=rank,
                chunk_id=c.chunk.chunk_id,
                doc_id=c.chunk.doc_id,
                title=index.entries[c.chunk.doc_id].document.title,
                text=c.chunk.text,
                char_start=c.chunk.char_start,
                char_end=c.chunk.char_end,
                section=c.chunk.section,
                score=round(c.score, 4),
            )
            for rank, c in enumerate(candidates, 1)
        ]
        return SearchResult(
            question=question,
            passages=passages,
            index_version=index.version,  # the version these passages came from
            took_ms=round((time.perf_counter() - started) * 1000, 2),
        )

    def documents(self) -> list[Document]:
        return sorted(self.index.documents.values(), key=lambda d: d.doc_id)

    def document(self, doc_id: str) -> Document:
        try:
            return self.index.entries[doc_id].document
        except KeyError:
            raise DocumentNotFoundError(doc_id) from None

    @staticmethod
    def _doc_ids(index: Index, filters: Filters | None) -> set[str] | None:
        if filters is None or filters.is_empty():
            return None
        return filters.select(index.documents.values())

    @staticmethod
    def _quote(index: Index, quote: ScoredQuote, rank: int, closest: bool) -> Quote:
        document = index.entries[quote.doc_id].document
        return Quote(
            rank=rank,
            text=document.text[quote.start : quote.end],
            doc_id=document.doc_id,
            title=document.title,
            date=document.date,
            source=document.source,
            url=document.url,
            char_start=quote.start,
            char_end=quote.end,
            section=quote.section,
            passage=quote.chunk.text,
            passage_start=quote.chunk.char_start,
            score=round(quote.score, 4),
            closest_match=closest,
        )
