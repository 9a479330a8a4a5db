"""Micro-batching: questions that arrive together are encoded in one encoder call.

Under load, many request threads each want one question encoded. One call with a batch of 32
costs less than 32 calls of one (the model runs once over a padded matrix), so a single
encoder thread takes every question waiting — at most `max_batch` — and hands each caller its
own vector. While one batch encodes, the next forms. Under load (the last batch held more
than one question) it also waits up to `max_wait_ms` after the first question for company; a
question on an idle server is encoded at once.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future

import numpy as np
import numpy.typing as npt

Vector = npt.NDArray[np.float32]
_IDLE_EXIT_S = 30.0  # an idle batcher's thread ends; the next question starts another
EncodeBatch = Callable[[Sequence[str]], npt.NDArray[np.float32]]


class QuestionEncoder:
    """Questions from many threads, one each: a lone question is encoded at once, in its own
    thread (no hop, +0.4 ms, for the CLI or an idle server); questions that overlap another's
    encoding share the batcher's calls."""

    def __init__(self, encode: EncodeBatch, batcher: QueryBatcher | None) -> None:
        self._encode = encode
        self.batcher = batcher
        self._encoding = 0  # questions being encoded now
        self._lock = threading.Lock()

    def encode(self, text: str) -> Vector:
        with self._lock:
            self._encoding += 1
            company = self._encoding > 1
        try:
            if company and self.batcher is not None:
                return self.batcher.encode(text)
            alone: Vector = self._encode([text])[0]
            return alone
        finally:
            with self._lock:
                self._encoding -= 1


class QueryBatcher:
    def __init__(self, encode: EncodeBatch, max_batch: int = 32, max_wait_ms: float = 1.0) -> None:
        self._encode = encode
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000
        self._waiting: queue.SimpleQueue[tuple[str, Future[Vector]]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.encoded = 0  # questions encoded through batches
        self._last_size = 0

    def encode(self, text: str) -> Vector:
        """The vector of `text`, encoded together with whatever questions arrive with it."""
        result: Future[Vector] = Future()
        self._waiting.put((text, result))  # before the thread check: see `_run`'s exit
        self._ensure_thread()
        return result.result()

    def _ensure_thread(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="verbatim-query-batcher", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                first = self._waiting.get(timeout=_IDLE_EXIT_S)
            except queue.Empty:
                with self._start_lock:  # exit only if no question arrived meanwhile
                    if self._waiting.empty():
                        self._thread = None
                        return
                continue
            batch = [first]
            busy = self._last_size > 1  # idle servers do not make a lone question wait
            deadline = time.perf_counter() + (self.max_wait_s if busy else 0.0)
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._waiting.get_nowait())
                    continue
                except queue.Empty:
                    pass
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                try:
                    batch.append(self._waiting.get(timeout=left))
                except queue.Empty:
                    break
            self._encode_batch(batch)

    def _encode_batch(self, batch: list[tuple[str, Future[Vector]]]) -> None:
        try:
            vectors = self._encode([text for text, _ in batch])
        except BaseException as exc:  # every caller gets the error; the thread keeps serving
            for _, result in batch:
                result.set_exception(exc)
            return
        self.encoded += len(batch)
        self._last_size = len(batch)
        for (_, result), vector in zip(batch, vectors, strict=True):
            result.set_result(vector)
