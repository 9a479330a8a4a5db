"""Micro-batching: questions that arrive together share one encoder call, each caller gets its
own vector, and a failed batch fails only its own callers."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import numpy.typing as npt
import pytest

from embeddings.batching import QueryBatcher
from embeddings.encoder import Encoder
from qa.engine import Verbatim

QUESTIONS = [f"What did the {n}th joint statement say about the alliance?" for n in range(16)]


def _gated(
    encoder: Encoder, batches: list[int]
) -> tuple[QueryBatcher, threading.Event, threading.Event]:
    """A batcher whose first encoder call signals `entered`, then waits for `release`, so the
    questions sent meanwhile queue up behind it."""
    entered, release = threading.Event(), threading.Event()

    def encode(texts: Sequence[str]) -> npt.NDArray[np.float32]:
        if not batches:
            entered.set()
            assert release.wait(30)
        batches.append(len(texts))
        return encoder.encode_queries(texts)

    return QueryBatcher(encode, max_batch=32, max_wait_ms=0), entered, release


def test_questions_arriving_together_share_one_encoder_call(encoder: Encoder) -> None:
    batches: list[int] = []
    batcher, entered, release = _gated(encoder, batches)
    with ThreadPoolExecutor(len(QUESTIONS)) as pool:
        first = pool.submit(batcher.encode, QUESTIONS[0])
        assert entered.wait(30)  # the first question is inside the encoder
        rest = [pool.submit(batcher.encode, q) for q in QUESTIONS[1:]]
        for _ in range(100_000):  # until the other 15 wait in the queue
            if batcher._waiting.qsize() == len(QUESTIONS) - 1:
                break
        release.set()
        vectors = [first.result(30), *(future.result(30) for future in rest)]

    assert batches == [1, len(QUESTIONS) - 1]  # 16 questions, two encoder calls
    alone = encoder.encode_queries(QUESTIONS)
    for question, vector, expected in zip(QUESTIONS, vectors, alone, strict=True):
        assert np.allclose(vector, expected, atol=1e-5), question  # each gets its own vector


def test_a_failed_batch_fails_its_callers_and_the_next_one_works(encoder: Encoder) -> None:
    calls: list[int] = []

    def encode(texts: Sequence[str]) -> npt.NDArray[np.float32]:
        calls.append(len(texts))
        if len(calls) == 1:
            raise RuntimeError("encoder out of memory")
        return encoder.encode_queries(texts)

    batcher = QueryBatcher(encode, max_batch=8, max_wait_ms=0)
    with pytest.raises(RuntimeError, match="out of memory"):
        batcher.encode(QUESTIONS[0])
    again = batcher.encode(QUESTIONS[1])
    assert np.allclose(again, encoder.encode_queries(QUESTIONS[1:2])[0], atol=1e-5)


def test_only_overlapping_questions_go_through_the_batcher(
    make_engine: Callable[..., Verbatim], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine()
    engine.build_index()
    assert engine.batcher is not None
    encode = engine.encoder.encode_queries
    entered, release = threading.Event(), threading.Event()

    def held_first(texts: Sequence[str]) -> npt.NDArray[np.float32]:
        if texts == ["first question about the alliance"]:
            entered.set()
            assert release.wait(30)
        return encode(texts)

    monkeypatch.setattr(engine._questions, "_encode", held_first)
    engine.batcher._encode = held_first
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(engine.ask, "first question about the alliance")
        assert entered.wait(30)  # encoding alone, directly: nobody else was encoding
        second = pool.submit(engine.ask, "How many personnel are deployed?")
        second.result(30)  # it had company: encoded by the batcher while the first waits
        assert engine.batcher.encoded == 1
        release.set()
        first.result(30)
    engine.ask("A lone question afterwards")
    assert engine.batcher.encoded == 1  # lone questions never take the thread hop
