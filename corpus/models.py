"""The core objects documents become: `Document`, `Span` and `Chunk`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Span:
    """A sentence: `[start, end)` into `Document.text`, with the section it sits in."""

    start: int
    end: int
    section: str | None = None


@dataclass(frozen=True)
class Document:
    doc_id: str
    text: str
    title: str
    date: str | None = None
    source: str | None = None
    url: str | None = None
    lang: str = "en"
    path: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Document:
        return cls(**data)


@dataclass(frozen=True)
class Chunk:
    """A run of whole sentences of one document; `text == document.text[char_start:char_end]`.

    `sentences` are indexes into the document's sentence list, so quotes can be chosen
    from the chunk without splitting it again.
    """

    chunk_id: str
    doc_id: str
    text: str
    char_start: int
    char_end: int
    section: str | None
    sentences: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["sentences"] = list(self.sentences)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Chunk:
        return cls(**{**data, "sentences": tuple(data["sentences"])})
