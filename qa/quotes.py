"""Quote selection: within the best chunks, the sentence (or few adjacent sentences) that
answers the question, as an exact span of the document.

Every run of one to three adjacent sentences of one paragraph is a possible quote. Each is
described by the features of `qa.quote_scorer.FEATURES` (its similarity to the question, the
share of the question's IDF-weighted keywords it holds, the passage it sits in, whether it
states what the question asks for...) and scored by a `QuoteScorer`: by default a model learned
from public QA sets. A quote is always one contiguous span of the document, never two places
stitched together. Quotes scored with the cross-lingual reader's vectors are single sentences
(`read_max_sentences`).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from corpus.models import Chunk, Span
from corpus.normalize import CJK_CHAR
from corpus.tokenize import KeywordTokenizer
from qa.index import Index, sentence_vector_id
from qa.quote_scorer import FEATURES, QuoteCandidates, QuoteScorer
from qa.retriever import Candidate, Query

_WORD = re.compile(r"\w+")
# Questions that ask for an amount, and questions that ask when: what a quote must state to
# answer them is one of the features the scorer weighs (answer-type match).
_ASKS_AMOUNT = re.compile(
    r"\bhow (many|much|big|large|far|often)\b|\bwhat (percentage|proportion|share)\b"
    r"|\bnumber of\b|どのくらい|どれくらい|どれほど|どれだけ|いくつ|いくら"
    r"|何(人|パーセント|%|％|割|個|隻|機|台|件|回|万|億|倍|キロ|トン|円|ドル)",
    re.IGNORECASE,
)
_ASKS_TIME = re.compile(
    r"\bwhen\b|\bwhat (year|date|day|month|century|decade|time)\b|\bwhich (year|century)\b"
    r"|\bhow long\b|いつ|何年|何月|何日|何世紀|何時",
    re.IGNORECASE,
)
# Dates and years ("July 1, 2014", "April 1996", "2014年7月1日", "1996"), and names with
# digits in them ("2+2", "G7", "F-35"): they date or name things; they count nothing.
_MONTH = (
    r"(?:January|February|March|April|May|June|July|August|September|October|November|December"
    r"|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)\.?"
)
_DATE = re.compile(
    rf"\b{_MONTH}\s+\d{{1,2}}(?!\d)(?:st|nd|rd|th)?(?:,\s*\d{{4}})?"
    rf"|\b\d{{1,2}}(?:st|nd|rd|th)?\s+{_MONTH}(?:,?\s*\d{{4}})?"
    rf"|\b{_MONTH},?\s+\d{{4}}"
    r"|\d{1,4}年(?:\d{1,2}月(?:\d{1,2}日)?)?|\d{1,2}月\d{1,2}日"
    r"|(?<![\d.,])(?:1[6-9]\d\d|20\d\d)(?!\d)"
)
_NUMBERED_NAME = re.compile(r"\b\d+(?:\+\d+)+\b|\b[A-Za-z]+-?\d+\b")
_LIST_MARKER = re.compile(r"^\s*(\(?\d{1,2}[.)]|\([ivx]+\))\s*", re.IGNORECASE)
_NUMBER = re.compile(
    r"\d|[一二三四五六七八九十百千万億兆]|\b(two|three|four|five|six|seven|eight|nine|ten"
    r"|eleven|twelve|twenty|thirty|forty|fifty|hundreds?|thousands?|millions?|billions?"
    r"|dozens?|half|percent)\b",
    re.IGNORECASE,
)
# What a question names: runs of capitalised words (joined by "of", "the"...) and years. A
# quote, or a whole document, that holds none of them is likely about something else (a
# question about New York answered from an article on Boston); the learned model weighs it.
_NAME = re.compile(
    r"(?<!\w)(?:[A-Z][\w'’-]*|\d{3,4})"
    r"(?:\s+(?:(?:of|the|de|von|van)\s+)*(?:[A-Z][\w'’-]*|\d{3,4}))*"
)
# Capitalised because they open a sentence, not because they name something
_NOT_NAMES = frozenset(
    "who whom whose what when where which why how in on at the a an during after before by for"
    " from to of with is was were are did does do approximately about according as".split()
)
_POSSESSIVE = re.compile(r"['’]s\b")
_COLUMN = {name: i for i, name in enumerate(FEATURES)}


@dataclass(frozen=True)
class QuoteSettings:
    max_sentences: int = 3
    # Quotes scored with vectors the cross-lingual reader made at question time are single
    # sentences: summing multilingual-e5's vectors drifts toward what all its vectors share
    # (its cosines sit in a narrow band), so a window outscored the one answering sentence
    # (seed set: 2 of 9 Japanese top quotes lost to a window without the answer).
    read_max_sentences: int = 1
    min_words: int = 4  # shorter "sentences" are headings or signatures, not answers
    duplicate_overlap: float = 0.8  # word-set overlap above which two quotes say the same


@dataclass(frozen=True)
class _Asked:
    """What a question asks for that a quote must be able to give."""

    amount: bool  # "how many", "何人": the quote states a number
    time: bool  # "when", "いつ": the quote holds a date or a year


@dataclass(frozen=True)
class _Named:
    """The names a question asks about (each as its lower-cased words), and the words of the
    document a quote sits in (read only when the question names something)."""

    names: list[frozenset[str]]
    document_words: frozenset[str]

    def features(self, sentences: list[_Sentence]) -> tuple[float, float, float]:
        """names_asked, names_missing, names_missing_document."""
        if not self.names:
            return 0.0, 0.0, 0.0
        held = frozenset().union(*(s.words for s in sentences))
        share = 1 / len(self.names)
        missing = sum(share for name in self.names if not name <= held)
        absent = sum(share for name in self.names if not name <= self.document_words)
        return 1.0, missing, absent


@dataclass(frozen=True)
class ScoredQuote:
    doc_id: str
    start: int
    end: int
    section: str | None
    candidate: Candidate  # the retrieved chunk the quote sits in
    score: float  # the scorer's confidence that it answers (compared with the threshold)
    words: frozenset[str] = frozenset()  # lower-cased words, to spot duplicates


@dataclass(frozen=True)
class _Sentence:
    """What quote selection needs of one sentence; worked out once per loaded index."""

    quotable: bool
    keywords: frozenset[str]  # BM25 tokens
    words: frozenset[str]  # lower-cased words
    word_count: int
    states_number: bool  # a numeral or number word, not a list marker, a date or a numbered name
    states_date: bool  # a date or a year


@dataclass(frozen=True)
class _ChunkQuotes:
    """A chunk's possible quotes; worked out once per loaded index and quote length."""

    ids: npt.NDArray[np.int64]  # its sentences' vector ids
    positions: list[int]  # its sentences' positions in the document
    spans: list[Span]
    sentences: list[_Sentence]
    windows: list[tuple[int, int]]  # (first, last) positions of its possible quotes


