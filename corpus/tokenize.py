"""Keyword tokens for BM25, by language.

English (and other Latin-script text): lower-cased words, stop words dropped, Snowball stems.
Japanese: a morphological analyser's dictionary forms with particles, auxiliaries and symbols
dropped (`fugashi` with UniDic-lite by default, `sudachi` as the alternative), or character
bigrams when neither is installed. Chosen on JaQuAD (BM25 alone, nDCG@10): fugashi 0.624,
sudachi 0.619, bigrams 0.599; see docs/benchmarks.md. Mixed text is split into runs of
Japanese and other characters, each tokenised by its own rule.

Numbers and identifiers stay exact tokens: "100,000", "1978", "2+2", "F-35" are never
stemmed or split, so a question naming them matches only them. Hyphenated words without digits
are split into their words ("Japan-U.S." into "japan", "u.s"), so "Japan" finds "Japan-U.S.
Alliance": on SciFact, BM25 nDCG@10 0.643 -> 0.663 (significant; docs/benchmarks.md).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import Stemmer
from bm25s.stopwords import STOPWORDS_EN

from corpus.normalize import CJK_CHARS

JapaneseAnalyzer = Literal["sudachi", "fugashi", "bigram"]

_JAPANESE_RUN = re.compile(f"[{CJK_CHARS}ー々〆ヶ]+")
# An identifier or number joined by inner punctuation ("100,000", "2+2", "F-35", "3.5"), or a word.
_WORD = re.compile(r"\w+(?:[.,+/&'’-]\w+)*")
_HAS_DIGIT = re.compile(r"\d")
_SKIPPED_POS = frozenset({"助詞", "助動詞", "補助記号", "記号", "空白"})
# Verbs that mostly do grammar's work (する, いる, できる, なる): Japanese stop words.
_AUXILIARY = ("動詞", "非自立可能")


@dataclass(frozen=True)
class TokenizerSettings:
    japanese: JapaneseAnalyzer = "fugashi"
    stem: bool = True
    stop_words: bool = True
    split_hyphens: bool = True  # "Asia-Pacific" -> "asia", "pacif"; "F-35" stays whole
    # Raised when the rules change (2: Japanese auxiliary verbs dropped), so an index's stored
    # tokens are made again rather than mixed with the new rules' tokens of questions.
    rules: int = 2


class KeywordTokenizer:
    """Text in, BM25 tokens out; the same rules for documents and questions."""

    def __init__(self, settings: TokenizerSettings | None = None) -> None:
        self.settings = settings or TokenizerSettings()
        self._stemmer = Stemmer.Stemmer("english") if self.settings.stem else None
        self._stop = frozenset(STOPWORDS_EN) if self.settings.stop_words else frozenset()

    def tokenize(self, text: str) -> list[str]:
        return [token for token, _ in self.terms(text)]

    def tokenize_many(self, texts: list[str]) -> list[list[str]]:
        return [self.tokenize(text) for text in texts]

    def terms(self, text: str) -> list[tuple[str, str]]:
        """Each token with the word it was read from, as written (for showing a reader which
        of their words matched, not the stems)."""
        terms: list[tuple[str, str]] = []
        position = 0
        for run in _JAPANESE_RUN.finditer(text):
            terms.extend(self._latin(text[position : run.start()]))
            terms.extend(self._japanese_analyzer(run.group()))
            position = run.end()
        terms.extend(self._latin(text[position:]))
        return terms

    def _latin(self, text: str) -> list[tuple[str, str]]:
        words = _WORD.findall(text)
        if self.settings.split_hyphens:
            words = [
                part for w in words for part in ([w] if _HAS_DIGIT.search(w) else w.split("-"))
            ]
        terms = [(w.lower(), w) for w in words if w.lower() not in self._stop]
        if self._stemmer is None:
            return terms
        # Identifiers and numbers are matched exactly; only plain words are stemmed.
        return [
            (w if _HAS_DIGIT.search(w) or not w.isalpha() else self._stemmer.stemWord(w), typed)
            for w, typed in terms
        ]

    @cached_property
    def _japanese_analyzer(self) -> Callable[[str], list[tuple[str, str]]]:
        wanted = self.settings.japanese
        if wanted == "fugashi":
            try:
                return _fugashi()
            except (ImportError, RuntimeError):  # no MeCab dictionary: try the other analyser
                wanted = "sudachi"
        if wanted == "sudachi":
            try:
                return _sudachi()
            except ImportError:
                pass
        return _bigrams


def _sudachi() -> Callable[[str], list[tuple[str, str]]]:
    from sudachipy import Dictionary, SplitMode

    tokenizer = Dictionary(dict="core").tokenizer(mode=SplitMode.B)
    lock = threading.Lock()  # a Sudachi tokenizer must not be used by two threads at once

    def analyse(text: str) -> list[tuple[str, str]]:
        with lock:
            return [
                (m.normalized_form(), m.surface())
                for m in tokenizer.tokenize(text)
                if m.part_of_speech()[0] not in _SKIPPED_POS
                and tuple(m.part_of_speech()[:2]) != _AUXILIARY
            ]

    return analyse


def _fugashi() -> Callable[[str], list[tuple[str, str]]]:
    import fugashi

    tagger = fugashi.Tagger()
    lock = threading.Lock()  # MeCab's tagger keeps state between calls

    def analyse(text: str) -> list[tuple[str, str]]:
        with lock:
            return [
                (word.feature.lemma or word.surface, word.surface)
                for word in tagger(text)
                if word.feature.pos1 not in _SKIPPED_POS
                and (word.feature.pos1, word.feature.pos2) != _AUXILIARY
            ]

    return analyse


def _bigrams(text: str) -> list[tuple[str, str]]:
    if len(text) == 1:
        return [(text, text)]
    return [(text[i : i + 2], text[i : i + 2]) for i in range(len(text) - 1)]
