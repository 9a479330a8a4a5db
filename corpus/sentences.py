"""Sentence splitting for English and Japanese, with exact character offsets.

Rules, in order of use:
- a blank line always ends a sentence; a single newline does unless the line was wrapped
  (the next line starts in lower case, or the line is long and has no closing punctuation);
- `。` (and `!`/`?` before Japanese text) ends a sentence, with any closing brackets;
- `.`/`!`/`?` followed by a space and a capital, digit or opening bracket ends one, except after
  abbreviations ("Dec.", "No."), initials ("J."), dotted acronyms ("U.S." unless a typical
  sentence opener follows) and item numbers at the start of a line ("1.", "iv.");
- a lower-case word, a full stop and a capitalised word with no space ("century.The") is a
  boundary too: it happens in scraped text. Decimals ("3.5") never split.
"""

from __future__ import annotations

import re

from corpus.models import Span
from corpus.normalize import CJK_CHARS

_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st no nos art arts para paras sec vol fig figs vs cf e.g "
    "i.e inc ltd co corp gen gov sen rep rev lt col capt cmdr adm sgt jan feb mar apr "
    "jun jul aug sep sept oct nov dec approx dept est op pp p ed eds al".split()
)
_SENTENCE_OPENERS = frozenset(
    "the this that these those it its we they he she i in on at as for but and however "
    "there our their his her a an both each such while when since after before if".split()
)
_CLOSERS = "\"'”’)]」』）】〕»"
_CJK = CJK_CHARS + r"\uff66-\uff9f"  # half-width kana: text not yet NFKC-normalised
_LIST_MARKER = re.compile(r"(?:\(?(?:\d{1,3}|[ivxlc]{1,6}|[a-z])\)|\d{1,3}\.|[-*•・])\s", re.I)
_ROMAN = re.compile(r"^[ivxlc]{1,6}$", re.I)

_JA_END = re.compile(rf"。[{re.escape(_CLOSERS)}]*|[!?][{re.escape(_CLOSERS)}]*(?=[{_CJK}])")
_EN_END = re.compile(
    rf"[.!?]+[{re.escape(_CLOSERS)}]*(?=\s+[\"'“‘(\[「A-Z0-9{_CJK}])"
    rf"|(?<=[a-z]{{2}})[.!?](?=[A-Z][a-z])"
)
_WRAPPED_LINE_LENGTH = 60


def split_sentences(text: str, start: int = 0, end: int | None = None) -> list[Span]:
    """Sentences of `text[start:end]` as spans into `text`, trimmed of surrounding whitespace.

    Spans are ordered and disjoint, and the text between them is whitespace only: no
    character is lost or repeated.
    """
    end = len(text) if end is None else end
    spans: list[Span] = []
    for seg_start, seg_end in _segments(text, start, end):
        cut = seg_start
        for stop in _sentence_ends(text, seg_start, seg_end):
            _append_trimmed(text, cut, stop, spans)
            cut = stop
        _append_trimmed(text, cut, seg_end, spans)
    return spans


def _segments(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Cut at blank lines and at line breaks that end a line rather than wrap it."""
    segments: list[tuple[int, int]] = []
    seg_start = start
    pos = text.find("\n", start, end)
    while pos != -1:
        line = text[max(start, text.rfind("\n", start, pos) + 1) : pos]
        nxt = text[pos + 1 : min(end, pos + 12)]
        if _line_break_ends_sentence(line, nxt):
            segments.append((seg_start, pos))
            seg_start = pos + 1
        pos = text.find("\n", pos + 1, end)
    segments.append((seg_start, end))
    return segments


def _line_break_ends_sentence(line: str, next_text: str) -> bool:
    stripped = line.rstrip()
    if not stripped or not next_text.strip() or next_text.startswith("\n"):
        return True
    if _LIST_MARKER.match(next_text) or next_text.startswith("#"):
        return True
    if next_text[0].islower():
        return False
    if stripped[-1] in ".!?。" + _CLOSERS:
        return True
    return len(stripped) < _WRAPPED_LINE_LENGTH


def _sentence_ends(text: str, start: int, end: int) -> list[int]:
    segment = text[start:end]
    ends = {start + m.end() for m in _JA_END.finditer(segment) if start + m.end() < end}
    for match in _EN_END.finditer(segment):
        if match.group().startswith(".") and _is_abbreviation(segment, match.start(), match.end()):
            continue
        ends.add(start + match.end())
    return sorted(ends)


def _is_abbreviation(segment: str, dot: int, after: int) -> bool:
    """Whether the full stop at `segment[dot]` closes an abbreviation rather than a sentence."""
    word_start = dot
    while (
        word_start > 0 and not segment[word_start - 1].isspace() and segment[word_start - 1] != "("
    ):
        word_start -= 1
    word = segment[word_start:dot].rsplit("-", 1)[-1]  # "Japan-U.S" → "U.S"
    if not word or any(c in word for c in _CLOSERS):
        return False
    if word.lower() in _ABBREVIATIONS:
        return True
    if len(word) == 1 and word.isupper():
        return True  # an initial: "John F. Kennedy"
    if re.fullmatch(r"(?:[A-Za-z]\.)+[A-Za-z]", word):  # "U.S", "e.g"
        following = segment[after:].split(maxsplit=1)
        return not following or following[0].strip("\"'“‘(").lower() not in _SENTENCE_OPENERS
    at_line_start = segment[:word_start].strip() == ""
    return at_line_start and (word.isdigit() or bool(_ROMAN.match(word)))


def _append_trimmed(text: str, start: int, end: int, spans: list[Span]) -> None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if start < end:
        spans.append(Span(start, end))
