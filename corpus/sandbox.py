"""Parsing documents in a child process, bounded in time and memory.

A hostile or broken file (a PDF that loops, HTML nested 100,000 deep, a zip bomb) must not
stall or sink a whole index run. Each document is parsed by a worker process with an address
space limit; a parse that runs past the time limit gets its worker killed, a worker that dies
is replaced, and either way the file is reported and skipped.
"""

from __future__ import annotations

import multiprocessing
import resource
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from types import TracebackType

from corpus.errors import DocumentError
from corpus.loader import SourceFile, read_document
from corpus.models import Document


@dataclass(frozen=True)
class ParseLimits:
    timeout_s: float = 60.0  # per document
    memory_mb: int = 2048  # address space of the parsing process


class ParserSandbox:
    """`read(source)` is `read_document(source)`, run in a limited worker process.

    Use as a context manager; the worker starts on the first `read`.
    """

    def __init__(self, limits: ParseLimits | None = None) -> None:
        self.limits = limits or ParseLimits()
        self._pool: ProcessPoolExecutor | None = None

    def read(self, source: SourceFile) -> Document:
        future = self._worker().submit(read_document, source)
        try:
            return future.result(timeout=self.limits.timeout_s)
        except FutureTimeout:
            self._kill()
            raise DocumentError(
                source.path,
                f"parsing took over {self.limits.timeout_s:g} s and was stopped; the file may be "
                "malformed (raise VERBATIM_PARSE_TIMEOUT_S for very large documents)",
            ) from None
        except BrokenProcessPool:
            self._kill()
            raise DocumentError(
                source.path,
                f"the parser died reading this file (over the {self.limits.memory_mb} MB memory "
                "limit, or a crash in the parsing library); skipped",
            ) from None
        except MemoryError:
            raise DocumentError(
                source.path,
                f"parsing needed more than the {self.limits.memory_mb} MB memory limit; skipped "
                "(raise VERBATIM_PARSE_MEMORY_MB if the file is genuine)",
            ) from None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> ParserSandbox:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def _worker(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # forkserver: the worker never inherits the indexer's threads (encoder, FAISS).
            context = multiprocessing.get_context("forkserver")
            self._pool = ProcessPoolExecutor(
                max_workers=1,
                mp_context=context,
                initializer=_limit_memory,
                initargs=(self.limits.memory_mb,),
            )
        return self._pool

    def _kill(self) -> None:
        """Stop the worker now (a stuck parse never returns), so the next read gets a new one."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        for process in list(getattr(pool, "_processes", {}).values()):
            process.kill()
        pool.shutdown(wait=True, cancel_futures=True)


def _limit_memory(megabytes: int) -> None:
    limit = megabytes * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
