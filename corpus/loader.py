"""Finding documents under the paths a user gives and turning each file into a `Document`.

`discover` is cheap (it hashes bytes, parses nothing), so an index build can skip unchanged
files before reading them; `read_document` does the parsing.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from corpus.errors import DocumentError
from corpus.metadata import (
    derive_title,
    detect_language,
    iso_date,
    split_front_matter,
    split_world_and_japan,
)
from corpus.models import Document
from corpus.normalize import normalize_text
from corpus.readers import READERS, read_file

_UNSAFE_ID_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
_KNOWN_FIELDS = ("title", "date", "source", "url", "lang")
DEFAULT_MAX_FILE_BYTES = 50 * 1024 * 1024


@dataclass(frozen=True)
class SourceFile:
    """A file to index: where it is, the id its document gets, and the hash of its bytes."""

    path: Path
    doc_id: str
    content_hash: str
    sidecar: Path | None = None


@dataclass
class LoadResult:
    documents: list[Document] = field(default_factory=list)
    errors: list[DocumentError] = field(default_factory=list)


def default_corpus_dir() -> Path:
    """The seed documents shipped inside the package."""
    return Path(str(resources.files("corpus") / "default"))


def discover(
    paths: Iterable[Path], max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
) -> tuple[list[SourceFile], list[DocumentError]]:
    """Every readable file under `paths` (files or folders), with stable document ids.

    A document's id is its path relative to the folder given, without the extension
    (`seeds/000_x.txt` → `000_x`), so it survives re-runs and moves of the whole folder.
    Symlinks that lead outside the folder are refused: nothing outside the corpus is read.
    """
    found: list[tuple[Path, str]] = []
    errors: list[DocumentError] = []
    for root in paths:
        root = Path(root)
        if not root.exists():
            errors.append(DocumentError(root, "no such file or folder"))
        elif root.is_file():
            found.append((root, root.stem))
        else:
            real_root = root.resolve()
            for path in sorted(root.rglob("*")):
                if path.suffix.lower() not in READERS or not path.is_file():
                    continue
                if not path.resolve().is_relative_to(real_root):
                    errors.append(
                        DocumentError(path, "symlink points outside the corpus folder; skipped")
                    )
                    continue
                found.append((path, path.relative_to(root).with_suffix("").as_posix()))
    sources: list[SourceFile] = []
    for path, doc_id in _unique_ids(found):
        try:
            sources.append(_source_file(path, doc_id, max_file_bytes))
        except DocumentError as error:
            errors.append(error)
    return sources, errors


def safe_doc_id(raw: str) -> str:
    """The document id for a relative path (without extension) or an external id."""
    return _UNSAFE_ID_CHARS.sub("_", raw.replace("/", "__"))


def _unique_ids(found: list[tuple[Path, str]]) -> list[tuple[Path, str]]:
    """Safe ids; where two files would share one (`a.txt`, `a.md`), extensions tell them apart."""
    safe = [(path, safe_doc_id(raw)) for path, raw in found]
    counts: dict[str, int] = {}
    for _, doc_id in safe:
        counts[doc_id] = counts.get(doc_id, 0) + 1
    unique: list[tuple[Path, str]] = []
    seen_ids: set[str] = set()
    seen_files: set[Path] = set()
    for path, doc_id in safe:
        real = path.resolve()
        if real in seen_files:  # the same file named twice
            continue
        if counts[doc_id] > 1:
            doc_id = f"{doc_id}_{path.suffix.lstrip('.').lower()}"
        if doc_id in seen_ids:  # same relative name under two roots
            doc_id = f"{doc_id}_{hashlib.sha1(str(real).encode()).hexdigest()[:8]}"
        seen_ids.add(doc_id)
        seen_files.add(real)
        unique.append((path, doc_id))
    return unique


def _source_file(path: Path, doc_id: str, max_file_bytes: int) -> SourceFile:
    try:
        size = path.stat().st_size
        if size > max_file_bytes:
            raise DocumentError(
                path, f"file is {size:,} bytes, over the {max_file_bytes:,}-byte limit"
            )
        digest = hashlib.sha256(path.read_bytes())
    except OSError as exc:
        raise DocumentError(path, f"cannot read: {exc.strerror or exc}") from exc
    sidecar = _sidecar_for(path)
    if sidecar is not None:
        digest.update(sidecar.read_bytes())
    return SourceFile(path, doc_id, digest.hexdigest(), sidecar)


def _sidecar_for(path: Path) -> Path | None:
    for candidate in (path.with_suffix(".meta.json"), path.with_name(path.name + ".meta.json")):
        if candidate.is_file():
            return candidate
    return None


def read_document(source: SourceFile) -> Document:
    """Parse one file into a `Document` with normalised text and metadata; raises DocumentError."""
    try:
        data = source.path.read_bytes()
    except OSError as exc:
        raise DocumentError(source.path, f"cannot read: {exc.strerror or exc}") from exc
    raw = read_file(source.path, data)
    text, metadata = split_front_matter(raw.text)
    world_and_japan = split_world_and_japan(text)
    if world_and_japan is not None:
        text, fields = world_and_japan
        metadata = {**fields, **metadata}
    metadata = {**raw.metadata, **metadata, **_read_sidecar(source)}
    body = normalize_text(text)
    if not body:
        raise DocumentError(source.path, "the document has no text")
    title = str(metadata.pop("title", "") or "").strip() or derive_title(body) or source.path.stem
    date_value = metadata.pop("date", None)
    date = iso_date(date_value)
    if date is None and date_value:
        metadata["date_text"] = str(date_value)
    return Document(
        doc_id=source.doc_id,
        text=body,
        title=normalize_text(title),
        date=date,
        source=_optional_str(metadata.pop("source", None)),
        url=_optional_str(metadata.pop("url", None)),
        lang=_optional_str(metadata.pop("lang", None)) or detect_language(body),
        path=str(source.path),
        metadata={key: _json_safe(value) for key, value in metadata.items()},
    )


def _read_sidecar(source: SourceFile) -> dict[str, Any]:
    if source.sidecar is None:
        return {}
    try:
        data = json.loads(source.sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DocumentError(source.sidecar, f"metadata file is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise DocumentError(source.sidecar, "metadata file must hold a JSON object")
    return data


def _optional_str(value: Any) -> str | None:
    return str(value).strip() or None if value is not None else None


def _json_safe(value: Any) -> Any:
    try:
        json.dumps(value)
    except TypeError:
        return str(value)
    return value


def load_documents(paths: Iterable[Path]) -> LoadResult:
    """Read every document under `paths`; unreadable files are collected as errors, not raised."""
    result = LoadResult()
    sources, result.errors = discover(paths)
    for source in sources:
        try:
            result.documents.append(read_document(source))
        except DocumentError as error:
            result.errors.append(error)
    return result