class QuoteWindow(NamedTuple):
    """One possible quote: made for every window, so kept light (a tuple)."""

    candidate: Candidate
    chunk: _ChunkQuotes
    first: int
    last: int

    @property
    def span(self) -> tuple[str, int, int]:
        """(doc_id, start, end) of the quote in its document."""
        spans = self.chunk.spans
        return self.candidate.chunk.doc_id, spans[self.first].start, spans[self.last].end


class QuoteSelector:
    def __init__(
        self,
        index: Index,
        tokenizer: KeywordTokenizer,
        scorer: QuoteScorer,
        settings: QuoteSettings | None = None,
    ) -> None:
        self.index = index
        self.tokenizer = tokenizer
        self.scorer = scorer
        self.settings = settings or QuoteSettings()

    def rank(
        self, query: Query, candidates: list[Candidate], limit: int | None = None
    ) -> list[ScoredQuote]:
        """The best `limit` (default: every) distinct quotes the candidates hold, best first,
        each with its confidence as `score`."""
        windows, features = self.features(query, candidates)
        if not windows:
            return []
        quotes = QuoteCandidates(
            question=query.text,
            model_id=query.model_id,
            lang=query.lang,
            cross_lingual=self.cross_lingual(query, candidates),
            features=features,
            texts=lambda rows: [self._text(windows[row]) for row in rows],
        )
        ranks = self.scorer.rank(quotes)
        confidences = self.scorer.confidence(quotes, ranks)
        order = np.argsort(-ranks, kind="stable").tolist()
        return self._distinct([(float(confidences[i]), windows[i]) for i in order], limit)

    def cross_lingual(self, query: Query, candidates: list[Candidate]) -> bool:
        """Whether most candidates are in another language than the question (a Japanese
        question about English documents): no keyword of the question can be in them."""
        langs = Counter(self.index.entries[c.chunk.doc_id].document.lang for c in candidates)
        return bool(langs) and langs.most_common(1)[0][0] != query.lang

    def features(
        self, query: Query, candidates: list[Candidate]
    ) -> tuple[list[QuoteWindow], npt.NDArray[np.float32]]:
        """Every possible quote of the candidates and its features (columns as `FEATURES`)."""
        idf = self.index.keywords.idf(query.tokens)
        asked = _Asked(
            amount=bool(_ASKS_AMOUNT.search(query.text)),
            time=bool(_ASKS_TIME.search(query.text)),
        )
        longest = (
            self.settings.max_sentences
            if query.sentence_vectors is None
            else self.settings.read_max_sentences
        )
        chunks = [self._chunk(c.chunk, longest) for c in candidates]
        vectors = self._sentence_vectors(query, chunks)
        names = asked_names(query.text)
        best_bm25 = max((c.bm25_score for c in candidates), default=0.0) or 1.0
        question_idf = math.log1p(sum(idf.values()))
        unseen = self.index.keywords.unseen_share(query.tokens)
        windows: list[QuoteWindow] = []
        rows: list[list[float]] = []
        for rank, (candidate, chunk, chunk_vectors) in enumerate(
            zip(candidates, chunks, vectors, strict=True)
        ):
            passage = [  # passage_rank .. question_idf, the same for all its quotes
                math.log1p(rank),
                candidate.dense_score
                if query.sentence_vectors is None
                else candidate.rerank_score or 0.0,
                candidate.bm25_score / best_bm25,
                math.log1p(candidate.bm25_score),
                question_idf,
            ]
            document = self._document_words(candidate.chunk.doc_id) if names else frozenset()
            named = _Named(names, document)
            windows_in = self._windows_in(query, idf, asked, named, chunk, chunk_vectors, passage)
            for window, row in windows_in:
                windows.append(QuoteWindow(candidate, chunk, *window))
                rows.append([*row, unseen])
        features = np.asarray(rows, dtype=np.float32).reshape(len(rows), len(FEATURES))
        if rows:
            for column, gap in (("similarity", "similarity_gap"), ("coverage", "coverage_gap")):
                values = features[:, _COLUMN[column]]
                features[:, _COLUMN[gap]] = values - values.max()
        return windows, features

    def _text(self, window: QuoteWindow) -> str:
        doc_id, start, end = window.span
        return self.index.entries[doc_id].document.text[start:end]

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
        named: _Named,
        chunk: _ChunkQuotes,
        vectors: npt.NDArray[np.float32],
        passage: list[float],
    ) -> list[tuple[tuple[int, int], list[float]]]:
        """Every window of the chunk with its features in `FEATURES` order up to
        `names_missing_document` (the gaps are left at 0 for `features` to fill in, once the
        best of the question is known)."""
        keyword_total = sum(idf.values())
        matched = [s.keywords & idf.keys() for s in chunk.sentences]  # small: coverage is cheap
        similarities = _window_similarities(vectors, chunk.windows, query.vector.reshape(-1))
        out = []
        for (first, last), similarity in zip(chunk.windows, similarities, strict=True):
            held = set().union(*matched[first : last + 1])
            weight = sum(idf[token] for token in held)
            coverage = weight / keyword_total if keyword_total else 0.0
            if not query.semantic:  # the vectors can't judge this language: keywords alone
                similarity = coverage
            sentences = chunk.sentences[first : last + 1]
            number = any(s.states_number for s in sentences)
            date = any(s.states_date for s in sentences)
            row = [
                similarity,
                coverage,
                math.log1p(weight),
                0.0,  # similarity_gap
                0.0,  # coverage_gap
                float(last - first + 1),
                math.log1p(sum(s.word_count for s in sentences)),
                *passage,
                math.log1p(chunk.positions[first]),
                float(asked.amount and number),
                float(asked.amount and not number),
                float(asked.time and date),
                float(asked.time and not date),
                *named.features(sentences),
            ]
            out.append(((first, last), row))
        return out

    def _document_words(self, doc_id: str) -> frozenset[str]:
        known: frozenset[str] | None = self.index.document_memo.get(doc_id)
        if known is None:
            text = self.index.entries[doc_id].document.text
            known = frozenset(_WORD.findall(text.lower()))
            self.index.document_memo[doc_id] = known  # same value from any thread: no lock
        return known

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
                positions=list(chunk.sentences),
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
            words = _WORD.findall(sentence.lower())
            states_number, states_date = answer_types(sentence)
            known = _Sentence(
                quotable=self._quotable(text, span),
                keywords=frozenset(self.tokenizer.tokenize(sentence)),
                words=frozenset(words),
                word_count=len(CJK_CHAR.findall(sentence)) // 2 or len(words),
                states_number=states_number,
                states_date=states_date,
            )
            self.index.sentence_memo[vector_id] = known  # same value from any thread: no lock
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

    def _distinct(
        self, ranked: list[tuple[float, QuoteWindow]], limit: int | None
    ) -> list[ScoredQuote]:
        """Drop quotes that overlap a better one or repeat its words."""
        kept: list[ScoredQuote] = []
        # Quotes are runs of whole sentences, so two overlap exactly when they share a sentence:
        # a set lookup per sentence instead of comparing spans with every kept quote.
        quoted: set[int] = set()
        for score, window in ranked:
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
            doc_id, start, end = window.span
            kept.append(
                ScoredQuote(
                    doc_id=doc_id,
                    start=start,
                    end=end,
                    section=window.chunk.spans[window.first].section,
                    candidate=window.candidate,
                    score=score,
                    words=words,
                )
            )
        return kept


