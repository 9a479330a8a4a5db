"""HTTP load on `POST /v1/ask`: throughput and latency, micro-batching on and off, and a
reliability run with re-indexes underneath.

    python -m bench.http_load [--seconds 10] [--reliability-seconds 60] [--clients 50]

`verbatim serve` runs in its own process on a loopback port (rate limit off); the load comes
from an async aiohttp driver (`bench.load`) in this process. Every phase is bounded in time.

1. Levels: 1, 8 and 32 concurrent clients, the default configuration.
2. Micro-batching: 32 clients with it off (`VERBATIM_QUERY_BATCH=1`, 2 workers: the old
   configuration) and on (the default): both servers up at once and loaded in turn, `--rounds`
   rounds of `--seconds` each, so a noisy neighbour slows both alike; the ratio reported is
   the median of the rounds' ratios. Then its ceiling: in this process, the CPU time of reading
   the questions (`Verbatim.read_questions`: both encoders) one at a time against in batches of
   the served mean batch size (from the server's /metrics), in alternating rounds. Batching
   saves only reading, so the served ratio cannot pass this one.
3. Reliability: `--clients` clients for `--reliability-seconds` while `verbatim index` re-indexes
   a corpus whose documents flip between two versions, again and again. Every answer must be
   the answer to its own question from the index version it names (expected answers come from
   an in-process engine on each version); the server's RSS is read before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from rich.console import Console
from rich.table import Table

from bench.load import LoadRun, drive, metric_samples, quote_key
from bench.run import write_results
from bench.server import served, wait_ready
from corpus.loader import default_corpus_dir
from qa.engine import Verbatim
from qa.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = [
    json.loads(line)["question"] for line in (ROOT / "eval" / "seed_questions.jsonl").open()
]
_EDITED = "001_dd8c4ca6def8021f.txt"
_QUIET = {"VERBATIM_RATE_LIMIT": "", "VERBATIM_LOG_LEVEL": "ERROR"}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="per level and round")
    parser.add_argument("--rounds", type=int, default=5, help="of micro-batching off and on")
    parser.add_argument("--reliability-seconds", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=50, help="in the reliability run")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "http_load.json")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        home, corpus = Path(scratch) / "home", Path(scratch) / "corpus"
        shutil.copytree(default_corpus_dir(), corpus)
        engine = Verbatim(Settings(home=home))
        engine.build_index([corpus])
        in_process = [_timed_ms(lambda q=q: engine.ask(q)) for q in QUESTIONS * 3]
        env = {"VERBATIM_HOME": str(home), **_QUIET}
        with served(env) as url:
            wait_ready(url)
            levels = [_load(url, clients, args.seconds) for clients in (1, 8, 32)]
        batching = _batching(env, args.rounds, args.seconds)
        batch = max(2, round(batching["mean_batch"]))  # 0 if no question ever had company
        batching["reading"] = _reading(engine, batch, args.rounds)
        reliability = _reliability(Path(scratch), corpus, args.clients, args.reliability_seconds)

    results = {
        "in_process_ask_ms": {
            "p50": round(statistics.median(in_process), 2),
            "p95": round(float(np.percentile(in_process, 95)), 2),
        },
        "levels": levels,
        "batching": batching,
        "reliability": reliability,
    }
    _print(results)
    write_results(results, args.out)


def _load(url: str, clients: int, seconds: float) -> dict[str, Any]:
    started = time.process_time()
    run = asyncio.run(drive(url, QUESTIONS, clients, seconds))
    summary = run.summary()
    summary["driver_core_ms_per_answer"] = round(
        (time.process_time() - started) * 1000 / max(1, summary["answers"]), 2
    )
    return summary


def _batching(env: dict[str, str], rounds: int, seconds: float) -> dict[str, Any]:
    """32 clients on a server without micro-batching and one with it, in turns."""
    configurations = {"off": {"VERBATIM_QUERY_BATCH": "1", "VERBATIM_QUERY_WORKERS": "2"}, "on": {}}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in configurations}
    with contextlib.ExitStack() as servers:
        urls = {
            name: servers.enter_context(served({**env, **extra}))
            for name, extra in configurations.items()
        }
        for url in urls.values():
            wait_ready(url)
            _load(url, 32, 2)  # warm-up
        for _ in range(rounds):
            for name, url in urls.items():
                runs[name].append(_load(url, 32, seconds))
        scraped = metric_samples(httpx.get(f"{urls['on']}/metrics").text)
    ratios = [
        on["answers_per_s"] / off["answers_per_s"]
        for off, on in zip(runs["off"], runs["on"], strict=True)
    ]
    return {
        **{name: _median_run(each) for name, each in runs.items()},
        "round_ratios": [round(r, 2) for r in ratios],
        "throughput_ratio": round(statistics.median(ratios), 2),
        "mean_batch": round(
            scraped["verbatim_batched_questions_total"]
            / max(1.0, scraped["verbatim_question_batches_total"]),
            1,
        ),
    }


def _reading(engine: Verbatim, batch: int, rounds: int) -> dict[str, Any]:
    """CPU time a question costs to read alone and in batches of `batch`, in turns."""
    shuffled = random.Random(0)
    alone: list[float] = []
    together: list[float] = []
    for questions in [QUESTIONS] + [QUESTIONS * 2] * rounds:  # the first round warms up
        order = shuffled.sample(questions, len(questions))
        alone.append(_core_ms_per_question(engine, order, 1))
        together.append(_core_ms_per_question(engine, order, batch))
    ratios = [a / t for a, t in zip(alone[1:], together[1:], strict=True)]
    return {
        "batch": batch,
        "alone_core_ms": round(statistics.median(alone[1:]), 2),
        "batched_core_ms": round(statistics.median(together[1:]), 2),
        "round_ratios": [round(r, 2) for r in ratios],
        "ratio": round(statistics.median(ratios), 2),
    }


def _core_ms_per_question(engine: Verbatim, questions: list[str], batch: int) -> float:
    started = time.process_time()  # every thread of this process: the encoders' too
    for first in range(0, len(questions), batch):
        engine.read_questions(questions[first : first + batch])
    return (time.process_time() - started) * 1000 / len(questions)


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The rounds' medians, and every round's answers/s."""
    median = {
        key: statistics.median(run[key] for run in runs)
        for key in ("answers_per_s", "p50_ms", "p95_ms", "p99_ms", "driver_core_ms_per_answer")
    }
    statuses: dict[str, int] = {}
    errors: dict[str, int] = {}
    for run in runs:
        for key, count in run["statuses"].items():
            statuses[key] = statuses.get(key, 0) + count
        for key, count in run["transport_errors"].items():
            errors[key] = errors.get(key, 0) + count
    return {
        "clients": runs[0]["clients"],
        **median,
        "statuses": statuses,
        "transport_errors": errors,
        "answers_per_s_by_round": [run["answers_per_s"] for run in runs],
    }


