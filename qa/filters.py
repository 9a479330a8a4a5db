"""Restricting a question to some documents: by id, source, language or date range."""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field

from corpus.models import Document
from embeddings.store import DocCondition


class Filters(BaseModel):
    """All given conditions must hold. Dates compare as ISO strings, so "2014" matches a year."""

    model_config = ConfigDict(extra="forbid")

    doc_ids: list[str] | None = Field(None, description="only these documents")
    source: str | None = Field(None, description="exact source, e.g. a ministry")
    lang: str | None = Field(None, description='document language, e.g. "en" or "ja"')
    date_from: str | None = Field(None, description="ISO date, inclusive")
    date_to: str | None = Field(None, description="ISO date, inclusive")

    def is_empty(self) -> bool:
        return all(value is None for value in self.model_dump().values())

    def condition(self) -> DocCondition:
        """The same filter on the document fields a vector store keeps (Milvus)."""
        return DocCondition(
            doc_ids=tuple(self.doc_ids) if self.doc_ids is not None else None,
            source=self.source,
            lang=self.lang,
            date_from=self.date_from,
            date_to=self.date_to,
        )

    def select(self, documents: Iterable[Document]) -> set[str]:
        return {d.doc_id for d in documents if self._matches(d)}

    def _matches(self, document: Document) -> bool:
        if self.doc_ids is not None and document.doc_id not in self.doc_ids:
            return False
        if self.source is not None and document.source != self.source:
            return False
        if self.lang is not None and document.lang != self.lang:
            return False
        if self.date_from is not None or self.date_to is not None:
            if document.date is None:
                return False
            if self.date_from is not None and document.date[: len(self.date_from)] < self.date_from:
                return False
            if self.date_to is not None and document.date[: len(self.date_to)] > self.date_to:
                return False
        return True
