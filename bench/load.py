"""An async HTTP load driver for `POST /v1/ask` that checks every answer it gets.

Used by `bench.http_load` (long runs, tables) and by `tests/test_load.py` (a short run in
`make test`). Each client asks its own sequence of questions; every response is recorded with
the question it answers and the index version it came from, so a caller can prove that no
answer went to the wrong question or mixed two index versions.

The driver runs on the server's machine, so what it spends is taken from the server: aiohttp
spends 0.6-0.8 core-ms an answer where httpx's async client spent 2.7 (32 clients, measured
with `resource.getrusage`), a sixth of all the work an answer cost on the two cores.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np


@dataclass(frozen=True)
class Reply:
    question: str
    status: int
    latency_ms: float
    body: dict[str, Any]


@dataclass
class LoadRun:
    clients: int
    seconds: float
    replies: list[Reply] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)  # transport errors by kind

    @property
    def answered(self) -> list[Reply]:
        return [r for r in self.replies if r.status == 200]

    def summary(self) -> dict[str, Any]:
        latencies = [r.latency_ms for r in self.answered] or [0.0]
        statuses: dict[str, int] = {}
        for reply in self.replies:
            statuses[str(reply.status)] = statuses.get(str(reply.status), 0) + 1
        return {
            "clients": self.clients,
            "seconds": round(self.seconds, 1),
            "answers": len(self.answered),
            "answers_per_s": round(len(self.answered) / self.seconds, 1),
            "statuses": statuses,
            "transport_errors": self.failures,
            **{f"p{p}_ms": round(float(np.percentile(latencies, p)), 1) for p in (50, 95, 99)},
        }


async def drive(
    url: str,
    questions: list[str],
    clients: int,
    seconds: float,
    max_requests: int | None = None,
    keep_going: asyncio.Event | None = None,
) -> LoadRun:
    """`clients` concurrent clients asking for `seconds` (and, when given, until `keep_going`
    is cleared), at most `max_requests` in all."""
    run = LoadRun(clients, seconds)
    deadline = time.perf_counter() + seconds
    sent = 0

    def more() -> bool:
        if max_requests is not None and sent >= max_requests:
            return False
        return time.perf_counter() < deadline or (keep_going is not None and keep_going.is_set())

    async def client(number: int, http: aiohttp.ClientSession) -> None:
        nonlocal sent
        turn = number
        while more():
            sent += 1
            question = questions[turn % len(questions)]
            turn += clients
            started = time.perf_counter()
            try:
                async with http.post(f"{url}/v1/ask", json={"question": question}) as response:
                    body = await response.json()
            except (aiohttp.ClientError, TimeoutError) as exc:
                run.failures[type(exc).__name__] = run.failures.get(type(exc).__name__, 0) + 1
                continue
            run.replies.append(
                Reply(
                    question=question,
                    status=response.status,
                    latency_ms=(time.perf_counter() - started) * 1000,
                    body=body,
                )
            )

    started = time.perf_counter()
    connections = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(
        connector=connections, timeout=aiohttp.ClientTimeout(total=60)
    ) as http:
        await asyncio.gather(*(client(number, http) for number in range(clients)))
    run.seconds = time.perf_counter() - started
    return run


def quote_key(body: dict[str, Any]) -> tuple[str, tuple[tuple[str, int, int], ...]]:
    """What makes an answer the answer: its status and its quotes' places."""
    return body["status"], tuple(
        (q["doc_id"], q["char_start"], q["char_end"]) for q in body["quotes"]
    )


def metric_samples(exposition: str) -> dict[str, float]:
    """The unlabelled samples of a server's /metrics (Prometheus text), by name."""
    samples = {}
    for line in exposition.splitlines():
        name, _, value = line.partition(" ")
        if line and not line.startswith("#") and "{" not in name:
            samples[name] = float(value)
    return samples
