"""Structure-following chunking: whole sentences, whole items where they fit, and a section path.

A document is read as blocks (paragraphs, headings, list items). Headings and numbered items
give each sentence a section ("(2) (ii)" for a sub-item, the heading text elsewhere). Blocks are
packed into chunks up to `max_chars`; a heading always starts a new chunk; a block too long for
one chunk is cut between sentences, never inside one. Consecutive chunks share up to
`overlap_chars` of trailing sentences for context.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from corpus.models import Chunk, Document, Span
from corpus.normalize import CJK_CHAR
from corpus.sentences import split_sentences

_MARKDOWN_HEADING = re.compile(r"^(#{1,6})\s+(.*)$")
_ITEM_MARKER = re.compile(r"^(\(?([0-9]{1,3}|[ivxlc]{1,6}|[a-z])\)|([0-9]{1,3})\.|[-*•・])\s")
_ROMAN = re.compile(r"^[ivxlc]{1,6}$")
# A CJK character costs about as many model tokens as 2.5 Latin characters.
_CJK_EXTRA_WEIGHT = 1.5


@dataclass(frozen=True)
class ChunkerSettings:
    max_chars: int = 800
    overlap_chars: int = 150

    def __post_init__(self) -> None:
        if self.max_chars < 50:
            raise ValueError("chunk size must be at least 50 characters")
        if not 0 <= self.overlap_chars < self.max_chars:
            raise ValueError("chunk overlap must be between 0 and the chunk size")


@dataclass(frozen=True)
class _Block:
    start: int
    end: int
    kind: str  # "heading", "item" or "paragraph"
    path: tuple[tuple[str, str], ...]  # ("heading", title)… then ("item", label)…


def chunk_document(
    document: Document, settings: ChunkerSettings | None = None
) -> tuple[list[Span], list[Chunk]]:
    """The document's sentences (with sections) and its chunks, which index into them."""
    settings = settings or ChunkerSettings()
    text = document.text
    sentences: list[Span] = []
    sentence_paths: list[tuple[tuple[str, str], ...]] = []
    block_sentences: list[tuple[_Block, list[int]]] = []
    for block in _blocks(text):
        indexes = []
        for span in split_sentences(text, block.start, block.end):
            indexes.append(len(sentences))
            sentences.append(Span(span.start, span.end, _section_label(block.path)))
            sentence_paths.append(block.path)
        block_sentences.append((block, indexes))
    groups = _pack(text, sentences, block_sentences, settings)
    chunks = [_make_chunk(document, sentences, sentence_paths, group) for group in groups]
    return sentences, chunks


def _blocks(text: str) -> list[_Block]:
    blocks: list[_Block] = []
    headings: list[tuple[int, str]] = []
    items: list[tuple[str, str]] = []
    previous_short = False
    raw = list(_raw_blocks(text))
    for position, (start, end) in enumerate(raw):
        line = text[start:end]
        next_line = (
            text[raw[position + 1][0] : raw[position + 1][1]] if position + 1 < len(raw) else ""
        )
        heading = _MARKDOWN_HEADING.match(line)
        marker = _ITEM_MARKER.match(line)
        short = _is_short_line(line)
        if heading or (
            short and not previous_short and next_line and not _is_short_line(next_line)
        ):
            level = len(heading.group(1)) if heading else 1
            title = (heading.group(2) if heading else line).strip()
            headings = [h for h in headings if h[0] < level] + [(level, title)]
            items = []
            kind = "heading"
        elif marker:
            items = _enter_item(items, marker)
            kind = "item"
        else:
            items = []
            kind = "paragraph"
        previous_short = short and not marker
        path = tuple(("heading", title) for _, title in headings) + tuple(
            ("item", label) for _, label in items if label
        )
        blocks.append(_Block(start, end, kind, path))
    return blocks


def _raw_blocks(text: str) -> list[tuple[int, int]]:
    """Paragraphs, with each line that starts a list item or heading a block of its own."""
    spans: list[tuple[int, int]] = []
    for paragraph in re.finditer(r"[^\n]+(?:\n[^\n]+)*", text):
        cut = paragraph.start()
        for line in re.finditer(r"\n(?=[^\n])", paragraph.group()):
            line_start = paragraph.start() + line.end()
            following = text[line_start : line_start + 12]
            if _ITEM_MARKER.match(following) or _MARKDOWN_HEADING.match(following):
                spans.append((cut, line_start - 1))
                cut = line_start
        spans.append((cut, paragraph.end()))
    return spans


