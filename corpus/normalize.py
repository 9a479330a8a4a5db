"""Text normalisation, done once per document: every offset indexes into its output."""

from __future__ import annotations

import re
import unicodedata

# Kana and CJK ideographs: the characters that make text Japanese (after NFKC).
CJK_CHARS = r"\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff"
CJK_CHAR = re.compile(f"[{CJK_CHARS}]")
_HORIZONTAL_SPACE = re.compile(r"[^\S\n]+")
_SPACE_BEFORE_NEWLINE = re.compile(r" +\n")
_MANY_BLANK_LINES = re.compile(r"\n{3,}")
# Zero-width and BOM characters carry no text but would break exact matching.
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"), None)


def normalize_text(text: str) -> str:
    """NFKC, unified newlines, single spaces, at most one blank line between paragraphs.

    Full-width ASCII in Japanese text becomes ASCII (NFKC), so "ＵＳ" and "US" match.
    """
    text = unicodedata.normalize("NFKC", text).translate(_INVISIBLE)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _HORIZONTAL_SPACE.sub(" ", text)
    text = _SPACE_BEFORE_NEWLINE.sub("\n", text)
    text = "\n".join(line.lstrip(" ") for line in text.split("\n"))
    text = _MANY_BLANK_LINES.sub("\n\n", text)
    return text.strip()
