"""Evaluation reports: a terminal table, results.json, a per-query CSV, Markdown and a plot."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from qa.evaluation.evaluate import Evaluation, RunResult
from qa.evaluation.metrics import RECALL_CURVE
from qa.evaluation.runner import QueryResult

SUMMARY_METRICS = [
    "ndcg@10",
    "mrr@10",
    "map@100",
    "recall@10",
    "recall@100",
    "passage_hit@1",
    "passage_hit@3",
    "hit@1",
    "hit@3",
    "ranked_hit@1",
    "abstention_precision",
    "abstention_recall",
    "false_abstention_rate",
    "calibrated_threshold",
    "calibrated_abstention_precision",
    "calibrated_abstention_recall",
    "calibrated_false_abstention_rate",
    "latency_p50_ms",
    "latency_p95_ms",
]


def summary_table(evaluation: Evaluation) -> Table:
    shown = [m for m in SUMMARY_METRICS if any(m in run.metrics for run in evaluation.runs)]
    table = Table(
        title=f"{evaluation.source} · {evaluation.runs[0].metrics['questions']} questions"
    )
    table.add_column("metric")  # runs as columns: several runs read side by side
    for run in evaluation.runs:
        table.add_column(run.config.name, justify="right")
    for metric in shown:
        table.add_row(metric, *[_fmt(run.metrics.get(metric)) for run in evaluation.runs])
    return table


def breakdown_table(run: RunResult, key: str) -> Table | None:
    groups = run.metrics.get(key) or {}
    if not groups:
        return None
    shown = [
        m
        for m in (
            "questions",
            "ndcg@10",
            "recall@10",
            "passage_hit@3",
            "hit@1",
            "hit@3",
            "abstention_recall",
            "false_abstention_rate",
        )
        if any(m in g for g in groups.values())
    ]
    table = Table(title=f"{run.config.name} by {key.removeprefix('by_')}")
    table.add_column(key.removeprefix("by_"))
    for metric in shown:
        table.add_column(metric, justify="right")
    for name, metrics in groups.items():
        table.add_row(name, *[_fmt(metrics.get(metric)) for metric in shown])
    return table


def print_report(evaluation: Evaluation, console: Console) -> None:
    console.print(summary_table(evaluation))
    for run in evaluation.runs:
        for key in ("by_category", "by_lang"):
            table = breakdown_table(run, key)
            if table is not None:
                console.print(table)
    if evaluation.comparison_table:
        console.print("Paired Student's t-test (ranx.compare), p < 0.05 marked by superscripts:")
        console.print(evaluation.comparison_table, markup=False, highlight=False)


def results_json(evaluation: Evaluation) -> dict[str, Any]:
    return {
        "source": evaluation.source,
        "runs": [
            {
                "name": run.config.name,
                "config": {"mode": run.config.mode, **run.config.overrides},
                "metrics": run.metrics,
                "per_query": {r.question.id: _per_query(r) for r in run.results},
            }
            for run in evaluation.runs
        ],
        "comparison": evaluation.comparison,
    }


def write_reports(evaluation: Evaluation, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "results.json", out / "per_query.csv", out / "report.md", out / "recall.png"]
    written[0].write_text(json.dumps(results_json(evaluation), indent=2, ensure_ascii=False))
    _write_csv(evaluation, written[1])
    written[2].write_text(_markdown(evaluation), encoding="utf-8")
    _plot(evaluation, written[3])
    return written


def baseline_changes(evaluation: Evaluation, baseline_path: Path) -> list[str]:
    """Per-query wins and losses of each run against the run of the same name (or the first)
    in an earlier results.json."""
    baseline = json.loads(baseline_path.read_text(encoding="utf-8"))
    lines = []
    for run in evaluation.runs:
        before = next(
            (r for r in baseline["runs"] if r["name"] == run.config.name), baseline["runs"][0]
        )
        wins: list[str] = []
        losses: list[str] = []
        for result in run.results:
            old = before["per_query"].get(result.question.id)
            if old is None:
                continue
            now = _per_query(result)
            change = _compare_query(old, now)
            if change:
                entry = f"  {result.question.id}: {result.question.question[:70]} ({change[1]})"
                (wins if change[0] > 0 else losses).append(entry)
        lines.append(
            f"{run.config.name} vs {before['name']}: {len(wins)} wins, {len(losses)} losses"
        )
        lines += [" wins:", *wins] if wins else []
        lines += [" losses:", *losses] if losses else []
    return lines


def _compare_query(old: dict[str, Any], now: dict[str, Any]) -> tuple[int, str] | None:
    """+1 when `now` is better, -1 when worse, by the most user-facing rank both have."""
    if old.get("unanswerable"):
        if old["correct_abstention"] != now["correct_abstention"]:
            return (1 if now["correct_abstention"] else -1), "abstention"
        return None
    for key in ("quote_rank", "passage_rank", "doc_rank"):
        if key in old and key in now:
            before, after = old[key] or 10**6, now[key] or 10**6
            if before != after:
                return (1 if after < before else -1), f"{key} {old[key]} → {now[key]}"
            return None
    return None


def _per_query(result: QueryResult) -> dict[str, Any]:
    question = result.question
    gold = question.gold_doc_ids
    doc_rank = next(
        (rank for rank, (doc, _) in enumerate(result.documents, 1) if doc in gold), None
    )
    record: dict[str, Any] = {
        "unanswerable": question.unanswerable,
        "latency_ms": round(result.latency_ms, 2),
    }
    if gold:
        record["doc_rank"] = doc_rank
    if question.answers or question.spans:
        record["passage_rank"] = result.passage_hit_rank
    if result.answer is not None:
        record["status"] = result.answer.status
        if question.answers or question.spans:
            record["quote_rank"] = result.quote_hit_rank
        if question.unanswerable:
            record["correct_abstention"] = result.abstained
    return record


def _write_csv(evaluation: Evaluation, path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "run",
                "id",
                "question",
                "category",
                "lang",
                "gold",
                "doc_rank",
                "passage_rank",
                "quote_rank",
                "status",
                "returned",
            ]
        )
        for run in evaluation.runs:
            for result in run.results:
                question = result.question
                record = _per_query(result)
                gold = (
                    " | ".join(question.answers or sorted(question.gold_doc_ids))
                    or "(unanswerable)"
                )
                if result.answer is not None and result.answer.quotes:
                    returned = result.answer.quotes[0].text
                else:
                    returned = " ".join(doc for doc, _ in result.documents[:10])
                writer.writerow(
                    [
                        run.config.name,
                        question.id,
                        question.question,
                        question.category,
                        question.lang,
                        gold,
                        record.get("doc_rank"),
                        record.get("passage_rank"),
                        record.get("quote_rank"),
                        record.get("status", ""),
                        returned,
                    ]
                )


def _markdown(evaluation: Evaluation) -> str:
    shown = [m for m in SUMMARY_METRICS if any(m in run.metrics for run in evaluation.runs)]
    lines = [
        f"# Evaluation of `{evaluation.source}`",
        "",
        f"{evaluation.runs[0].metrics['questions']} questions.",
        "",
        "| run | " + " | ".join(shown) + " |",
        "|---|" + "---:|" * len(shown),
    ]
    for run in evaluation.runs:
        lines.append(
            f"| {run.config.name} | " + " | ".join(_fmt(run.metrics.get(m)) for m in shown) + " |"
        )
    for run in evaluation.runs:
        for key in ("by_category", "by_lang"):
            groups = run.metrics.get(key) or {}
            if not groups:
                continue
            names = [
                m
                for m in ("questions", "ndcg@10", "passage_hit@3", "hit@1", "abstention_recall")
                if any(m in g for g in groups.values())
            ]
            lines += [
                "",
                f"## {run.config.name} by {key.removeprefix('by_')}",
                "",
                "| group | " + " | ".join(names) + " |",
                "|---|" + "---:|" * len(names),
            ]
            lines += [
                f"| {name} | " + " | ".join(_fmt(g.get(m)) for m in names) + " |"
                for name, g in groups.items()
            ]
    if evaluation.comparison_table:
        lines += [
            "",
            "## Comparison (paired Student's t-test, ranx)",
            "",
            "```",
            evaluation.comparison_table,
            "```",
        ]
    lines += ["", "![Recall@k per run](recall.png)", ""]
    return "\n".join(lines)


def _plot(evaluation: Evaluation, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for run in evaluation.runs:
        points = [
            (k, run.metrics[f"recall@{k}"]) for k in RECALL_CURVE if f"recall@{k}" in run.metrics
        ]
        if points:
            axes.plot(
                [k for k, _ in points], [v for _, v in points], marker="o", label=run.config.name
            )
    axes.set_xscale("log")
    axes.set_xticks(RECALL_CURVE, [str(k) for k in RECALL_CURVE])
    axes.set_xlabel("k (documents)")
    axes.set_ylabel("Recall@k")
    axes.set_ylim(0, 1.02)
    axes.grid(True, alpha=0.3)
    axes.set_title(f"Recall@k · {Path(evaluation.source).name}")
    if evaluation.runs:
        axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.1f}" if value > 1 else f"{value:.3f}"
    return str(value)
