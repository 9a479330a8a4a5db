"""A real uvicorn server on 127.0.0.1 with a port picked by the kernel, run in a thread."""

from __future__ import annotations

import socket
import threading
from types import TracebackType

import uvicorn
from fastapi import FastAPI


class LiveServer:
    def __init__(self, app: FastAPI) -> None:
        # The socket listens before the server thread starts: connections made meanwhile wait in
        # the kernel's backlog, so no test has to poll for the port.
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(256)
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        self.app = app
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    def __enter__(self) -> LiveServer:
        self._thread.start()
        return self

    def wait_ready(self, timeout: float = 120) -> None:
        assert self.app.state.ready.wait(timeout), "the app did not load its model and index"

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)
        self._socket.close()
