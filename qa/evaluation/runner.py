"""Running a question set through the core and scoring what comes back.

A run is one configuration of the system (a name and settings overrides). Each question is
asked twice over the same index: `search` for the ranked passages (document and passage
metrics) and `ask` for the quotes a user would see (quote metrics, abstention, latency).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from qa.answer import Answer, Passage
from qa.conversation import Conversation
from qa.engine import Verbatim
from qa.evaluation.questions import Question
from qa.index import Index

SEARCH_DEPTH = 300  # passages retrieved per question: enough for 100 distinct documents
DOC_DEPTH = 100


@dataclass(frozen=True)
class RunConfig:
    name: str
    overrides: dict[str, Any] = field(default_factory=dict)
    mode: str | None = None  # None: the configured mode (VERBATIM_MODE)


@dataclass
class QueryResult:
    question: Question
    documents: list[tuple[str, float]]  # best first, one entry per document
    passages: list[Passage]
    answer: Answer | None
    latency_ms: float
    passage_hit_rank: int | None  # 1-based rank of the first passage holding a gold answer
    quote_hit_rank: int | None  # 1-based rank of the first quote holding a gold answer
    # Whether the best quote holds a gold answer, shown or not (below the threshold it is the
    # closest match): how well quotes are ranked, apart from abstention
    top_quote_hit: bool = False

    @property
    def abstained(self) -> bool:
        return self.answer is not None and self.answer.status == "no_answer"


def run_questions(
    engine: Verbatim,
    questions: list[Question],
    with_quotes: bool,
    progress: Callable[[], None] | None = None,
) -> list[QueryResult]:
    index = engine.index
    results = []
    for question in questions:
        # Latency is what a user waits for: `ask` where quotes are shown, else a top-10 search;
        # timed first, before the deeper search for the metrics warms the cross-lingual
        # reader's memo with this question's passages.
        conversation = _conversation(engine, question.context) if question.context else None
        started = time.perf_counter()
        answer = engine.ask(question.question, conversation=conversation) if with_quotes else None
        if answer is None:
            engine.search(question.question, 10)
        latency = (time.perf_counter() - started) * 1000
        passages = engine.search(question.question, SEARCH_DEPTH).passages
        shown = (
            [(q.doc_id, q.char_start, q.char_end) for q in answer.quotes if not q.closest_match]
            if answer
            else []
        )
        results.append(
            QueryResult(
                question=question,
                documents=_document_ranking(passages),
                passages=passages,
                answer=answer,
                latency_ms=latency,
                passage_hit_rank=_first_hit(
                    index, question, [(p.doc_id, p.char_start, p.char_end) for p in passages]
                ),
                quote_hit_rank=_first_hit(index, question, shown),
                top_quote_hit=_first_hit(
                    index,
                    question,
                    [(q.doc_id, q.char_start, q.char_end) for q in answer.quotes[:1]]
                    if answer
                    else [],
                )
                == 1,
            )
        )
        if progress is not None:
            progress()
    return results


def _conversation(engine: Verbatim, earlier: list[str]) -> Conversation:
    """A conversation holding `earlier`'s questions as asked turns (answered by `engine`)."""
    conversation = engine.new_conversation()
    for question in earlier:
        engine.ask(question, conversation=conversation)
    return conversation


def _document_ranking(passages: list[Passage]) -> list[tuple[str, float]]:
    """Documents in the order of their best passage."""
    seen: dict[str, float] = {}
    for passage in passages:
        seen.setdefault(passage.doc_id, passage.score)
        if len(seen) == DOC_DEPTH:
            break
    return list(seen.items())


def _first_hit(index: Index, question: Question, spans: list[tuple[str, int, int]]) -> int | None:
    """Rank of the first span whose text holds a gold answer string or overlaps a gold span.

    Decided on the text itself, so a question set stays valid when chunking changes.
    """
    if question.unanswerable or not (question.answers or question.spans):
        return None
    for rank, (doc_id, start, end) in enumerate(spans, 1):
        text = index.entries[doc_id].document.text[start:end]
        if any(answer in text for answer in question.answers):
            return rank
        if any(s.doc_id == doc_id and s.start < end and start < s.end for s in question.spans):
            return rank
    return None
