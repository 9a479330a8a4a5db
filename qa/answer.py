"""The answer's shape, shared by every door (CLI, HTTP, Slack, evaluation). See design.md."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class Quote(BaseModel):
    """An exact span of a document: `documents[doc_id].text[char_start:char_end] == text`."""

    rank: int
    text: str
    doc_id: str
    title: str
    date: str | None
    source: str | None
    url: str | None
    char_start: int
    char_end: int
    section: str | None
    passage: str = Field(description="the chunk the quote sits in, for context")
    passage_start: int = Field(description="offset of `passage` in the document text")
    score: float
    closest_match: bool = Field(
        False, description="true when the quote is below the answer threshold (status no_answer)"
    )


class Answer(BaseModel):
    question: str
    status: Literal["answered", "no_answer"]
    quotes: list[Quote]
    index_version: str
    took_ms: float


class Passage(BaseModel):
    """A retrieved chunk, without quote selection (for `search`)."""

    rank: int
    chunk_id: str
    doc_id: str
    title: str
    text: str
    char_start: int
    char_end: int
    section: str | None
    score: float


class SearchResult(BaseModel):
    """Ranked passages for a question, from one index version."""

    question: str
    passages: list[Passage]
    index_version: str
    took_ms: float
