"""Quote selection: within the best chunks, the sentence (or few adjacent sentences) that
answers the question, as an exact span of the document.

Every run of one to three adjacent sentences of one paragraph is a possible quote, scored by
the similarity of the question to the sum of its sentence vectors (a neighbour joins the quote
only when it makes the quote match better), mixed with the share of the question's keywords,
weighted by BM25's IDF, that the quote contains: the sentence that names "the October 8, 2014,
Interim Report" beats one that is merely about the same subject. A quote is always one
contiguous span of the document, never two places stitched together. Quotes scored with the
cross-lingual reader's vectors are single sentences (`read_max_sentences`). `chunk_weight` mixes in
the chunk's own cosine (0 by default: on the seed question set it only narrowed the gap between
answerable and unanswerable questions).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from corpus.models import Chunk, Span
from corpus.normalize import CJK_CHAR
from corpus.tokenize import KeywordTokenizer
from qa.index import Index, sentence_vector_id
from qa.retriever import Candidate, Query

_WORD = re.compile(r"\w+")
# Questions that ask for an amount: a quote that states no number cannot answer them. ("How
# long" is left out: "since 1996" answers it, and a date is not an amount.)
_ASKS_AMOUNT = re.compile(
    r"\bhow (many|much|big|large|far|often)\b|\bwhat (percentage|proportion|share)\b"
    r"|\bnumber of\b|どのくらい|どれくらい|どれほど|どれだけ|いくつ|いくら"
    r"|何(人|パーセント|%|％|割|個|隻|機|台|件|回|万|億|倍|キロ|トン|円|ドル)",
    re.IGNORECASE,
)
# Years a question names ("in 2020", "2020年"): a document that mentions none of them, in its
# text or its date, cannot answer it.
_YEAR = re.compile(r"(?<![\d.,])(1[6-9]\d\d|20\d\d)(?!\d)")
# Dates, years and names with digits in them ("July 1, 2014", "April 1996", "2014年7月1日",
# "1996", "the 2+2 meeting", "G7", "F-35"): they date or name things; they count nothing.
_MONTH = (
    r"(?:January|February|March|April|May|June|July|August|September|October|November|December"
    r"|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)\.?"
)
_NOT_AN_AMOUNT = re.compile(
    rf"\b{_MONTH}\s+\d{{1,2}}(?!\d)(?:st|nd|rd|th)?(?:,\s*\d{{4}})?"
    rf"|\b\d{{1,2}}(?:st|nd|rd|th)?\s+{_MONTH}(?:,?\s*\d{{4}})?"
    rf"|\b{_MONTH},?\s+\d{{4}}"
    r"|\d{4}年(?:\d{1,2}月(?:\d{1,2}日)?)?|\d{1,2}月\d{1,2}日"
    rf"|{_YEAR.pattern}"
    r"|\b\d+(?:\+\d+)+\b|\b[A-Za-z]+-?\d+\b"
)
_LIST_MARKER = re.compile(r"^\s*(\(?\d{1,2}[.)]|\([ivx]+\))\s*", re.IGNORECASE)
# "the two governments", "these three principles": known things named, not an amount stated;
# the group is what they count.
_DEFINITE_COUNT = re.compile(
    r"\b(?:the|these|those)\s+(?:two|three|four|five|six|seven|eight|nine|ten)\s+(\w+)",
    re.IGNORECASE,
)
_NUMBER = re.compile(
    r"\d|[一二三四五六七八九十百千万億兆]|\b(two|three|four|five|six|seven|eight|nine|ten"
    r"|eleven|twelve|twenty|thirty|forty|fifty|hundreds?|thousands?|millions?|billions?"
    r"|dozens?|half|percent)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class QuoteSettings:
    chunk_weight: float = 0.0  # share of the chunk's cosine in a quote's score
    keyword_weight: float = 0.3  # share of the question's IDF-weighted keywords the quote holds
    max_sentences: int = 3
    # Quotes scored with vectors the cross-lingual reader made at question time are single
    # sentences: summing multilingual-e5's vectors drifts toward what all its vectors share
    # (its cosines sit in a narrow band), so a window outscored the one answering sentence
    # (seed set: 2 of 9 Japanese top quotes lost to a window without the answer).
    read_max_sentences: int = 1
    min_words: int = 4  # shorter "sentences" are headings or signatures, not answers
    duplicate_overlap: float = 0.8  # word-set overlap above which two quotes say the same
    # Score kept by a quote that states no number when the question asks for an amount
    # ("how many", "何人"): such a quote is on the subject but cannot be the answer.
    no_number_factor: float = 0.5
    # Score kept by a quote whose document mentions none of the years the question names
    # ("Japan's defense budget in 2020" from statements of 1996 and 2014).
    other_year_factor: float = 0.5


@dataclass(frozen=True)
class _Asked:
    """What a question asks for that a quote must be able to give."""

    amount: bool  # "how many", "何人": the quote states a number
    keywords: frozenset[str]  # its own: "how many countries" is answered by "the two countries"
    years: frozenset[str]  # years the question names: the quote's document mentions one


@dataclass(frozen=True)
class ScoredQuote:
    doc_id: str
    start: int
    end: int
    section: str | None
    candidate: Candidate  # the retrieved chunk the quote sits in
    score: float
    words: frozenset[str] = frozenset()  # lower-cased words, to spot duplicates


@dataclass(frozen=True)
class _Sentence:
    """What quote selection needs of one sentence; worked out once per loaded index."""

    quotable: bool
    keywords: frozenset[str]  # BM25 tokens
    words: frozenset[str]  # lower-cased words
    # A numeral or number word, not counting a leading "(4)" or "(ii)", a date or a year, nor a
    # definite reference ("the two governments": it names known things, it does not count them)
    states_number: bool
    counted: frozenset[str]  # keywords of what definite references count ("govern")


@dataclass(frozen=True)
class _ChunkQuotes:
    """A chunk's possible quotes; worked out once per loaded index and quote length."""

    ids: npt.NDArray[np.int64]  # its sentences' vector ids
    spans: list[Span]
    sentences: list[_Sentence]
    windows: list[tuple[int, int]]  # (first, last) positions of its possible quotes


