"""Request and response bodies of the HTTP API (the answer itself is `qa.answer.Answer`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field, field_validator

from qa.filters import Filters
from qa.retriever import Mode
from qa.settings import COLLECTION_NAME, DEFAULT_COLLECTION

QUESTION_LIMIT = 2000
# Any character outside Python's white space (`str.isspace`), which the validator strips.
_NOT_BLANK = (
    r"[^\t\n\u000b\u000c\r\u001c-\u001f \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029"
    r"\u202f\u205f\u3000]"
)
TOP_K_LIMIT = 20


class AskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # The pattern tells API clients (and schema-driven fuzzers) what the validator enforces:
    # at least one character that is not white space, spelled out because regex dialects
    # disagree on what `\s` covers.
    question: str = Field(
        min_length=1, max_length=QUESTION_LIMIT, json_schema_extra={"pattern": _NOT_BLANK}
    )
    top_k: int | None = Field(None, ge=1, le=TOP_K_LIMIT, description="quotes wanted (default 3)")
    filters: Filters | None = None
    mode: Mode | None = Field(None, description="dense, bm25 or hybrid (default: the server's)")
    explain: bool = Field(False, description="add each result's retrieval scores and terms")
    collection: str = Field(
        DEFAULT_COLLECTION,
        pattern=COLLECTION_NAME,
        description="which collection to answer from (one the API key may read)",
    )
    conversation_id: str | None = Field(
        None,
        max_length=64,
        description="continue this conversation (from an earlier answer); without it, /v1/ask"
        " starts a new one",
    )

    @field_validator("question")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the question is empty")
        return value


# `?collection=NAME` on the routes that read one collection
CollectionQuery = Annotated[str, Query(pattern=COLLECTION_NAME, description="which collection")]


class CollectionBody(BaseModel):
    name: str
    documents: int
    model: str = Field(description="the encoder its index was built with")
    model_reason: str = Field(description="why: configured, or chosen for its languages")
    index_version: str


class TurnBody(BaseModel):
    question: str
    query: str = Field(description="what retrieval read for it")
    quoted: list[str] = Field(description="doc ids of the quotes its answer showed")


class ConversationBody(BaseModel):
    conversation_id: str
    turns: list[TurnBody]
    updated: float = Field(description="Unix time of its last question")


class DocumentSummary(BaseModel):
    doc_id: str
    title: str
    date: str | None
    source: str | None
    url: str | None
    lang: str
    chars: int
    metadata: dict[str, Any]


class Examples(BaseModel):
    questions: list[str] = Field(
        description="what the chat page offers to ask first (VERBATIM_EXAMPLE_QUESTIONS)"
    )


class DocumentFull(DocumentSummary):
    text: str = Field(description="the text every quote's char_start/char_end index into")


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail
