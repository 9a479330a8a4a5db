"""Replicas, measured: answers/s of one `verbatim serve` process against two, both over one
Milvus server with Redis state, and what the Redis state costs an answer against the embedded
(SQLite) state.

    python -m bench.replicas [--seconds 15] [--clients 16] [--rounds 2] [--out FILE]

Each round starts, in turn: one replica with Redis state, two replicas with Redis state (the
clients split between them, as a round-robin balancer would), and one replica with the
embedded state, each over the same Milvus collection and index folder, and drives
`POST /v1/ask` with the seed questions for `--seconds` (bench.load). Ratios are taken within a
round, then the median over rounds. The load driver, Milvus and Redis run on the same machine
as the replicas, so two replicas share its cores: the ratio says what a second process adds
here, not what a second machine would.

The state's own cost per answer is timed in-process too: what one HTTP answer does to it (a
rate-window hit and a new conversation saved), `--state-ops` times for each implementation.
Needs the `milvus` package's server and Debian's redis-server; exits with a message if either
cannot start.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
from limits import parse as parse_rate
from limits.strategies import MovingWindowRateLimiter
from rich.console import Console
from rich.table import Table

from bench.http_load import QUESTIONS
from bench.load import LoadRun, drive
from bench.milvus_server import milvus_server
from bench.redis_server import RedisUnavailable, redis_server
from bench.run import write_results
from bench.server import served, wait_ready
from corpus.loader import default_corpus_dir
from embeddings.milvus import SETTLED_S
from qa.conversation import Conversation, Turn, new_conversation_id
from qa.engine import Verbatim
from qa.settings import Settings
from qa.state import State, open_state

ROOT = Path(__file__).resolve().parent.parent
console = Console(stderr=True)
SETUPS = ("1 replica, Redis", "2 replicas, Redis", "1 replica, SQLite")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=15.0, help="of load per setup and round")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients in all")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--state-ops", type=int, default=2000, help="answers' state work timed")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "replicas.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, ExitStack() as servers:
        scratch = Path(folder)
        try:
            redis_url = servers.enter_context(redis_server(scratch / "redis"))
        except RedisUnavailable as exc:
            raise SystemExit(f"skipping the replica benchmark: {exc}") from exc
        milvus_uri = servers.enter_context(milvus_server(scratch / "milvus"))
        env = _index(scratch, milvus_uri)
        # A version's first SETTLED_S seconds are read with Strong consistency (slow); measure
        # what replicas serve the rest of the time
        time.sleep(SETTLED_S)
        state_cost = _state_cost(scratch, redis_url, args.state_ops)
        rounds = []
        for number in range(1, args.rounds + 1):
            console.print(f"round {number}/{args.rounds}")
            rounds.append(_round(scratch, env, redis_url, args.clients, args.seconds))
    results = _summary(rounds, state_cost, args)
    _print(results)
    write_results(results, args.out)


def _index(scratch: Path, milvus_uri: str) -> dict[str, str]:
    """The seed documents indexed once into Milvus; the settings every replica shares."""
    corpus = scratch / "corpus"
    shutil.copytree(default_corpus_dir(), corpus)
    builder = Settings(
        home=scratch / "builder",
        index_dir=scratch / "index",
        vector_store="milvus",
        milvus_uri=milvus_uri,
        milvus_collection="bench_replicas",
    )
    Verbatim(builder).build_index([corpus])
    return {
        "VERBATIM_INDEX_DIR": str(scratch / "index"),
        "VERBATIM_VECTOR_STORE": "milvus",
        "VERBATIM_MILVUS_URI": milvus_uri,
        "VERBATIM_MILVUS_COLLECTION": "bench_replicas",
        "VERBATIM_RATE_LIMIT": "1000000/minute",  # counted, never reached: its cost is measured
        "VERBATIM_LOG_LEVEL": "ERROR",
    }


def _round(
    scratch: Path, env: dict[str, str], redis_url: str, clients: int, seconds: float
) -> dict[str, dict[str, Any]]:
    redis = {**env, "VERBATIM_STATE_URL": redis_url}
    out = {}
    with _replicas(scratch, [redis]) as urls:
        out[SETUPS[0]] = _load(urls, clients, seconds)
    with _replicas(scratch, [redis, redis]) as urls:
        out[SETUPS[1]] = _load(urls, clients, seconds)
    with _replicas(scratch, [env]) as urls:
        out[SETUPS[2]] = _load(urls, clients, seconds)
    for setup, run in out.items():
        console.print(f"  {setup}: {run['answers_per_s']} answers/s, p50 {run['p50_ms']} ms")
    return out


@contextmanager
def _replicas(scratch: Path, envs: list[dict[str, str]]) -> Iterator[list[str]]:
    """One `verbatim serve` process per environment, each with a home of its own."""
    with ExitStack() as stack:
        urls = [
            stack.enter_context(served({**env, "VERBATIM_HOME": str(scratch / f"replica-{n}")}))
            for n, env in enumerate(envs)
        ]
        for url in urls:
            wait_ready(url, timeout=300)
            httpx.post(f"{url}/v1/ask", json={"question": QUESTIONS[0]}, timeout=60)  # warm
        yield urls


def _load(urls: list[str], clients: int, seconds: float) -> dict[str, Any]:
    """`clients` in all, split evenly between the replicas."""

    async def together() -> list[LoadRun]:
        share = clients // len(urls)
        return await asyncio.gather(*(drive(url, QUESTIONS, share, seconds) for url in urls))

    runs = asyncio.run(together())
    merged = LoadRun(clients, max(run.seconds for run in runs))
    for run in runs:
        merged.replies.extend(run.replies)
        for kind, count in run.failures.items():
            merged.failures[kind] = merged.failures.get(kind, 0) + count
    return merged.summary()


def _state_cost(scratch: Path, redis_url: str, answers: int) -> dict[str, float]:
    """Microseconds of state work per answer (rate-window hit + a new conversation saved)."""
    states = {
        "SQLite": open_state("", scratch / "state-sqlite", 3600, 20),
        "Redis": open_state(redis_url, scratch / "state-redis", 3600, 20),
    }
    timings: dict[str, list[float]] = {name: [] for name in states}
    for _ in range(3):  # alternated, so the machine's noise falls on both
        for name, state in states.items():
            timings[name].append(_state_work(state, answers))
    return {name: round(statistics.median(values), 1) for name, values in timings.items()}


def _state_work(state: State, answers: int) -> float:
    limiter = MovingWindowRateLimiter(state.limits)
    rate = parse_rate("1000000/minute")
    started = time.perf_counter()
    for n in range(answers):
        limiter.hit(rate, "bench", f"client-{n % 50}")
        conversation = Conversation(new_conversation_id(), owner="bench", updated=time.time())
        conversation.turns.append(Turn(QUESTIONS[n % len(QUESTIONS)], "query", ["doc"]))
        state.conversations.save(conversation)
    return (time.perf_counter() - started) * 1e6 / answers


def _summary(
    rounds: list[dict[str, dict[str, Any]]], state_cost: dict[str, float], args: Any
) -> dict[str, Any]:
    def ratio(a: str, b: str) -> float:
        ratios = [r[a]["answers_per_s"] / r[b]["answers_per_s"] for r in rounds]
        return round(float(statistics.median(ratios)), 3)

    return {
        "clients": args.clients,
        "seconds": args.seconds,
        "rounds": rounds,
        "answers_per_s": {
            setup: round(statistics.median(r[setup]["answers_per_s"] for r in rounds), 1)
            for setup in SETUPS
        },
        "two_over_one_replica": ratio(SETUPS[1], SETUPS[0]),
        "redis_over_sqlite_one_replica": ratio(SETUPS[0], SETUPS[2]),
        "state_us_per_answer": state_cost,
    }


def _print(results: dict[str, Any]) -> None:
    table = Table("setup", "answers/s (median)", "p50 ms (last round)", title="replicas")
    last = results["rounds"][-1]
    for setup in SETUPS:
        table.add_row(setup, f"{results['answers_per_s'][setup]}", f"{last[setup]['p50_ms']}")
    Console().print(table)
    cost = results["state_us_per_answer"]
    Console().print(
        f"two replicas / one: {results['two_over_one_replica']}x answers/s; Redis / SQLite state"
        f" (one replica): {results['redis_over_sqlite_one_replica']}x; state work per answer:"
        f" SQLite {cost['SQLite']} µs, Redis {cost['Redis']} µs"
    )


if __name__ == "__main__":
    main()
