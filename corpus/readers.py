"""File readers, chosen by extension. Each returns raw text plus whatever metadata the format holds.

Readers raise `DocumentError` with a message a person can act on; they never let a parser's
exception escape, so one bad file cannot stop a whole index run.
"""

from __future__ import annotations

import io
import logging
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corpus.errors import DocumentError

_CONTROL_BYTES = bytes(range(0, 9)) + bytes(range(14, 32))
# What a .docx may unpack to. Real documents, images included, stay far below; a zip bomb
# (a few kB that inflate to gigabytes) is refused before anything is inflated.
MAX_UNPACKED_BYTES = 256 * 1024 * 1024


@dataclass
class RawText:
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


def read_file(path: Path, data: bytes) -> RawText:
    """Read `data` (the bytes of `path`) with the reader its extension names."""
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise DocumentError(path, f"unsupported file type {path.suffix!r}")
    try:
        return reader(path, data)
    except (DocumentError, MemoryError):  # MemoryError: the sandbox reports the limit
        raise
    except Exception as exc:  # a parser's own failure: report it against the file
        raise DocumentError(path, f"could not parse {path.suffix} file: {exc}") from exc


def decode_text(path: Path, data: bytes) -> str:
    """UTF-8 (with or without BOM), UTF-16 with BOM, or Shift-JIS for Japanese text."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    if b"\x00" in data[:8192] or _looks_binary(data[:8192]):
        raise DocumentError(
            path, "looks like a binary file, not text; remove it or fix its extension"
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        text = data.decode("cp932")
    except UnicodeDecodeError:
        text = ""
    if any("\u3040" <= ch <= "\u9fff" for ch in text):
        return text
    raise DocumentError(path, "not valid UTF-8 text; re-save the file as UTF-8")


def _looks_binary(head: bytes) -> bool:
    return bool(head) and sum(head.count(b) for b in _CONTROL_BYTES) / len(head) > 0.05


def _read_text(path: Path, data: bytes) -> RawText:
    return RawText(decode_text(path, data))


_BLOCK_TAGS = (
    "p",
    "div",
    "section",
    "article",
    "main",
    "blockquote",
    "pre",
    "table",
    "tr",
    "ul",
    "ol",
    "dl",
    "dt",
    "dd",
    "figure",
    "figcaption",
    "address",
    "br",
    "hr",
)
_DROP_TAGS = ("script", "style", "noscript", "template", "nav", "header", "footer", "aside", "form")


def _read_html(path: Path, data: bytes) -> RawText:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(data, "html.parser")
    metadata: dict[str, Any] = {}
    if soup.title and soup.title.string:
        metadata["title"] = soup.title.string.strip()
    for meta in soup.find_all("meta"):
        name = str(meta.get("name") or meta.get("property") or "").lower()
        content = str(meta.get("content") or "").strip()
        if content and name in ("date", "article:published_time", "dc.date"):
            metadata["date"] = content
        elif content and name in ("author", "description", "og:url"):
            metadata["url" if name == "og:url" else name] = content
    for tag in soup.find_all(_DROP_TAGS):
        tag.decompose()
    # Mark structure in the text itself so the chunker sees headings and items.
    for level in range(1, 7):
        for heading in soup.find_all(f"h{level}"):
            heading.insert_before("\n\n" + "#" * level + " ")
            heading.insert_after("\n\n")
    for item in soup.find_all("li"):
        item.insert_before("\n- ")
        item.insert_after("\n")
    for block in soup.find_all(_BLOCK_TAGS):
        block.insert_before("\n\n")
        block.insert_after("\n\n")
    body = soup.body or soup
    return RawText(body.get_text(""), metadata)


def _read_pdf(path: Path, data: bytes) -> RawText:
    from pypdf import PdfReader

    # pypdf logs what it repairs or cannot read; a file it cannot read is reported once, as
    # the skipped document, not again as its log lines
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    reader = PdfReader(io.BytesIO(data))
    pages = [page.extract_text() or "" for page in reader.pages]
    metadata: dict[str, Any] = {"pages": len(pages)}
    info = reader.metadata
    if info is not None and info.title:
        metadata["title"] = str(info.title)
    if info is not None and info.author:
        metadata["author"] = str(info.author)
    text = "\n\n".join(pages)
    if not text.strip():
        raise DocumentError(path, "the PDF has no extractable text (scanned images need OCR first)")
    return RawText(text, metadata)


def _read_docx(path: Path, data: bytes) -> RawText:
    import docx

    _check_unpacked_size(path, data)
    document = docx.Document(io.BytesIO(data))
    lines: list[str] = []
    for paragraph in document.paragraphs:
        style = (paragraph.style.name if paragraph.style is not None else "") or ""
        text = paragraph.text.strip()
        if not text:
            continue
        if style.startswith("Heading") and style[-1:].isdigit():
            text = "#" * int(style[-1]) + " " + text
        elif style.startswith("List"):
            text = "- " + text
        lines.append(text)
    for table in document.tables:
        for row in table.rows:
            lines.append(" | ".join(cell.text.strip() for cell in row.cells))
    props = document.core_properties
    metadata: dict[str, Any] = {}
    if props.title:
        metadata["title"] = props.title
    if props.author:
        metadata["author"] = props.author
    if props.created:
        metadata["date"] = props.created.date().isoformat()
    return RawText("\n\n".join(lines), metadata)


def _check_unpacked_size(path: Path, data: bytes) -> None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except zipfile.BadZipFile as exc:
        raise DocumentError(path, f"not a valid .docx (zip) file: {exc}") from exc
    if unpacked > MAX_UNPACKED_BYTES:
        raise DocumentError(
            path,
            f"unpacks to {unpacked:,} bytes from {len(data):,} (over {MAX_UNPACKED_BYTES:,}): "
            "refused as a likely zip bomb",
        )


READERS: dict[str, Callable[[Path, bytes], RawText]] = {
    ".txt": _read_text,
    ".text": _read_text,
    ".md": _read_text,
    ".markdown": _read_text,
    ".html": _read_html,
    ".htm": _read_html,
    ".pdf": _read_pdf,
    ".docx": _read_docx,
}
