"""Metadata from what a document carries: "The World and Japan" fields, YAML front matter,
a sidecar `NAME.meta.json`, and what can be derived from the text (title, language)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import yaml

from corpus.normalize import CJK_CHAR

_WORLD_AND_JAPAN_HEADER = '"The World and Japan" Database'
_HEADER_LINES = 3
_FIELD = re.compile(r"^\[(Title|Place|Date|Source|Notes|Full text)\]\s*(.*)$")
_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?\n)---[ \t]*(?:\n|\Z)", re.S)
_DATE_FORMATS = (
    "%Y-%m-%d",
    "%Y/%m/%d",
    "%B %d, %Y",
    "%b %d, %Y",
    "%d %B %Y",
    "%b. %d, %Y",
    "%Y年%m月%d日",
    "%B %Y",
    "%Y",
)
_SHORT_LINE_WORDS = 8


def split_world_and_japan(text: str) -> tuple[str, dict[str, Any]] | None:
    """The body and fields of a "The World and Japan" database page; None for other text.

    The three database header lines are dropped; `[Field] value` lines (values may continue on
    the next lines) become metadata; the body is what follows `[Full text]`.
    """
    if not text.lstrip().startswith(_WORLD_AND_JAPAN_HEADER):
        return None
    lines = text.lstrip().split("\n")[_HEADER_LINES:]
    fields: dict[str, str] = {}
    current: str | None = None
    for index, line in enumerate(lines):
        match = _FIELD.match(line.strip())
        if match and match.group(1) == "Full text":
            body = "\n".join([match.group(2), *lines[index + 1 :]])
            return body, _world_and_japan_metadata(fields)
        if match:
            current = match.group(1).lower()
            fields[current] = match.group(2).strip()
        elif current and line.strip():
            fields[current] = f"{fields[current]} {line.strip()}".strip()
    return "\n".join(lines), _world_and_japan_metadata(fields)


def _world_and_japan_metadata(fields: dict[str, str]) -> dict[str, Any]:
    metadata: dict[str, Any] = {"collection": "The World and Japan"}
    metadata.update({key: value for key, value in fields.items() if value})
    return metadata


def split_front_matter(text: str) -> tuple[str, dict[str, Any]]:
    """Text without its leading `---` YAML block, and the block's mapping."""
    match = _FRONT_MATTER.match(text)
    if not match:
        return text, {}
    try:
        data = yaml.safe_load(match.group(1))
    except yaml.YAMLError:
        return text, {}  # not front matter after all: keep it as text
    if not isinstance(data, dict):
        return text, {}
    return text[match.end() :], {str(key): value for key, value in data.items()}


def iso_date(value: Any) -> str | None:
    """An ISO 8601 date for what documents write as dates, or None when it can't be read."""
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if re.match(r"^\d{4}-\d{2}-\d{2}T", text):
        text = text[:10]
    for fmt in _DATE_FORMATS:
        try:
            parsed = dt.datetime.strptime(text, fmt).date()
        except ValueError:
            continue
        if fmt == "%B %Y":
            return parsed.strftime("%Y-%m")
        if fmt == "%Y":
            return parsed.strftime("%Y")
        return parsed.isoformat()
    return None


def detect_language(text: str) -> str:
    """ "ja" when Japanese script is a real share of the letters, else "en"."""
    sample = text[:5000]
    letters = sum(ch.isalpha() for ch in sample) or 1
    return "ja" if len(CJK_CHAR.findall(sample)) / letters > 0.2 else "en"


def derive_title(body: str) -> str | None:
    """A title for a document that names none.

    A single short line before the first paragraph is a title. Several short lines in a row
    ("Minister for Foreign Affairs Kishida", "Secretary of State Kerry", …) are the signatories
    of a statement, so the title names the statement by them. Otherwise the first sentence,
    shortened at a word.
    """
    lines = [line.strip() for line in body.split("\n") if line.strip()]
    short: list[str] = []
    for line in lines:
        if _is_short_line(line):
            short.append(line.lstrip("# ").strip())
        else:
            break
    if len(short) == 1:
        return short[0]
    if len(short) > 1:
        names = [line.split()[-1] for line in short]
        joined = ", ".join(names[:-1]) + " and " + names[-1]
        kind = "Joint statement" if len(names) > 1 else "Statement"
        return f"{kind} by {joined}"
    if not lines:
        return None
    first = re.split(r"(?<=[.!?。])\s", lines[0], maxsplit=1)[0]
    return first if len(first) <= 80 else first[:80].rsplit(" ", 1)[0] + "…"


def _is_short_line(line: str) -> bool:
    return (
        len(line.split()) <= _SHORT_LINE_WORDS and len(line) <= 100 and line[-1] not in ".!?。:;,"
    )
