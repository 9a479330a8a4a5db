"""Vector search at scale: flat, HNSW and IVF-PQ from 10k to 1M vectors (384-d), one run.

    python -m bench.scale [--sizes 10000 100000 1000000] [--hnsw-max 100000]

Synthetic vectors (clustered like real embeddings, unit length, 384-d) save encoding time; each
(size, index) is built in one process and searched in a fresh one, so the search figures are
what a server pays: load time (memory-mapped vectors, IVF lists mapped from disk), query
p50/p99 for single questions (top 10), recall@10 against exact search, and peak RSS. Recall on
real embeddings comes from the SciFact chunk vectors of `python -m bench.run`'s cached index,
with the 300 SciFact test queries encoded by the packaged model. Writes bench/results/scale.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from embeddings.store import FaissStore, StoreConfig, VectorStore

ROOT = Path(__file__).resolve().parent.parent
DIMENSION = 384
QUERIES = 200
CONFIGS = {
    "flat": StoreConfig(kind="flat"),
    "hnsw": StoreConfig(kind="hnsw"),
    "ivfpq": StoreConfig(kind="ivfpq"),
}
SCIFACT_INDEX = Path.home() / ".cache" / "verbatim-bench" / "scifact-all-home" / "index"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--kinds", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--hnsw-max", type=int, default=100_000, help="largest HNSW built")
    parser.add_argument(
        "--milvus", type=int, default=100_000, help="vectors for the Milvus row (0: none)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "scale.json")
    parser.add_argument("--child", nargs=3, metavar=("STEP", "KIND", "DIR"), help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        step, kind, directory = args.child
        result = (
            _build(kind, args.size, Path(directory))
            if step == "build"
            else _search(kind, Path(directory))
        )
        print(json.dumps(result))
        return
    rows = []
    for size in args.sizes:
        for kind in args.kinds:
            if kind == "hnsw" and size > args.hnsw_max:
                continue
            with tempfile.TemporaryDirectory() as directory:
                built = _child("build", kind, directory, size)
                searched = _child("search", kind, directory, size)
            rows.append({"vectors": size, "index": kind, **built, **searched})
            Console(stderr=True).print(rows[-1])
    if args.milvus:
        rows.append(_milvus(args.milvus))
        Console(stderr=True).print(rows[-1])
    real = _real_embeddings()
    _print(rows, real)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"synthetic": rows, "scifact": real}, indent=2))


def _child(step: str, kind: str, directory: str, size: int) -> dict[str, Any]:
    output = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.scale",
            "--child",
            step,
            kind,
            directory,
            "--size",
            str(size),
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    ).stdout
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return result


def _vectors(size: int, seed: int = 0) -> np.ndarray[Any, np.dtype[np.float32]]:
    """Unit vectors around 1,000 topic centres (the same centres for the corpus and the
    queries), filled in place (no second copy)."""
    centres = np.random.default_rng(1234).normal(size=(1000, DIMENSION)).astype(np.float32)
    rng = np.random.default_rng(seed)
    vectors = np.empty((size, DIMENSION), dtype=np.float32)
    for start in range(0, size, 65_536):
        stop = min(size, start + 65_536)
        block = centres[rng.integers(0, 1000, stop - start)]
        block += 0.8 * rng.normal(size=block.shape).astype(np.float32)
        vectors[start:stop] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return vectors


def _queries() -> np.ndarray[Any, np.dtype[np.float32]]:
    return _vectors(QUERIES, seed=1)


def _build(kind: str, size: int, directory: Path) -> dict[str, Any]:
    vectors = _vectors(size)
    started = time.perf_counter()
    store = FaissStore(DIMENSION, CONFIGS[kind])
    store.add(np.arange(size, dtype=np.int64), vectors)
    store.search(_queries()[:1], 1)  # builds (and trains) the index
    store.save(directory / "store")
    build_s = time.perf_counter() - started
    exact = np.zeros((QUERIES, 10), dtype=np.int64)  # ground truth, blockwise
    best = np.full((QUERIES, 10), -np.inf, dtype=np.float32)
    queries = _queries()
    for start in range(0, size, 65_536):
        scores = queries @ vectors[start : start + 65_536].T
        merged = np.concatenate([best, scores], axis=1)
        ids = np.concatenate(
            [exact, np.arange(start, start + scores.shape[1])[None, :].repeat(QUERIES, 0)], axis=1
        )
        top = np.argsort(-merged, axis=1)[:, :10]
        best, exact = np.take_along_axis(merged, top, 1), np.take_along_axis(ids, top, 1)
    np.save(directory / "exact.npy", exact)
    index_file = directory / "store" / f"{kind}.faiss"
    return {
        "build_s": round(build_s, 2),
        "index_mb": round(index_file.stat().st_size / 2**20, 1) if index_file.exists() else 0.0,
        "vectors_mb": round((directory / "store" / "vectors.npy").stat().st_size / 2**20, 1),
        "build_peak_rss_mb": _peak_rss_mb(),
    }


def _search(kind: str, directory: Path) -> dict[str, Any]:
    started = time.perf_counter()
    store = FaissStore.load(directory / "store", DIMENSION, CONFIGS[kind])
    queries = _queries()
    store.search(queries[:1], 10)  # ready to answer: a flat index copies its vectors here
    load_s = time.perf_counter() - started
    timings, recall = _timed_searches(store, queries, np.load(directory / "exact.npy"))
    return {
        "load_s": round(load_s, 3),
        "query_p50_ms": round(float(np.percentile(timings, 50)), 3),
        "query_p99_ms": round(float(np.percentile(timings, 99)), 3),
        "recall@10": round(float(recall), 4),
        "search_peak_rss_mb": _peak_rss_mb(),
    }


def _milvus(size: int) -> dict[str, Any]:
    """The same vectors and queries through a real Milvus standalone server (HNSW, IP)."""
    from bench.milvus_server import milvus_server
    from embeddings.milvus import MilvusStore

    vectors = _vectors(size)
    queries = _queries()
    truth = FaissStore(DIMENSION, CONFIGS["flat"])
    truth.add(np.arange(size, dtype=np.int64), vectors)
    _, expected = truth.search(queries, 10)
    with tempfile.TemporaryDirectory() as data, milvus_server(Path(data)) as uri:
        started = time.perf_counter()
        store = MilvusStore(DIMENSION, uri, "scale_bench").create()
        store.add(np.arange(size, dtype=np.int64), vectors)
        store.search(queries[:1], 10)
        build_s = time.perf_counter() - started
        timings, recall = _timed_searches(store, queries, expected)
    return {
        "vectors": size,
        "index": "milvus (hnsw)",
        "build_s": round(build_s, 2),
        "query_p50_ms": round(float(np.percentile(timings, 50)), 3),
        "query_p99_ms": round(float(np.percentile(timings, 99)), 3),
        "recall@10": round(float(recall), 4),
    }


def _timed_searches(
    store: VectorStore,
    queries: np.ndarray[Any, np.dtype[np.float32]],
    expected: np.ndarray[Any, Any],
) -> tuple[list[float], float]:
    """Milliseconds per single-question search (top 10), and recall@10 against `expected`."""
    timings, found = [], []
    for query in queries:
        begun = time.perf_counter()
        _, ids = store.search(query[None, :], 10)
        timings.append((time.perf_counter() - begun) * 1000)
        found.append(ids[0])
    return timings, _recall(found, expected)


def _recall(found: Any, expected: Any) -> float:
    return float(np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found, expected, strict=True)]))


def _real_embeddings() -> list[dict[str, Any]]:
    """Recall@10 of each index on real embeddings: SciFact's chunk vectors and test queries."""
    if not (SCIFACT_INDEX / "CURRENT").exists():
        Console(stderr=True).print(f"skipping real embeddings: no index at {SCIFACT_INDEX}")
        return []
    from embeddings.encoder import Encoder
    from qa.index import load_index

    index = load_index(SCIFACT_INDEX)
    ids = np.array(sorted(index.chunks_by_vector_id), dtype=np.int64)
    vectors = index.chunk_store.vectors(ids)
    scifact = ROOT.parent / "shared" / "eval" / "scifact" / "queries.jsonl"
    texts = [json.loads(line)["text"] for line in scifact.open(encoding="utf-8")][:300]
    queries = Encoder().encode_queries(texts)
    truth = FaissStore(DIMENSION, CONFIGS["flat"])
    truth.add(ids, vectors)
    _, expected = truth.search(queries, 10)
    rows = []
    for kind in ("flat", "hnsw", "ivfpq"):
        store = FaissStore(DIMENSION, CONFIGS[kind])
        store.add(ids, vectors.copy())
        _, found = store.search(queries, 10)
        recall = _recall(found, expected)
        rows.append({"index": kind, "vectors": len(ids), "recall@10": round(float(recall), 4)})
    return rows


def _peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _print(rows: list[dict[str, Any]], real: list[dict[str, Any]]) -> None:
    table = Table(title="Vector search at scale (384-d, 2 cores), one run")
    columns = [
        "vectors",
        "index",
        "build_s",
        "index_mb",
        "build_peak_rss_mb",
        "load_s",
        "query_p50_ms",
        "query_p99_ms",
        "recall@10",
        "search_peak_rss_mb",
    ]
    for column in columns:
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(*[str(row.get(c, "")) for c in columns])
    Console(width=200).print(table)
    for row in real:
        Console().print(f"SciFact real embeddings: {row}")


if __name__ == "__main__":
    main()
