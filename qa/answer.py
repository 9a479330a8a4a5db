"""The answer's shape, shared by every door (CLI, HTTP, Slack, evaluation): docs/design.md."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class Explanation(BaseModel):
    """Why a passage ranked where it did (`explain`): each retriever's view of it."""

    mode: str = Field(description="retrieval mode: dense, bm25 or hybrid")
    dense_rank: int | None = Field(description="rank in the dense list; null when not in it")
    dense_score: float = Field(description="cosine of question and passage")
    bm25_rank: int | None = Field(description="rank in the BM25 list; null when not in it")
    bm25_score: float
    fused_score: float | None = Field(description="hybrid fusion score (hybrid mode)")
    rerank_score: float | None = Field(description="second-stage score, when a reranker ran")
    matched_terms: list[str] = Field(
        description="the question's words (as typed) whose keywords the passage holds"
    )


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
    explain: Explanation | None = None


class Context(BaseModel):
    """The earlier turn of a conversation a follow-up was read with."""

    turn: int = Field(description="which earlier turn (1 = the conversation's first question)")
    question: str = Field(description="that turn's question")
    query: str = Field(description="what retrieval read: this question with that turn's words")


class Answer(BaseModel):
    question: str
    status: Literal["answered", "no_answer"]
    quotes: list[Quote]
    threshold: float = Field(
        description="the confidence (a quote's `score`) the best quote had to reach to answer"
    )
    index_version: str
    took_ms: float
    conversation_id: str | None = Field(
        None, description="the conversation this answer is a turn of; pass it to follow up"
    )
    context: Context | None = Field(
        None, description="the earlier turn this question was read with, when it followed up"
    )


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
    explain: Explanation | None = None


class SearchResult(BaseModel):
    """Ranked passages for a question, from one index version."""

    question: str
    passages: list[Passage]
    index_version: str
    took_ms: float
