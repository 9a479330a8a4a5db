"""A real Milvus standalone server for the tests (`pip install milvus` provides it).

`milvus-server --data DIR` is a launcher that starts `milvus run standalone` as a child (with an
embedded etcd). Stopping the launcher alone leaves the child running, so every descendant is
signalled by its own PID, and killed if it is still alive after a grace period.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx

URI = "http://127.0.0.1:19530"
HEALTH = "http://127.0.0.1:9091/healthz"


@contextmanager
def milvus_server(data: Path, attempts: int = 3, ready_within: float = 90.0) -> Iterator[str]:
    """Start a server with its data under `data`; yield its URI; stop it and all its children.

    Its embedded single-node etcd sometimes loses its leader while a busy machine starts it, and
    the server panics; a start is then retried from a fresh data directory.
    """
    command = shutil.which("milvus-server") or str(Path(sys.executable).parent / "milvus-server")
    for attempt in range(1, attempts + 1):
        directory = data / f"attempt-{attempt}"
        directory.mkdir(parents=True, exist_ok=True)
        with (directory / "server.log").open("wb") as log:
            launcher = subprocess.Popen(
                [command, "--data", str(directory)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                if _healthy(launcher, directory, ready_within):
                    yield URI
                    return
            finally:
                _stop(launcher.pid)
                launcher.wait(timeout=10)
    raise RuntimeError(f"Milvus did not start in {attempts} attempts; logs under {data}")


def _healthy(launcher: subprocess.Popen[bytes], directory: Path, ready_within: float) -> bool:
    """Wait for the health endpoint; False as soon as the server has visibly failed."""
    stderr = directory / "logs" / "milvus-stderr.log"
    deadline = time.monotonic() + ready_within
    while time.monotonic() < deadline:
        if launcher.poll() is not None:
            return False
        if stderr.exists() and b"panic:" in stderr.read_bytes():
            return False
        try:
            if httpx.get(HEALTH, timeout=1).status_code == 200:
                return True
        except httpx.TransportError:
            pass  # not listening yet
        time.sleep(0.25)  # polling a starting server, with a deadline
    return False


def _stop(root: int, grace: float = 20.0) -> None:
    """SIGTERM the launcher and every descendant, then SIGKILL the ones still alive."""
    processes = [root, *_descendants(root)]
    for pid in processes:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(pid) for pid in processes[1:]):
        time.sleep(0.2)
    for pid in processes:
        if _alive(pid):
            _signal(pid, signal.SIGKILL)


def _descendants(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = [], [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent]
        found += children
        frontier += children
    return found


def _signal(pid: int, number: signal.Signals) -> None:
    with suppress(ProcessLookupError):
        os.kill(pid, number)


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; only its parent's wait is missing