def _is_short_line(line: str) -> bool:
    line = line.strip()
    return (
        bool(line)
        and "\n" not in line
        and len(line) <= 100
        and len(line.split()) <= 12
        and line[-1] not in ".!?。:;,"
        and not _ITEM_MARKER.match(line)
    )


def _enter_item(items: list[tuple[str, str]], marker: re.Match[str]) -> list[tuple[str, str]]:
    """The item path after this marker: a sibling replaces, a new kind of marker nests."""
    label = marker.group(1).strip()
    number = marker.group(2) or marker.group(3)
    kinds = [kind for kind, _ in items]
    if number is None:
        kind, label = "bullet", ""
    elif number.isdigit():
        kind = "arabic"
    elif _ROMAN.match(number) and (number == "i" or "roman" in kinds):
        kind = "roman"
    else:
        kind = "alpha"
    if kind in kinds:
        return [*items[: kinds.index(kind)], (kind, label)]
    return [*items, (kind, label)]


def _section_label(path: tuple[tuple[str, str], ...]) -> str | None:
    """Item labels where the text is in a numbered item ("(2) (ii)"), else the nearest heading."""
    items = [label for kind, label in path if kind == "item"]
    if items:
        return " ".join(items)
    return path[-1][1] if path else None


def _weight(text: str) -> float:
    return len(text) + _CJK_EXTRA_WEIGHT * len(CJK_CHAR.findall(text))


def _pack(
    text: str,
    sentences: list[Span],
    block_sentences: list[tuple[_Block, list[int]]],
    settings: ChunkerSettings,
) -> list[list[int]]:
    """Groups of consecutive sentence indexes, one per chunk."""
    groups: list[list[int]] = []
    current: list[int] = []
    carried = 0  # leading sentences of `current` repeated from the previous chunk

    def fits(indexes: list[int]) -> bool:
        span = text[sentences[indexes[0]].start : sentences[indexes[-1]].end]
        return _weight(span) <= settings.max_chars

    def flush(overlap: bool) -> None:
        nonlocal current, carried
        if len(current) > carried:  # only a chunk with something new is worth keeping
            groups.append(current)
            tail = _overlap(text, sentences, current, settings.overlap_chars) if overlap else []
        else:
            tail = current if overlap else []
        current, carried = list(tail), len(tail)

    for block, indexes in block_sentences:
        if not indexes:
            continue
        if block.kind == "heading":
            flush(overlap=False)
        if not fits(current + indexes):
            flush(overlap=True)
        if fits(current + indexes):
            current += indexes
            continue
        for index in indexes:  # the block does not fit whole: fill sentence by sentence
            if not fits([*current, index]):
                flush(overlap=True)
                while current and not fits([*current, index]):
                    current, carried = current[1:], carried - 1
            current.append(index)
    flush(overlap=False)
    return groups


def _overlap(text: str, sentences: list[Span], group: list[int], budget: int) -> list[int]:
    """The trailing sentences of `group` that fit in `budget` characters."""
    tail: list[int] = []
    for index in reversed(group):
        if _weight(text[sentences[index].start : sentences[group[-1]].end]) > budget:
            break
        tail.insert(0, index)
    return tail if len(tail) < len(group) else []


def _make_chunk(
    document: Document,
    sentences: list[Span],
    sentence_paths: list[tuple[tuple[str, str], ...]],
    group: list[int],
) -> Chunk:
    start, end = sentences[group[0]].start, sentences[group[-1]].end
    common = sentence_paths[group[0]]
    for index in group[1:]:
        path = sentence_paths[index]
        length = 0
        while length < min(len(common), len(path)) and common[length] == path[length]:
            length += 1
        common = common[:length]
    text = document.text[start:end]
    digest = hashlib.sha1(f"{document.doc_id}\x00{start}\x00{end}\x00{text}".encode()).hexdigest()
    return Chunk(
        chunk_id=f"{document.doc_id}#{digest[:12]}",
        doc_id=document.doc_id,
        text=text,
        char_start=start,
        char_end=end,
        section=_section_label(common),
        sentences=tuple(group),
    )
