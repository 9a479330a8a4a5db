"""A faithful local stand-in for Slack: its Web API on 127.0.0.1 and a driver that sends signed
events to the bot's real `/slack/events` endpoint, the way Slack does (see slack-contract.md)."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx

BOT_TOKEN = "xoxb-test-token"
APP_TOKEN = "xapp-test-token"
SIGNING_SECRET = "test-signing-secret"
BOT_USER = "UBOT"
BOT_ID = "BBOT"


class FakeSlackAPI:
    """Records every Web API call, checks tokens and Block Kit limits, injects failures."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.ws_url = ""
        self._changed = threading.Condition(threading.RLock())
        # method -> [(channel or None for any, status, body, headers)]
        self._injected: dict[str, list[tuple[str | None, int, dict[str, Any], dict[str, str]]]] = {}
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.base = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.url = f"{self.base}/api/"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def fail_next(
        self, method: str, error: str, channel: str | None = None, times: int = 1
    ) -> None:
        for _ in range(times):
            self._injected.setdefault(method, []).append(
                (channel, 200, {"ok": False, "error": error}, {})
            )

    def rate_limit_next(
        self, method: str, channel: str | None = None, times: int = 1, retry_after: int = 1
    ) -> None:
        for _ in range(times):
            self._injected.setdefault(method, []).append(
                (
                    channel,
                    429,
                    {"ok": False, "error": "ratelimited"},
                    {"Retry-After": str(retry_after)},
                )
            )

    def calls_to(self, method: str, channel: str | None = None) -> list[dict[str, Any]]:
        with self._changed:
            return [
                args
                for name, args in self.calls
                if name == method and (channel is None or args.get("channel") == channel)
            ]

    def wait_for(
        self, method: str, count: int = 1, channel: str | None = None, timeout: float = 60
    ) -> list[dict[str, Any]]:
        """Blocks until `method` has been called `count` times (a condition, not a sleep)."""
        with self._changed:
            done = self._changed.wait_for(
                lambda: len(self.calls_to(method, channel)) >= count, timeout
            )
        calls = self.calls_to(method, channel)
        assert done, f"{method} called {len(calls)} times, expected {count}"
        return calls

    def _record(
        self, method: str, args: dict[str, Any]
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        with self._changed:
            self.calls.append((method, args))
            self._changed.notify_all()
            queue = self._injected.get(method, [])
            for position, (channel, status, body, headers) in enumerate(queue):
                if channel is None or channel == args.get("channel"):
                    del queue[position]
                    return status, body, headers
        return 200, self._reply(method, args), {}

    def _reply(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        if method == "auth.test":
            return {
                "ok": True,
                "team_id": "T1",
                "user_id": BOT_USER,
                "bot_id": BOT_ID,
                "user": "verbatim",
            }
        if method in ("chat.postMessage", "chat.postEphemeral"):
            problem = _block_problem(args)
            if problem:
                return {"ok": False, "error": problem}
            return {"ok": True, "channel": args.get("channel"), "ts": f"{time.time():.6f}"}
        if method == "apps.connections.open":
            return {"ok": True, "url": self.ws_url}
        return {"ok": True}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                if self.headers.get("Content-Type", "").startswith("application/json"):
                    args = json.loads(raw or "{}")
                else:
                    args = dict(parse_qsl(raw))
                    if "blocks" in args:
                        args["blocks"] = json.loads(args["blocks"])
                if self.path.startswith("/response/"):
                    status, body, headers = fake._record(
                        "response_url", {"path": self.path, **args}
                    )
                else:
                    method = self.path.removeprefix("/api/")
                    wanted = APP_TOKEN if method == "apps.connections.open" else BOT_TOKEN
                    if self.headers.get("Authorization") != f"Bearer {wanted}":
                        status, body, headers = 200, {"ok": False, "error": "invalid_auth"}, {}
                    else:
                        status, body, headers = fake._record(method, args)
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *_: Any) -> None:
                pass

        return Handler


def _block_problem(args: dict[str, Any]) -> str | None:
    """Slack's own checks on a message, as documented in slack-contract.md."""
    blocks = args.get("blocks") or []
    if not args.get("text") and not blocks:
        return "no_text"
    if len(blocks) > 50:
        return "invalid_blocks"
    total = 0
    for block in blocks:
        texts = (
            [block["text"]["text"]]
            if block.get("type") == "section"
            else [
                e.get("text", "")
                for e in block.get("elements", [])
                if isinstance(e.get("text", ""), str)
            ]
        )
        if block.get("type") == "section" and len(texts[0]) > 3000:
            return "invalid_blocks"
        if block.get("type") == "context" and len(block.get("elements", [])) > 10:
            return "invalid_blocks"
        total += sum(len(t) for t in texts)
    return "msg_blocks_too_long" if total > 12_000 else None


class SlackDriver:
    """Sends what Slack sends: signed event envelopes, slash commands and button clicks."""

    # Event ids are unique across drivers, as Slack's are across a workspace: the state that
    # de-duplicates them outlives any one driver (or server)
    _event_ids = itertools.count(1)

    def __init__(self, events_url: str, api: FakeSlackAPI) -> None:
        self.events_url = events_url
        self.api = api

    def event(
        self, event: dict[str, Any], event_id: str | None = None, retries: int = 0
    ) -> list[httpx.Response]:
        """Deliver an event, then `retries` more copies as Slack's retry policy would."""
        number = next(self._event_ids)
        envelope = {
            "type": "event_callback",
            "team_id": "T1",
            "api_app_id": "A1",
            "event_id": event_id or f"Ev{number:06d}",
            "event_time": int(time.time()),
            "event": event,
        }
        body = json.dumps(envelope)
        responses = [self.post(body)]
        for attempt in range(1, retries + 1):
            responses.append(
                self.post(
                    body,
                    headers={
                        "X-Slack-Retry-Num": str(attempt),
                        "X-Slack-Retry-Reason": "http_timeout",
                    },
                )
            )
        return responses

    def command(self, text: str, user: str = "U1", channel: str = "C1") -> httpx.Response:
        number = next(self._event_ids)
        form = {
            "command": "/ask",
            "text": text,
            "user_id": user,
            "channel_id": channel,
            "team_id": "T1",
            "response_url": f"{self.api.base}/response/{number}",
            "trigger_id": "t1",
        }
        return self.post(urlencode(form), content_type="application/x-www-form-urlencoded")

    def click(
        self, action: dict[str, Any], user: str = "U1", channel: str = "C1"
    ) -> httpx.Response:
        number = next(self._event_ids)
        payload = {
            "type": "block_actions",
            "team": {"id": "T1"},
            "user": {"id": user},
            "api_app_id": "A1",
            "channel": {"id": channel},
            "container": {"type": "message"},
            "trigger_id": "t2",
            "response_url": f"{self.api.base}/response/{number}",
            "actions": [action],
        }
        return self.post(
            urlencode({"payload": json.dumps(payload)}),
            content_type="application/x-www-form-urlencoded",
        )

    def post(
        self,
        body: str,
        content_type: str = "application/json",
        timestamp: int | None = None,
        signature: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        ts = str(timestamp if timestamp is not None else int(time.time()))
        signed = (
            "v0="
            + hmac.new(
                SIGNING_SECRET.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256
            ).hexdigest()
        )
        return httpx.post(
            self.events_url,
            content=body.encode(),
            headers={
                "Content-Type": content_type,
                "X-Slack-Request-Timestamp": ts,
                "X-Slack-Signature": signature or signed,
                **(headers or {}),
            },
            timeout=30,
        )


class FakeSocketMode:
    """Slack's Socket Mode side: `apps.connections.open` hands out this websocket URL; each
    connection gets `hello`, then envelopes; acks come back on `received`."""

    def __init__(self, api: FakeSlackAPI) -> None:
        import asyncio
        import queue

        import websockets

        self.connections: queue.Queue[Any] = queue.Queue()
        self.received: queue.Queue[dict[str, Any]] = queue.Queue()
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, daemon=True).start()

        async def start() -> Any:
            return await websockets.serve(self._serve, "127.0.0.1", 0)

        self._server = asyncio.run_coroutine_threadsafe(start(), self._loop).result(30)
        port = next(iter(self._server.sockets)).getsockname()[1]
        api.ws_url = f"ws://127.0.0.1:{port}/link/?ticket=test"

    async def _serve(self, websocket: Any) -> None:
        self.connections.put(websocket)
        await websocket.send(
            json.dumps({"type": "hello", "num_connections": 1, "connection_info": {"app_id": "A1"}})
        )
        async for message in websocket:
            self.received.put(json.loads(message))

    def send(self, websocket: Any, message: dict[str, Any]) -> None:
        import asyncio

        asyncio.run_coroutine_threadsafe(websocket.send(json.dumps(message)), self._loop).result(30)

    def close(self) -> None:
        import asyncio

        self._server.close()
        asyncio.run_coroutine_threadsafe(self._server.wait_closed(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