def _reliability(scratch: Path, corpus: Path, clients: int, seconds: float) -> dict[str, Any]:
    """Answers checked against both index versions while re-indexes flip between them."""
    original = (corpus / _EDITED).read_text()
    states = [original, original.replace("about 100,000", "about 80,000")]
    expected: dict[str, dict[str, Any]] = {}
    for number, text in enumerate(states):
        (corpus / _EDITED).write_text(text)
        engine = Verbatim(Settings(home=scratch / f"expected-{number}"))
        version = engine.build_index([corpus]).index_version
        expected[version] = {q: quote_key(engine.ask(q).model_dump(mode="json")) for q in QUESTIONS}
    (corpus / _EDITED).write_text(states[0])
    home = scratch / "reliability"
    Verbatim(Settings(home=home)).build_index([corpus])

    stop = threading.Event()
    reindexes: list[float] = []

    def reindex_forever() -> None:
        turn = 1
        while not stop.is_set():
            (corpus / _EDITED).write_text(states[turn % 2])
            started = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "bots.cli", "index", str(corpus)],
                env={**os.environ, "VERBATIM_HOME": str(home)},
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=True,
            )
            reindexes.append(time.perf_counter() - started)
            turn += 1

    server_log = ROOT / "bench" / "results" / "http_load_server.log"
    server_log.parent.mkdir(parents=True, exist_ok=True)
    with served(
        {"VERBATIM_HOME": str(home), **_QUIET, "VERBATIM_LOG_LEVEL": "WARNING"}, server_log
    ) as url:
        wait_ready(url)
        rss_before = _rss(url)
        rss_samples: list[float] = []

        def sample_rss() -> None:  # every tenth of the run: flat, or growing?
            while not stop.wait(seconds / 10):
                rss_samples.append(_rss(url))

        helpers = [threading.Thread(target=t, daemon=True) for t in (reindex_forever, sample_rss)]
        for helper in helpers:
            helper.start()
        run = asyncio.run(drive(url, QUESTIONS, clients, seconds))
        stop.set()
        for helper in helpers:
            helper.join()
        rss_after = _rss(url)
    wrong = _wrong_answers(run, expected)
    return {
        **run.summary(),
        "reindexes": len(reindexes),
        "reindex_s_mean": round(statistics.mean(reindexes), 1) if reindexes else None,
        "answers_by_version": {
            v: sum(r.body.get("index_version") == v for r in run.answered) for v in expected
        },
        "wrong_or_mixed_answers": wrong,
        "rss_mb_before": rss_before,
        "rss_mb_after": rss_after,
        "rss_mb_during": rss_samples,
    }


