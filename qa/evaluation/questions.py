"""Question sets: our JSONL/YAML format, with clear errors for malformed entries.

One question per JSONL line (or a YAML list):

    {"id": "s01", "question": "...", "answers": ["about 100,000"], "doc_ids": ["001_x"],
     "spans": [{"doc_id": "001_x", "start": 1763, "end": 2019}],
     "unanswerable": false, "category": "number", "lang": "en"}

Gold answers, documents and spans are all optional, but an answerable question needs at least
one of them. Hits are decided on the text retrieved, never on chunk ids, so a set survives
re-chunking.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class QuestionSetError(ValueError):
    """A malformed question set; the message names the line and what is wrong."""


class GoldSpan(BaseModel):
    model_config = ConfigDict(extra="forbid")

    doc_id: str
    start: int = Field(ge=0)
    end: int = Field(gt=0)


class Question(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    question: str = Field(min_length=1)
    answers: list[str] = Field(default_factory=list)
    doc_ids: list[str] = Field(default_factory=list)
    spans: list[GoldSpan] = Field(default_factory=list)
    unanswerable: bool = False
    category: str = "uncategorised"
    lang: str = "en"
    known_failure: str | None = None  # why the current system misses it, kept honest by tests
    # A follow-up: the questions asked before it in its conversation, in order
    context: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _has_gold(self) -> Question:
        if not self.unanswerable and not (self.answers or self.doc_ids or self.spans):
            raise ValueError("an answerable question needs answers, doc_ids or spans")
        if self.unanswerable and (self.answers or self.doc_ids or self.spans):
            raise ValueError("an unanswerable question cannot have gold answers")
        return self

    @property
    def gold_doc_ids(self) -> set[str]:
        return set(self.doc_ids) | {span.doc_id for span in self.spans}


def load_questions(path: Path) -> list[Question]:
    """Read a `.jsonl`, `.json` or `.yaml`/`.yml` question set."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise QuestionSetError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if path.suffix.lower() in (".yaml", ".yml", ".json"):
        try:
            data = yaml.safe_load(text)  # YAML is a superset of JSON
        except yaml.YAMLError as exc:
            raise QuestionSetError(f"{path}: not valid YAML/JSON: {exc}") from exc
        if not isinstance(data, list):
            raise QuestionSetError(f"{path}: expected a list of questions")
        entries = [(n, item) for n, item in enumerate(data, 1)]
        where = "entry"
    else:
        entries = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                entries.append((number, json.loads(line)))
            except json.JSONDecodeError as exc:
                raise QuestionSetError(f"{path}: line {number}: not valid JSON: {exc.msg}") from exc
        where = "line"
    questions = [_question(path, where, number, item) for number, item in entries]
    seen: set[str] = set()
    for (number, _), question in zip(entries, questions, strict=True):
        if question.id in seen:
            raise QuestionSetError(f"{path}: {where} {number}: duplicate id {question.id!r}")
        seen.add(question.id)
    if not questions:
        raise QuestionSetError(f"{path}: no questions")
    return questions


def _question(path: Path, where: str, number: int, item: Any) -> Question:
    if not isinstance(item, dict):
        raise QuestionSetError(f"{path}: {where} {number}: expected an object")
    item.setdefault("id", f"{where}-{number}")
    try:
        return Question.model_validate(item)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(p) for p in error["loc"]) or "question"
        message = str(error["msg"]).removeprefix("Value error, ")
        raise QuestionSetError(f"{path}: {where} {number}: {field}: {message}") from None
