"""HTTP load on `POST /v1/ask`: answers/s and latency percentiles at several concurrencies.

    python -m bench.http_load [--seconds 15] [--concurrency 1 8 32]

The server runs in its own process (`verbatim serve` on a free loopback port, rate limit off);
the load comes from an httpx async client in this process. Each level is bounded in time. The
in-process `ask` latency is measured in the same run, as the baseline the HTTP numbers add to.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from rich.console import Console
from rich.table import Table

from bench.server import served
from qa.engine import Verbatim
from qa.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = [
    json.loads(line)["question"] for line in (ROOT / "eval" / "seed_questions.jsonl").open()
]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "http_load.json")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as home:
        engine = Verbatim(Settings(home=Path(home)))
        engine.build_index()
        in_process = [_timed_ms(lambda q=q: engine.ask(q)) for q in QUESTIONS * 3]
        env = {"VERBATIM_HOME": home, "VERBATIM_RATE_LIMIT": "", "VERBATIM_LOG_LEVEL": "ERROR"}
        with served(env) as url:
            _wait_ready(url)
            levels = [
                asyncio.run(_load(url, clients, args.seconds)) for clients in args.concurrency
            ]
    results = {
        "in_process_ask_ms": {
            "p50": round(statistics.median(in_process), 2),
            "p95": round(float(np.percentile(in_process, 95)), 2),
        },
        "seconds_per_level": args.seconds,
        "levels": levels,
    }
    _print(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    Console(stderr=True).print(f"wrote {args.out}")


async def _load(url: str, clients: int, seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    errors: dict[str, int] = {}
    deadline = time.perf_counter() + seconds

    async def client(worker: int, http: httpx.AsyncClient) -> None:
        turn = worker
        while time.perf_counter() < deadline:
            question = QUESTIONS[turn % len(QUESTIONS)]
            turn += clients
            started = time.perf_counter()
            try:
                response = await http.post(f"{url}/v1/ask", json={"question": question})
                ok = response.status_code == 200 and response.json()["question"] == question
                key = "ok" if ok else f"status {response.status_code}"
            except httpx.HTTPError as exc:
                key = type(exc).__name__
            if key == "ok":
                latencies.append((time.perf_counter() - started) * 1000)
            else:
                errors[key] = errors.get(key, 0) + 1

    limits = httpx.Limits(max_connections=clients)
    started = time.perf_counter()
    async with httpx.AsyncClient(limits=limits, timeout=30) as http:
        await asyncio.gather(*(client(worker, http) for worker in range(clients)))
    elapsed = time.perf_counter() - started
    return {
        "clients": clients,
        "answers": len(latencies),
        "answers_per_s": round(len(latencies) / elapsed, 1),
        "errors": errors,
        **{f"p{p}_ms": round(float(np.percentile(latencies, p)), 1) for p in (50, 95, 99)},
    }


def _print(results: dict[str, Any]) -> None:
    base = results["in_process_ask_ms"]
    table = Table(title=f"POST /v1/ask (in-process ask p50 {base['p50']} ms, p95 {base['p95']} ms)")
    for column in ("clients", "answers/s", "p50 ms", "p95 ms", "p99 ms", "errors"):
        table.add_column(column, justify="right")
    for level in results["levels"]:
        table.add_row(
            str(level["clients"]),
            str(level["answers_per_s"]),
            str(level["p50_ms"]),
            str(level["p95_ms"]),
            str(level["p99_ms"]),
            str(sum(level["errors"].values())),
        )
    Console(width=120).print(table)


def _wait_ready(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)  # a benchmark waiting for a server process to start, not a test
    raise SystemExit("the server did not become ready")


def _timed_ms(action: Any) -> float:
    started = time.perf_counter()
    action()
    return (time.perf_counter() - started) * 1000


if __name__ == "__main__":
    main()