def _wrong_answers(run: LoadRun, expected: dict[str, dict[str, Any]]) -> int:
    wrong = 0
    for reply in run.answered:
        version = reply.body["index_version"]
        if (
            reply.body["question"] != reply.question
            or version not in expected
            or quote_key(reply.body) != expected[version][reply.question]
        ):
            wrong += 1
    return wrong


def _rss(url: str) -> float:
    scraped = metric_samples(httpx.get(f"{url}/metrics").text)
    return round(scraped["process_resident_memory_bytes"] / 2**20, 1)


def _print(results: dict[str, Any]) -> None:
    base = results["in_process_ask_ms"]
    console = Console(width=120)
    table = Table(title=f"POST /v1/ask (in-process ask p50 {base['p50']} ms, p95 {base['p95']} ms)")
    for column in ("run", "clients", "answers/s", "p50 ms", "p95 ms", "p99 ms", "statuses"):
        table.add_column(column, justify="right")
    rows = [("default", level) for level in results["levels"]]
    rows += [(f"batching {name}", results["batching"][name]) for name in ("off", "on")]
    rows.append(("reliability", results["reliability"]))
    for name, level in rows:
        table.add_row(
            name,
            str(level["clients"]),
            str(level["answers_per_s"]),
            str(level["p50_ms"]),
            str(level["p95_ms"]),
            str(level["p99_ms"]),
            json.dumps({**level["statuses"], **level["transport_errors"]}),
        )
    console.print(table)
    reliability = results["reliability"]
    batching, reading = results["batching"], results["batching"]["reading"]
    console.print(
        f"micro-batching: {batching['throughput_ratio']}x answers/s at 32 clients "
        f"(median of the rounds' ratios {batching['round_ratios']}, mean batch "
        f"{batching['mean_batch']}); its ceiling, reading alone: {reading['ratio']}x "
        f"({reading['alone_core_ms']} core-ms a question alone, {reading['batched_core_ms']} in "
        f"batches of {reading['batch']}; rounds {reading['round_ratios']}); "
        f"reliability: {reliability['reindexes']} re-indexes, "
        f"{reliability['wrong_or_mixed_answers']} wrong or mixed answers, answers by version "
        f"{reliability['answers_by_version']}, RSS {reliability['rss_mb_before']} → "
        f"{reliability['rss_mb_after']} MB (during: {reliability['rss_mb_during']})"
    )


def _timed_ms(action: Any) -> float:
    started = time.perf_counter()
    action()
    return (time.perf_counter() - started) * 1000


if __name__ == "__main__":
    main()
