"""Parsing documents in a child process, bounded in time and memory.

A hostile or broken file (a PDF that loops, HTML nested 100,000 deep, a zip bomb) must not
stall or sink a whole index run. Each document is parsed by a worker process (`python -m
corpus.sandbox`) with an address-space limit; a parse that runs past the time limit gets its
worker killed, a worker that dies is replaced, and either way the file is reported and
skipped. The worker is a plain subprocess talking pickled frames over its stdin and stdout, so
it never re-imports the caller's `__main__` (as multiprocessing's spawn and forkserver do).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import resource
import select
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from types import TracebackType
from typing import IO, Any

from corpus.errors import DocumentError
from corpus.loader import SourceFile, read_document
from corpus.models import Document

_LENGTH = struct.Struct(">Q")


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
        self._worker: subprocess.Popen[bytes] | None = None

    def read(self, source: SourceFile) -> Document:
        worker = self._started()
        assert worker.stdin is not None and worker.stdout is not None
        try:
            _write_frame(worker.stdin, source)
            reply = _read_frame(worker.stdout, time.monotonic() + self.limits.timeout_s)
        except TimeoutError:
            self._stop()
            raise DocumentError(
                source.path,
                f"parsing took over {self.limits.timeout_s:g} s and was stopped; the file may be "
                "malformed (raise VERBATIM_PARSE_TIMEOUT_S for very large documents)",
            ) from None
        except (EOFError, OSError):
            self._stop()
            raise DocumentError(
                source.path,
                f"the parser died reading this file (over the {self.limits.memory_mb} MB memory "
                "limit, or a crash in the parsing library); skipped",
            ) from None
        kind, value = reply
        if kind == "document":
            return value  # type: ignore[no-any-return]
        if kind == "memory":
            raise DocumentError(
                source.path,
                f"parsing needed more than the {self.limits.memory_mb} MB memory limit; skipped "
                "(raise VERBATIM_PARSE_MEMORY_MB if the file is genuine)",
            )
        raise value

    def close(self) -> None:
        self._stop()

    def __enter__(self) -> ParserSandbox:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def _started(self) -> subprocess.Popen[bytes]:
        if self._worker is None or self._worker.poll() is not None:
            self._worker = subprocess.Popen(
                [sys.executable, "-m", "corpus.sandbox", str(self.limits.memory_mb)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
        return self._worker

    def _stop(self) -> None:
        """Stop the worker now (a stuck parse never returns), so the next read gets a new one."""
        worker, self._worker = self._worker, None
        if worker is None:
            return
        worker.kill()
        worker.wait()
        for pipe in (worker.stdin, worker.stdout):
            if pipe is not None:
                pipe.close()


def _write_frame(pipe: IO[bytes], value: Any) -> None:
    payload = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    pipe.write(_LENGTH.pack(len(payload)) + payload)
    pipe.flush()


def _read_frame(pipe: IO[bytes], deadline: float | None = None) -> Any:
    (length,) = _LENGTH.unpack(_read_exactly(pipe, _LENGTH.size, deadline))
    return pickle.loads(_read_exactly(pipe, length, deadline))


def _read_exactly(pipe: IO[bytes], size: int, deadline: float | None) -> bytes:
    chunks: list[bytes] = []
    while size:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([pipe], [], [], left)[0]:
                raise TimeoutError
        chunk = os.read(pipe.fileno(), min(size, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _serve(memory_mb: int) -> None:
    """The worker: one source file in, one ("document" | "error" | "memory", value) out."""
    limit = memory_mb * 1024 * 1024
    with contextlib.suppress(ValueError, OSError):  # macOS lacks RLIMIT_AS: time limit only
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    requests, replies = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # a library that prints must not corrupt the frames
    while True:
        try:
            source = _read_frame(requests)
        except EOFError:
            return
        try:
            reply: tuple[str, Any] = ("document", read_document(source))
        except DocumentError as error:
            reply = ("error", error)
        except MemoryError:
            reply = ("memory", None)
        _write_frame(replies, reply)


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
