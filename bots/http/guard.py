"""ASGI middleware in front of the app: request ids, access logs, metrics and a body limit."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bots.http.metrics import Metrics
from qa.logs import get_logger

log = get_logger("verbatim.http")


class RequestGuard:
    """Refuses bodies over `max_body_bytes` (413) before the app reads them, treats the body of
    an API POST as JSON whatever its content type (so `curl -d '{…}'` works), and writes one
    JSON access-log line and the metrics for every request."""

    def __init__(self, app: ASGIApp, metrics: Metrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _header(scope, b"x-request-id") or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500
        recorded = False

        def record() -> None:
            """Metrics and the access-log line, once, before the client sees the response end
            (so whoever reads the log after a response finds the line there)."""
            nonlocal recorded
            if recorded:
                return
            recorded = True
            path = getattr(scope.get("route"), "path", None) or "unmatched"
            seconds = time.perf_counter() - started
            self.metrics.observe_request(path, scope["method"], status, seconds)
            fields: dict[str, Any] = {
                "request_id": request_id,
                "method": scope["method"],
                "route": path,
                "status": status,
                "latency_ms": round(seconds * 1000, 2),
                "client": (scope.get("client") or ("", 0))[0],
            }
            question = scope["state"].get("question")
            if question is not None:
                fields["question"] = question
            log.info("request", **fields)

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                record()
            await send(message)

        try:
            length = _header(scope, b"content-length")
            if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
                await _too_large(send_with_id, self.max_body_bytes)
                return
            if scope["method"] == "POST" and scope["path"].startswith("/v1/"):
                scope["headers"] = _as_json(scope["headers"])
            await self.app(scope, self._limited(receive), send_with_id)
        finally:
            record()  # a request that ended without a complete response

    def _limited(self, receive: Receive) -> Receive:
        """A body sent without a length is counted as it arrives."""
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    # An HTTPException from inside the app becomes the usual 413 error body.
                    raise HTTPException(413, f"request body over {self.max_body_bytes} bytes")
            return message

        return limited


async def _too_large(send: Send, limit: int) -> None:
    body = json.dumps(
        {"error": {"code": "body_too_large", "message": f"request body over {limit} bytes"}}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _as_json(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    kept = [(k, v) for k, v in headers if k != b"content-type"]
    original = dict(headers).get(b"content-type", b"")
    if original.startswith(b"multipart/"):
        return headers
    return [*kept, (b"content-type", b"application/json")]
