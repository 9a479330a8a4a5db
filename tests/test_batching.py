"""Micro-batching: questions that arrive together are read in one encoder call and answered in
one thread; each caller gets the answer to its own question, and an error fails only the
callers it belongs to."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from qa.batching import QuestionBatcher, ReadQuestions
from qa.engine import Verbatim
from qa.retriever import Query

QUESTIONS = [
    "How many U.S. military personnel are forward deployed in the region?",
    "When was the Japan-U.S. Joint Declaration on Security issued?",
    "Which guidelines did the leaders agree to review?",
    "What did the two governments say about weapons of mass destruction?",
] * 4


class HeldReads:
    """Wraps a batcher's `read`: each of the first `hold` calls records its size, signals
    `entered` and waits for `released`, so the questions sent meanwhile queue up behind it."""

    def __init__(self, read: ReadQuestions, hold: int = 1_000_000) -> None:
        self.read, self.hold = read, hold
        self.sizes: list[int] = []
        self.entered = threading.Semaphore(0)
        self.released = threading.Event()

    def __call__(self, texts: Sequence[str]) -> Sequence[Query]:
        self.sizes.append(len(texts))
        if len(self.sizes) <= self.hold:
            self.entered.release()
            assert self.released.wait(30)
        return self.read(texts)

    def wait_entered(self) -> None:
        assert self.entered.acquire(timeout=30)


class _CountedQueue(queue.SimpleQueue[Any]):
    """A batcher's queue that counts arrivals, so a test can wait for them."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals = threading.Semaphore(0)

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        super().put(item, block, timeout)
        self.arrivals.release()

    def wait_for(self, count: int) -> None:
        for _ in range(count):
            assert self.arrivals.acquire(timeout=30)


def hold_reads(batcher: QuestionBatcher, hold: int = 1_000_000) -> tuple[HeldReads, _CountedQueue]:
    held = HeldReads(batcher._read, hold)
    # a running reading thread keeps taking from the queue it has: replace it only before one runs
    if not isinstance(batcher._waiting, _CountedQueue):
        batcher._waiting = _CountedQueue()
    batcher._read = held
    return held, batcher._waiting


def test_questions_arriving_together_are_read_once_and_each_gets_its_own_answer(
    make_engine: Callable[..., Verbatim],
) -> None:
    engine = make_engine()
    engine.build_index()
    expected = {q: engine.ask(q) for q in set(QUESTIONS)}  # each asked alone
    held, waiting = hold_reads(engine.batcher)
    with ThreadPoolExecutor(len(QUESTIONS)) as pool:
        first = pool.submit(engine.ask, QUESTIONS[0])
        held.wait_entered()  # alone: read in its own thread, held there
        second = pool.submit(engine.ask, QUESTIONS[1])
        held.wait_entered()  # it had company: the reading thread reads it, held there
        rest = [pool.submit(engine.ask, q) for q in QUESTIONS[2:]]
        waiting.wait_for(len(QUESTIONS) - 1)  # the second and the 14 behind it
        held.released.set()
        answers = [future.result(30) for future in (first, second, *rest)]

    assert held.sizes == [1, 1, len(QUESTIONS) - 2]  # 14 questions in one encoder call
    assert (engine.batcher.batches, engine.batcher.batched) == (2, len(QUESTIONS) - 1)
    for question, answer in zip(QUESTIONS, answers, strict=True):
        alone = expected[question]
        assert answer.question == question  # nobody gets another caller's answer
        assert [(q.doc_id, q.char_start, q.char_end) for q in answer.quotes] == [
            (q.doc_id, q.char_start, q.char_end) for q in alone.quotes
        ]
        assert answer.status == alone.status


def _query(text: str) -> Query:
    return Query(text=text, vector=np.zeros(2, dtype=np.float32), tokens=text.split())


def _read(texts: Sequence[str]) -> list[Query]:
    if "boom" in texts:
        raise RuntimeError("encoder out of memory")
    return [Query(text=t, vector=np.zeros(2, dtype=np.float32), tokens=t.split()) for t in texts]


def _answer(query: Query) -> str:
    if query.text == "bad":
        raise ValueError("no such filter")
    return query.text.upper()


def _one_batch(
    batcher: QuestionBatcher, texts: list[str]
) -> tuple[list[str | BaseException], list[int]]:
    """`texts` answered in one batch, queued behind a lone question and a first batch; the
    answers, and the sizes of the reads after those two."""
    held, waiting = hold_reads(batcher)
    with ThreadPoolExecutor(len(texts) + 2) as pool:
        first = pool.submit(batcher.run, "first", _answer)
        held.wait_entered()
        second = pool.submit(batcher.run, "second", _answer)
        held.wait_entered()
        futures = [pool.submit(batcher.run, t, _answer) for t in texts]
        waiting.wait_for(len(texts) + 1)
        held.released.set()
        assert (first.result(30), second.result(30)) == ("FIRST", "SECOND")
        results = [f.exception(30) or f.result(30) for f in futures]
    assert held.sizes[:3] == [1, 1, len(texts)]
    return results, held.sizes[3:]


def test_errors_fail_only_their_own_callers_and_the_batcher_keeps_serving() -> None:
    batcher = QuestionBatcher(_read, max_batch=8, max_wait_ms=0)
    # One question breaks its batch's reading: each is read again alone, and only it fails.
    (fine, failed), rereads = _one_batch(batcher, ["a", "boom"])
    assert fine == "A" and rereads == [1, 1]
    assert isinstance(failed, RuntimeError) and "out of memory" in str(failed)
    results, rereads = _one_batch(batcher, ["c", "bad", "d"])  # an answer's error: its caller's
    assert results[0] == "C" and results[2] == "D" and rereads == []
    assert isinstance(results[1], ValueError)
    # each round's second question and its batch, less the question that could not be read
    assert batcher.batched == (1 + 1) + (1 + 3)
    assert batcher.batches == 2 + 2


def test_only_overlapping_questions_go_through_the_batcher(
    make_engine: Callable[..., Verbatim],
) -> None:
    engine = make_engine()
    engine.build_index()
    held, _ = hold_reads(engine.batcher, hold=1)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(engine.ask, "first question about the alliance")
        held.wait_entered()  # reading alone, directly: nobody else was in flight
        second = pool.submit(engine.ask, "How many personnel are deployed?")
        assert "100,000" in second.result(30).quotes[0].text  # answered by the batch threads
        assert engine.batcher.batched == 1
        held.released.set()
        first.result(30)
    engine.ask("A lone question afterwards")
    assert engine.batcher.batched == 1  # lone questions never take the thread hop


def test_batching_off_answers_every_question_in_its_callers_thread(
    make_engine: Callable[..., Verbatim],
) -> None:
    engine = make_engine(query_batch=1)
    engine.build_index()
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(engine.ask, QUESTIONS))
    assert [a.question for a in answers] == QUESTIONS
    assert engine.batcher.batched == 0


def test_an_empty_question_fails_alone(make_engine: Callable[..., Verbatim]) -> None:
    engine = make_engine()
    with pytest.raises(ValueError, match="empty"):
        engine.ask("  ")
