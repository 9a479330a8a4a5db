"""The first Japanese question in a fresh process after `verbatim index`, with and without the
models prepared.

    python -m bench.first_question [--rounds 3] [--out bench/results/first_question.json]

`verbatim index` (the seed documents) runs once into a scratch home and prepares every model a
question may need. Each round then times two cold `verbatim ask` processes asking a Japanese
question (read by the cross-lingual reader): "unprepared" after removing what preparing wrote
for the reader (its converted weights, its ONNX graph, the compiled graphs), as an index left
the models folder before it prepared them; "prepared" as `verbatim index` leaves it now. The
unprepared process prepares the reader again, so the next round starts from the same state.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.run import write_results
from embeddings.encoder import prepared_models

ROOT = Path(__file__).resolve().parent.parent
VERBATIM = str(Path(sys.executable).with_name("verbatim"))
QUESTION = "地域に前方展開している米軍の兵力はどのくらいですか?"
console = Console(stderr=True)


def _verbatim(env: dict[str, str], *args: str) -> float:
    started = time.perf_counter()
    subprocess.run([VERBATIM, *args], env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def _unprepare_reader(models: Path) -> None:
    for model in prepared_models(models):
        if "multilingual-e5-small" in model.what or model.name == "openvino":
            shutil.rmtree(models / model.name)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "results" / "first_question.json"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        home = Path(scratch) / "home"
        env = {**os.environ, "VERBATIM_HOME": str(home), "HF_HUB_OFFLINE": "1"}
        env.pop("VERBATIM_MODELS_DIR", None)
        console.print("verbatim index (prepares the models)…")
        index_s = _verbatim(env, "index")
        times: dict[str, list[float]] = {"unprepared": [], "prepared": []}
        for n in range(args.rounds):
            _unprepare_reader(home / "models")
            times["unprepared"].append(_verbatim(env, "ask", QUESTION))
            times["prepared"].append(_verbatim(env, "ask", QUESTION))
            console.print(
                f"round {n + 1}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in times.items())
            )
    results: dict[str, Any] = {"index_s": round(index_s, 1), "question": QUESTION}
    for kind, values in times.items():
        results[kind] = {"median_s": round(statistics.median(values), 2), "runs_s": values}
    results["ratio"] = round(results["unprepared"]["median_s"] / results["prepared"]["median_s"], 1)
    table = Table("models folder", "first Japanese question, cold process (median s)")
    for kind in times:
        table.add_row(kind, f"{results[kind]['median_s']:.1f}")
    Console().print(table)
    write_results(results, args.out)


if __name__ == "__main__":
    main()
