"""A redis-server of its own on 127.0.0.1, for the tests and benchmarks (Debian's package,
which `make test` installs)."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class RedisUnavailable(RuntimeError):
    """No redis-server to start; the message says how to get one."""


@contextmanager
def redis_server(folder: Path) -> Iterator[str]:
    """Start a server with no persistence, its files under `folder`; yield its URL; stop it."""
    server = shutil.which("redis-server")
    if server is None:
        raise RedisUnavailable(
            "redis-server is not installed: `make test` installs Debian's redis-server"
        )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    folder.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(folder)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        for line in process.stdout:  # its log says when it accepts connections
            if "Ready to accept connections" in line:
                break
        else:
            raise RuntimeError("redis-server exited before it was ready")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)