def asked_names(question: str) -> list[frozenset[str]]:
    """The names in a question ("Who headed the Nazis in East Prussia?": Nazis, East Prussia),
    each as its lower-cased words; none in a question without capitals, such as Japanese."""
    names = []
    opening = re.match(r"\W*", question)
    for match in _NAME.finditer(question):
        words = match.group(0).split()
        if opening and match.start() == opening.end() and not words[0].isdigit():
            words = words[1:]  # capitalised because it opens the question ("Besides defense")
        while words and words[0].lower() in _NOT_NAMES:
            words = words[1:]
        name = frozenset(_WORD.findall(_POSSESSIVE.sub("", " ".join(words)).lower()))
        if name and name not in names:
            names.append(name)
    return names


def answer_types(sentence: str) -> tuple[bool, bool]:
    """Whether the sentence states a number (not a leading "(4)", a date, a year or a name with
    digits such as "2+2"), and whether it holds a date or a year."""
    unlisted = _LIST_MARKER.sub("", sentence)
    undated = _DATE.sub(" ", unlisted)
    return bool(_NUMBER.search(_NUMBERED_NAME.sub(" ", undated))), undated != unlisted


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


def _overlap(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / max(1, min(len(a), len(b)))


def diverse(ranked: list[ScoredQuote], top_k: int) -> list[ScoredQuote]:
    """In ranked order, at most half the slots per document while other documents have
    quotes."""
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
    position = {id(quote): n for n, quote in enumerate(ranked)}
    chosen.sort(key=lambda q: position[id(q)])
    return chosen
