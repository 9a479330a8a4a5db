"""What each quote scorer costs a question: `ask` latency, scorers alternated in one run.

    python -m bench.quote_latency [--queries 200] [--rounds 5] [--out FILE]

Over the seed documents (the 40 English seed questions) and SciFact (its first `--queries`
questions; the index is built once into bench.run's cache folder), one engine per scorer shares
the index and the encoder; each round asks every question of every scorer, the scorers in turn,
so the machine's noise falls on all of them alike. Reported: p50 and p95 over all rounds, and
each scorer's p50 over the learned default's. The cross-encoder runs only when built
(`make train-cross-encoder`). SciFact is skipped with a message when ../shared lacks it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from bench.run import CACHE, SCIFACT, SEED_QUESTIONS, _beir_corpus, write_results
from embeddings.encoder import Encoder
from qa.engine import Verbatim
from qa.quote_scorer import CROSS_ENCODER_FOLDER
from qa.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
console = Console(stderr=True)


def _engines(home: Path, encoder: Encoder) -> dict[str, Verbatim]:
    base = Settings(home=home)
    kinds = ["learned", "hand"]
    if (base.resolved_models_dir / CROSS_ENCODER_FOLDER).exists():
        kinds.append("cross-encoder")
    return {
        kind: Verbatim(base.model_copy(update={"quote_scorer": kind}), encoder) for kind in kinds
    }


def ask_times(
    engines: dict[str, Verbatim], questions: list[str], rounds: int
) -> dict[str, list[float]]:
    """Milliseconds of each engine's `ask` per question, the engines taking turns on each
    question so the machine's noise falls on all of them alike."""
    for engine in engines.values():
        engine.ask(questions[0])  # warm-up: index, FAISS, models
    times: dict[str, list[float]] = {name: [] for name in engines}
    for _ in range(rounds):
        for question in questions:
            for name, engine in engines.items():
                started = time.perf_counter()
                engine.ask(question)
                times[name].append((time.perf_counter() - started) * 1000)
    return times


def _measure(engines: dict[str, Verbatim], questions: list[str], rounds: int) -> dict[str, Any]:
    times = ask_times(engines, questions, rounds)
    base = statistics.median(times["learned"])
    return {
        kind: {
            "p50_ms": round(statistics.median(values), 2),
            "p95_ms": round(float(np.percentile(values, 95)), 2),
            "p50_vs_learned": round(statistics.median(values) / base, 3),
        }
        for kind, values in times.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--queries", type=int, default=200, help="SciFact questions")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "results" / "quote_latency.json"
    )
    args = parser.parse_args()
    encoder = Encoder(Settings().encoder)
    results: dict[str, Any] = {}

    seed = _engines(CACHE / "seed-home", encoder)
    next(iter(seed.values())).build_index()
    with SEED_QUESTIONS.open(encoding="utf-8") as lines:
        english = [q["question"] for q in map(json.loads, lines) if q["lang"] == "en"]
    console.print(f"seed: {len(english)} English questions × {args.rounds} rounds")
    results["seed"] = _measure(seed, english, args.rounds)

    if SCIFACT.exists():
        corpus = _beir_corpus(SCIFACT, CACHE / "scifact-all-docs", 0)
        scifact = _engines(CACHE / "scifact-all-home", encoder)
        console.print("indexing SciFact (cached between runs)…")
        next(iter(scifact.values())).build_index([corpus])
        with (SCIFACT / "queries.jsonl").open(encoding="utf-8") as lines:
            questions = [json.loads(line)["text"] for line in lines][: args.queries]
        console.print(f"scifact: {len(questions)} questions × {args.rounds} rounds")
        results["scifact"] = _measure(scifact, questions, max(1, args.rounds // 2))
    else:
        console.print(f"skipping SciFact: {SCIFACT} is absent")

    table = Table("set", "scorer", "ask p50 ms", "p95 ms", "p50 / learned")
    for name, kinds in results.items():
        for kind, values in kinds.items():
            table.add_row(
                name,
                kind,
                f"{values['p50_ms']:.1f}",
                f"{values['p95_ms']:.1f}",
                f"{values['p50_vs_learned']:.2f}",
            )
    Console().print(table)
    write_results(results, args.out)


if __name__ == "__main__":
    main()
