"""Which encoder, measured: all-MiniLM-L6-v2 against multilingual-e5-small, each as the model of
every collection, on every set Verbatim is judged on.

    python -m bench.encoders [--jaquad-questions 1000] [--build-docs 1000] [--out FILE]

Quality, both models over the same questions (`qa.evaluation.evaluate`, one index per model):
the learned-quotes evaluation parts of SQuAD v1.1 train and JaQuAD train recast as document QA
(40 articles indexed, 10 withheld: 1,000 answerable and 250 unanswerable questions), SciFact and
JaQuAD (BEIR layout, nDCG@10), and our seed set. Significance: ranx's paired t-test, on nDCG@10
for the BEIR sets and on the top quote holding an answer (ranked hit@1) for the others.

Cost: `ask` p50 at SciFact size (both engines on the full SciFact indexes, questions alternated
between them so the machine's noise falls on both) and a cold index build of the first
`--build-docs` SciFact documents per model. Sets absent from ../shared are skipped with a
message. Indexes are cached in VERBATIM_BENCH_CACHE between runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.quote_latency import ask_times
from bench.run import CACHE, SCIFACT, SEED_QUESTIONS, _beir_corpus, write_results
from embeddings.e5 import MODEL_NAME as E5
from embeddings.encoder import DEFAULT_MODEL
from qa.engine import Verbatim
from qa.evaluation.docqa import DocQASlice
from qa.evaluation.evaluate import Evaluation, evaluate, run_home
from qa.evaluation.runner import QueryResult, RunConfig
from qa.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "eval"
MODELS = {"MiniLM": DEFAULT_MODEL, "e5": E5}
# The model each set's collection gets with no setting (embeddings.encoder.model_for_languages)
DEFAULT_FOR = {"squad": "MiniLM", "jaquad-docqa": "e5", "scifact": "MiniLM", "jaquad": "e5"}
DEFAULT_FOR["seed"] = "MiniLM"
console = Console(stderr=True)


def _runs() -> list[RunConfig]:
    return [RunConfig(name, overrides={"model": model}) for name, model in MODELS.items()]


def _sets(jaquad_questions: int) -> list[tuple[str, Path, DocQASlice | None, int]]:
    """(name, source, document-QA slice, question limit) of every set present."""
    candidates = [
        ("squad", SHARED / "qa-train" / "squad-v1.1-train.json.gz", DocQASlice(), 0),
        ("jaquad-docqa", SHARED / "qa-train" / "jaquad-train.json.gz", DocQASlice(), 0),
        ("scifact", SCIFACT, None, 0),
        ("jaquad", SHARED / "jaquad-mteb-validation", None, jaquad_questions),
        ("seed", SEED_QUESTIONS, None, 0),
    ]
    present = []
    for name, source, cut, limit in candidates:
        if source.exists():
            present.append((name, source, cut, limit))
        else:
            console.print(f"[yellow]skipping {name}[/yellow]: {source} is absent")
    return present


def _hit_significance(evaluation: Evaluation) -> float | None:
    """ranx's paired t-test on 'the top quote holds an answer', answerable questions only."""
    from ranx import Qrels, Run, compare

    first, second = (run.results for run in evaluation.runs)
    answerable = [i for i, r in enumerate(first) if not r.question.unanswerable]
    qrels = Qrels({str(i): {"hit": 1} for i in answerable})

    def run(results: list[QueryResult], name: str) -> Run:
        return Run(
            {str(i): {"hit" if results[i].top_quote_hit else "miss": 1.0} for i in answerable},
            name=name,
        )

    report = compare(
        qrels, [run(first, "a"), run(second, "b")], metrics=["precision@1"], stat_test="student"
    )
    return _p(report.to_dict(), "a", "b", "precision@1")


def _p(comparison: dict[str, Any] | None, a: str, b: str, metric: str) -> float | None:
    try:
        return round(float(comparison[a]["comparisons"][b][metric]), 4)  # type: ignore[index]
    except (KeyError, TypeError):
        return None