class _Window(NamedTuple):
    """One possible quote, scored: made for every window, so kept light (a tuple)."""

    score: float
    candidate: Candidate
    chunk: _ChunkQuotes
    first: int
    last: int


class QuoteSelector:
    def __init__(
        self, index: Index, tokenizer: KeywordTokenizer, settings: QuoteSettings | None = None
    ) -> None:
        self.index = index
        self.tokenizer = tokenizer
        self.settings = settings or QuoteSettings()

    def rank(
        self, query: Query, candidates: list[Candidate], limit: int | None = None
    ) -> list[ScoredQuote]:
        """The best `limit` (default: every) distinct quotes the candidates hold, best first."""
        idf = self.index.keywords.idf(query.tokens)
        asked = _Asked(
            amount=bool(_ASKS_AMOUNT.search(query.text)),
            keywords=frozenset(query.tokens),
            years=frozenset(_YEAR.findall(query.text)),
        )
        longest = (
            self.settings.max_sentences
            if query.sentence_vectors is None
            else self.settings.read_max_sentences
        )
        chunks = [self._chunk(c.chunk, longest) for c in candidates]
        vectors = self._sentence_vectors(query, chunks)
        scored = [
            window
            for candidate, chunk, chunk_vectors in zip(candidates, chunks, vectors, strict=True)
            for window in self._windows_in(query, idf, asked, candidate, chunk, chunk_vectors)
        ]
        scored.sort(key=lambda w: w.score, reverse=True)
        return self._distinct(scored, limit)

    def _sentence_vectors(
        self, query: Query, chunks: list[_ChunkQuotes]
    ) -> list[npt.NDArray[np.float32]]:
        """Each chunk's sentence vectors: the reader's, or the index's in one read for all."""
        if query.sentence_vectors is not None:
            read = query.sentence_vectors
            return [np.vstack([read[int(i)] for i in chunk.ids]) for chunk in chunks]
        if not chunks:
            return []
        stored = self.index.sentence_store.vectors(np.concatenate([c.ids for c in chunks]))
        ends = np.cumsum([len(c.ids) for c in chunks])
        return np.split(stored, ends[:-1])

    def _windows_in(
        self,
        query: Query,
        idf: dict[str, float],
        asked: _Asked,
        candidate: Candidate,
        chunk: _ChunkQuotes,
        vectors: npt.NDArray[np.float32],
    ) -> list[_Window]:
        """Every window of the chunk, scored by the normalised sum of its sentence vectors and
        the keywords it holds."""
        keyword_total = sum(idf.values())
        matched = [s.keywords & idf.keys() for s in chunk.sentences]  # small: coverage is cheap
        chunk_weight, keyword_weight = self.settings.chunk_weight, self.settings.keyword_weight
        similarities = _window_similarities(vectors, chunk.windows, query.vector.reshape(-1))
        other_year = bool(asked.years) and not asked.years & self._years(candidate.chunk.doc_id)
        windows = []
        for (first, last), similarity in zip(chunk.windows, similarities, strict=True):
            coverage = _coverage(idf, keyword_total, matched[first : last + 1])
            if not query.semantic:  # the vectors can't judge this language: keywords alone
                similarity = coverage
            score = (
                chunk_weight * candidate.dense_score
                + (1 - chunk_weight - keyword_weight) * similarity
                + keyword_weight * coverage
            )
            if asked.amount and not any(
                s.states_number or s.counted & asked.keywords
                for s in chunk.sentences[first : last + 1]
            ):
                score *= self.settings.no_number_factor
            if other_year:
                score *= self.settings.other_year_factor
            windows.append(_Window(score, candidate, chunk, first, last))
        return windows

    def _chunk(self, chunk: Chunk, longest: int) -> _ChunkQuotes:
        known: _ChunkQuotes | None = self.index.chunk_memo.get((chunk.chunk_id, longest))
        if known is None:
            entry = self.index.entries[chunk.doc_id]
            text = entry.document.text
            spans = [entry.sentences[i] for i in chunk.sentences]
            ids = [sentence_vector_id(chunk.doc_id, i) for i in chunk.sentences]
            sentences = [self._sentence(i, text, span) for i, span in zip(ids, spans, strict=True)]
            known = _ChunkQuotes(
                ids=np.array(ids, dtype=np.int64),
                spans=spans,
                sentences=sentences,
                windows=self._windows(text, spans, sentences, longest),
            )
            # same value from any thread: no lock
            self.index.chunk_memo[(chunk.chunk_id, longest)] = known
        return known

    def _sentence(self, vector_id: int, text: str, span: Span) -> _Sentence:
        known: _Sentence | None = self.index.sentence_memo.get(vector_id)
        if known is None:
            sentence = text[span.start : span.end]
            unlisted = _LIST_MARKER.sub("", sentence)
            known = _Sentence(
                quotable=self._quotable(text, span),
                keywords=frozenset(self.tokenizer.tokenize(sentence)),
                words=frozenset(_WORD.findall(sentence.lower())),
                states_number=bool(
                    _NUMBER.search(_DEFINITE_COUNT.sub(" ", _NOT_AN_AMOUNT.sub(" ", unlisted)))
                ),
                counted=frozenset(
                    self.tokenizer.tokenize(" ".join(_DEFINITE_COUNT.findall(unlisted)))
                ),
            )
            self.index.sentence_memo[vector_id] = known  # same value from any thread: no lock
        return known

    def _years(self, doc_id: str) -> frozenset[str]:
        """The years a document mentions in its text or its date."""
        known: frozenset[str] | None = self.index.document_memo.get(doc_id)
        if known is None:
            document = self.index.entries[doc_id].document
            known = frozenset(_YEAR.findall(f"{document.date or ''} {document.text}"))
            self.index.document_memo[doc_id] = known  # same value from any thread: no lock
        return known

    def _windows(
        self, text: str, spans: list[Span], sentences: list[_Sentence], longest: int
    ) -> list[tuple[int, int]]:
        """(first, last) positions of runs of 1..`longest` quotable sentences that share a
        paragraph and a section: the shapes a quote may take."""
        windows = []
        for first, span in enumerate(spans):
            if not sentences[first].quotable:
                continue
            last = first
            while True:
                windows.append((first, last))
                nxt = last + 1
                if (
                    nxt - first >= longest
                    or nxt >= len(spans)
                    or not sentences[nxt].quotable
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

    def _distinct(self, ranked: list[_Window], limit: int | None) -> list[ScoredQuote]:
        """Drop quotes that overlap a better one or repeat its words."""
        kept: list[ScoredQuote] = []
        # Quotes are runs of whole sentences, so two overlap exactly when they share a sentence:
        # a set lookup per sentence instead of comparing spans with every kept quote.
        quoted: set[int] = set()
        for window in ranked:
            if limit is not None and len(kept) >= limit:
                break
            ids = window.chunk.ids[window.first : window.last + 1].tolist()
            if not quoted.isdisjoint(ids):
                continue
            sentences = window.chunk.sentences[window.first : window.last + 1]
            words = frozenset().union(*(s.words for s in sentences))
            if any(_overlap(words, k.words) >= self.settings.duplicate_overlap for k in kept):
                continue
            quoted.update(ids)
            doc_id = window.candidate.chunk.doc_id
            start, end = window.chunk.spans[window.first].start, window.chunk.spans[window.last].end
            kept.append(
                ScoredQuote(
                    doc_id=doc_id,
                    start=start,
                    end=end,
                    section=window.chunk.spans[window.first].section,
                    candidate=window.candidate,
                    score=window.score,
                    words=words,
                )
            )
        return kept


def _window_similarities(
    vectors: npt.NDArray[np.float32], windows: list[tuple[int, int]], query: npt.NDArray[np.float32]
) -> list[float]:
    """Cosine of the query with each window's summed sentence vectors, all windows at once
    (sums from prefix sums: one matrix product instead of a loop of small ones)."""
    if not windows:
        return []
    prefix = np.vstack([np.zeros((1, vectors.shape[1]), np.float32), np.cumsum(vectors, axis=0)])
    firsts = np.array([first for first, _ in windows])
    lasts = np.array([last for _, last in windows])
    sums = prefix[lasts + 1] - prefix[firsts]
    norms = np.maximum(np.linalg.norm(sums, axis=1), 1e-9)
    return ((sums @ query) / norms).tolist()  # type: ignore[no-any-return]


def _coverage(idf: dict[str, float], total: float, sentences: list[frozenset[str]]) -> float:
    """Share of the question's keyword weight (IDF) found in the sentences (their keywords, or
    just those of the question they hold)."""
    if not total:
        return 0.0
    held = set().union(*sentences)
    return sum(weight for token, weight in idf.items() if token in held) / total


def _overlap(a: frozenset[str], b: frozenset[str]) -> float:
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
