"""Encoder backends side by side: cold starts and per-query encode latency.

    python -m bench.backends [--runs 3]

Two cold starts on an existing seed index, the ONNX graphs exported beforehand (a one-off per
model and machine): a whole `verbatim ask` process (imports, model load, one answer), and a
`verbatim serve` process from its start to the first answered `POST /v1/ask` (what a Slack
bot restarted by its supervisor makes the first user wait).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from rich.console import Console
from rich.table import Table

from bench.server import served
from embeddings.encoder import BACKENDS as ENCODER_BACKENDS
from embeddings.encoder import Encoder, EncoderConfig
from qa.engine import Verbatim
from qa.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
BACKENDS = tuple(b for b in ENCODER_BACKENDS if b != "auto")  # each one, by name
QUESTION = "How many U.S. military personnel are forward deployed in the region?"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3, help="cold starts per backend")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "backends.json")
    args = parser.parse_args()
    questions = [
        json.loads(line)["question"] for line in (ROOT / "eval" / "seed_questions.jsonl").open()
    ]
    results = {}
    with tempfile.TemporaryDirectory() as home:
        Verbatim(Settings(home=Path(home))).build_index()
        for backend in BACKENDS:
            encoder = Encoder(EncoderConfig(backend=backend, cache_dir=Path(home) / "models"))
            encoder.load()  # exports the ONNX graph once, before anything is timed
            encoder.encode_queries(questions[:2])
            timings = []
            for question in questions * 3:
                started = time.perf_counter()
                encoder.encode_queries([question])
                timings.append((time.perf_counter() - started) * 1000)
            cold = [_cold_start(home, backend) for _ in range(args.runs)]
            serve = [_serve_cold_start(home, backend) for _ in range(args.runs)]
            results[backend] = {
                "encode_p50_ms": round(float(np.percentile(timings, 50)), 2),
                "encode_p95_ms": round(float(np.percentile(timings, 95)), 2),
                "cold_start_s": round(statistics.median(cold), 3),
                "serve_first_answer_s": round(statistics.median(serve), 3),
            }
    table = Table(title="Encoder backends (all-MiniLM-L6-v2)")
    columns = ("backend", "encode p50 ms", "encode p95 ms", "ask cold s", "serve → answer s")
    for column in columns:
        table.add_column(column, justify="right")
    for backend, row in results.items():
        table.add_row(
            backend,
            str(row["encode_p50_ms"]),
            str(row["encode_p95_ms"]),
            str(row["cold_start_s"]),
            str(row["serve_first_answer_s"]),
        )
    Console(width=120).print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))


def _cold_start(home: str, backend: str) -> float:
    env = {**os.environ, "VERBATIM_HOME": home, "VERBATIM_ENCODER_BACKEND": backend}
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "bots.cli", "ask", QUESTION],
        env=env,
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def _serve_cold_start(home: str, backend: str) -> float:
    """Seconds from starting `verbatim serve` to its first answered question."""
    started = time.perf_counter()
    with served({"VERBATIM_HOME": home, "VERBATIM_ENCODER_BACKEND": backend}) as url:
        while time.perf_counter() - started < 60:
            try:
                response = httpx.post(f"{url}/v1/ask", json={"question": QUESTION}, timeout=5)
                if response.status_code == 200:
                    return time.perf_counter() - started
            except httpx.TransportError:
                pass  # not listening yet
            time.sleep(0.02)  # polling a starting server, not synchronising a test
    raise RuntimeError("the server gave no answer within 60 s")


if __name__ == "__main__":
    main()