def _quality(settings: Settings, jaquad_questions: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name, source, cut, limit in _sets(jaquad_questions):
        console.print(f"{name}: both models over {source.name}…")
        evaluation = evaluate(source, _runs(), settings, limit=limit, docqa=cut)
        metrics = {run.config.name: run.metrics for run in evaluation.runs}
        if "ndcg@10" in metrics["MiniLM"] and name in ("scifact", "jaquad"):
            p = _p(evaluation.comparison, "MiniLM", "e5", "ndcg@10")
        else:
            p = _hit_significance(evaluation)
        results[name] = {"default": DEFAULT_FOR[name], "p": p, "metrics": metrics}
    return results


def _ask_latency(settings: Settings, queries: int, rounds: int) -> dict[str, Any]:
    """`ask` p50 per model on the full SciFact indexes the quality runs built."""
    corpus = settings.home / "eval" / "beir" / SCIFACT.name / "docs"
    engines = {
        name: Verbatim(
            settings.model_copy(
                update={"model": model, "home": run_home(settings.home, SCIFACT, [corpus], run)}
            )
        )
        for (name, model), run in zip(MODELS.items(), _runs(), strict=True)
    }
    with (SCIFACT / "queries.jsonl").open(encoding="utf-8") as lines:
        questions = [json.loads(line)["text"] for line in lines][:queries]
    times = ask_times(engines, questions, rounds)
    return {name: round(statistics.median(values), 2) for name, values in times.items()}


def _build_seconds(settings: Settings, documents: int) -> dict[str, float]:
    """A cold build of the first `documents` SciFact documents per model."""
    corpus = _beir_corpus(SCIFACT, CACHE / f"scifact-{documents}-docs", documents)
    seconds = {}
    for name, model in MODELS.items():
        with tempfile.TemporaryDirectory() as home:
            engine = Verbatim(settings.model_copy(update={"model": model, "home": Path(home)}))
            engine.encoder.load()  # the model's load is not the build's
            seconds[name] = round(engine.build_index([corpus]).seconds, 1)
    return seconds


def _table(results: dict[str, Any]) -> Table:
    table = Table(
        "set", "metric", "MiniLM", "e5", "p (paired t)", "default (per language)", title="encoders"
    )
    shown = {
        "squad": ["ranked_hit@1", "hit@1", "abstention_precision", "abstention_recall"],
        "jaquad-docqa": ["ranked_hit@1", "hit@1", "abstention_precision", "abstention_recall"],
        "scifact": ["ndcg@10"],
        "jaquad": ["ndcg@10"],
        "seed": ["hit@1", "abstention_precision", "abstention_recall"],
    }
    for name, found in results["quality"].items():
        for i, metric in enumerate(shown[name]):
            values = [found["metrics"][model].get(metric) for model in MODELS]
            table.add_row(
                name if i == 0 else "",
                metric,
                *(f"{v:.3f}" if v is not None else "" for v in values),
                "" if i or found["p"] is None else f"{found['p']:.4f}",
                found["default"] if i == 0 else "",
            )
    cost = results.get("cost", {})
    if "ask_p50_ms" in cost:
        ask = cost["ask_p50_ms"]
        table.add_row("scifact", "ask p50 ms", f"{ask['MiniLM']:.1f}", f"{ask['e5']:.1f}")
        build = cost["build_seconds"]
        table.add_row(
            "scifact",
            f"build s ({cost['build_docs']} docs)",
            f"{build['MiniLM']}",
            f"{build['e5']}",
        )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--jaquad-questions", type=int, default=1000, help="0: all 2,048")
    parser.add_argument("--queries", type=int, default=200, help="SciFact questions timed")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--build-docs", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "encoders.json")
    args = parser.parse_args()
    settings = Settings(home=CACHE / "encoders")
    results: dict[str, Any] = {"quality": _quality(settings, args.jaquad_questions)}
    if SCIFACT.exists():
        console.print("timing ask at SciFact size, then cold builds…")
        ask = _ask_latency(settings, args.queries, args.rounds)
        build = _build_seconds(settings, args.build_docs)
        results["cost"] = {
            "ask_p50_ms": ask,
            "ask_p50_e5_over_minilm": round(ask["e5"] / ask["MiniLM"], 3),
            "build_docs": args.build_docs,
            "build_seconds": build,
            "build_e5_over_minilm": round(build["e5"] / build["MiniLM"], 3),
        }
    Console().print(_table(results))
    write_results(results, args.out)


if __name__ == "__main__":
    main()
