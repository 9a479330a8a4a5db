"""Quote selection: within the best chunks, the sentence (or few adjacent sentences) that
answers the question, as an exact span of the document.

Every run of one to three adjacent sentences of one paragraph is a possible quote, scored by
the similarity of the question to the sum of its sentence vectors (a neighbour joins the quote
only when it makes the quote match better), mixed with the share of the question's keywords,
weighted by BM25's IDF, that the quote contains: the sentence that names "the October 8, 2014,
Interim Report" beats one that is merely about the same subject. A quote is always one
contiguous span of the document, never two places stitched together. `chunk_weight` mixes in
the chunk's own cosine (0 by default: on the seed question set it only narrowed the gap between
answerable and unanswerable questions).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from corpus.models import Span
from corpus.normalize import CJK_CHAR
from corpus.tokenize import KeywordTokenizer
from qa.index import Index, sentence_vector_id
from qa.retriever import Candidate, Query

_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class QuoteSettings:
    chunk_weight: float = 0.0  # share of the chunk's cosine in a quote's score
    keyword_weight: float = 0.3  # share of the question's IDF-weighted keywords the quote holds
    max_sentences: int = 3
    min_words: int = 4  # shorter "sentences" are headings or signatures, not answers
    duplicate_overlap: float = 0.8  # word-set overlap above which two quotes say the same


@dataclass(frozen=True)
class ScoredQuote:
    doc_id: str
    start: int
    end: int
    section: str | None
    candidate: Candidate  # the retrieved chunk the quote sits in
    score: float


class QuoteSelector:
    def __init__(
        self, index: Index, tokenizer: KeywordTokenizer, settings: QuoteSettings | None = None
    ) -> None:
        self.index = index
        self.tokenizer = tokenizer
        self.settings = settings or QuoteSettings()

    def rank(self, query: Query, candidates: list[Candidate]) -> list[ScoredQuote]:
        """Every distinct quote the candidates hold, best first."""
        idf = self.index.keywords.idf(query.tokens)
        scored = [q for c in candidates for q in self._quotes_in(query, idf, c)]
        scored.sort(key=lambda q: q.score, reverse=True)
        return self._distinct(scored)

    def _quotes_in(
        self, query: Query, idf: dict[str, float], candidate: Candidate
    ) -> list[ScoredQuote]:
        """Every window of the chunk, scored by the normalised sum of its sentence vectors and
        the keywords it holds."""
        chunk = candidate.chunk
        entry = self.index.entries[chunk.doc_id]
        text = entry.document.text
        spans = [entry.sentences[i] for i in chunk.sentences]
        ids = np.array(
            [sentence_vector_id(chunk.doc_id, i) for i in chunk.sentences], dtype=np.int64
        )
        vectors = self.index.sentence_store.vectors(ids)
        vector = query.vector.reshape(-1)
        keyword_total = sum(idf.values())
        words = [
            set(self.tokenizer.tokenize(text[s.start : s.end])) if keyword_total else set()
            for s in spans
        ]
        chunk_weight, keyword_weight = self.settings.chunk_weight, self.settings.keyword_weight
        quotes = []
        for first, last in self._windows(text, spans):
            window = vectors[first : last + 1].sum(axis=0)
            similarity = float(window @ vector) / max(float(np.linalg.norm(window)), 1e-9)
            coverage = _coverage(idf, keyword_total, words[first : last + 1])
            if not query.semantic:  # the vectors can't judge this language: keywords alone
                similarity = coverage
            quotes.append(
                ScoredQuote(
                    doc_id=chunk.doc_id,
                    start=spans[first].start,
                    end=spans[last].end,
                    section=spans[first].section,
                    candidate=candidate,
                    score=chunk_weight * candidate.dense_score
                    + (1 - chunk_weight - keyword_weight) * similarity
                    + keyword_weight * coverage,
                )
            )
        return quotes

    def _windows(self, text: str, spans: list[Span]) -> list[tuple[int, int]]:
        """(first, last) positions of runs of 1..max_sentences quotable sentences that share a
        paragraph and a section: the shapes a quote may take."""
        windows = []
        for first, span in enumerate(spans):
            if not self._quotable(text, span):
                continue
            last = first
            while True:
                windows.append((first, last))
                nxt = last + 1
                if (
                    nxt - first >= self.settings.max_sentences
                    or nxt >= len(spans)
                    or not self._quotable(text, spans[nxt])
                    or spans[nxt].section != span.section
                    or "\n\n" in text[spans[last].end : spans[nxt].start]
                ):
                    break
                last = nxt
        return windows

    def _quotable(self, text: str, span: Span) -> bool:
        sentence = text[span.start : span.end]
        if sentence == span.section:
            return False  # a heading names a topic; it answers nothing
        if CJK_CHAR.search(sentence):
            return len(CJK_CHAR.findall(sentence)) >= 2 * self.settings.min_words
        return len(_WORD.findall(sentence)) >= self.settings.min_words

    def _distinct(self, ranked: list[ScoredQuote]) -> list[ScoredQuote]:
        """Drop quotes that overlap a better one in the same document or repeat its words."""
        kept: list[ScoredQuote] = []
        kept_words: list[set[str]] = []
        for quote in ranked:
            text = self.index.entries[quote.doc_id].document.text[quote.start : quote.end]
            words = set(_WORD.findall(text.lower()))
            if any(
                k.doc_id == quote.doc_id and k.start < quote.end and quote.start < k.end
                for k in kept
            ):
                continue
            if any(
                _overlap(words, other) >= self.settings.duplicate_overlap for other in kept_words
            ):
                continue
            kept.append(quote)
            kept_words.append(words)
        return kept


def _coverage(idf: dict[str, float], total: float, sentences: list[set[str]]) -> float:
    """Share of the question's keyword weight (IDF) found in the sentences."""
    if not total:
        return 0.0
    held = set().union(*sentences)
    return sum(weight for token, weight in idf.items() if token in held) / total


def _overlap(a: set[str], b: set[str]) -> float:
    return len(a & b) / max(1, min(len(a), len(b)))


def diverse(ranked: list[ScoredQuote], top_k: int) -> list[ScoredQuote]:
    """Best first, at most half the slots per document while other documents have quotes."""
    cap = max(1, math.ceil(top_k / 2))
    chosen: list[ScoredQuote] = []
    per_doc: dict[str, int] = {}
    for quote in ranked:
        if len(chosen) < top_k and per_doc.get(quote.doc_id, 0) < cap:
            chosen.append(quote)
            per_doc[quote.doc_id] = per_doc.get(quote.doc_id, 0) + 1
    for quote in ranked:
        if len(chosen) >= top_k:
            break
        if quote not in chosen:
            chosen.append(quote)
    chosen.sort(key=lambda q: q.score, reverse=True)
    return chosen
