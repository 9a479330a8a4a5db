"""Metrics over query results. Document-level ranking metrics come from ranx; the rest (hit
rates, abstention, latency) are counts over the results."""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np

from qa.evaluation.runner import QueryResult

RANKING_METRICS = [
    "ndcg@10",
    "mrr@10",
    "map@100",
    "recall@1",
    "recall@5",
    "recall@10",
    "recall@100",
]
RECALL_CURVE = [1, 2, 3, 5, 10, 20, 50, 100]


def qrels_of(
    results: Iterable[QueryResult], graded: dict[str, dict[str, int]] | None
) -> dict[str, dict[str, int]]:
    """Judgements of the answerable questions that name gold documents."""
    qrels = {}
    for result in results:
        question = result.question
        if graded is not None and question.id in graded:
            qrels[question.id] = graded[question.id]
        elif question.gold_doc_ids and not question.unanswerable:
            qrels[question.id] = dict.fromkeys(sorted(question.gold_doc_ids), 1)
    return qrels


def run_of(
    results: Iterable[QueryResult], qrels: dict[str, dict[str, int]]
) -> dict[str, dict[str, float]]:
    """Each judged question's document ranking, as ranx wants it (scores strictly decreasing)."""
    run = {}
    for result in results:
        if result.question.id in qrels:
            count = len(result.documents)
            # Rank-based scores: ranx sorts by score, and ties between equal scores must not
            # reorder what the system returned.
            run[result.question.id] = {
                doc: float(count - rank) for rank, (doc, _) in enumerate(result.documents)
            }
            if not run[result.question.id]:
                run[result.question.id] = {"__none__": 0.0}
    return run


def compute(
    results: list[QueryResult], graded: dict[str, dict[str, int]] | None = None
) -> dict[str, Any]:
    """Every metric the set supports, plus per-category and per-language breakdowns."""
    metrics = _metrics(results, graded)
    metrics["by_category"] = _breakdown(results, graded, lambda r: r.question.category)
    metrics["by_lang"] = _breakdown(results, graded, lambda r: r.question.lang)
    return metrics


def _breakdown(
    results: list[QueryResult], graded: dict[str, dict[str, int]] | None, key: Any
) -> dict[str, Any]:
    groups: dict[str, list[QueryResult]] = {}
    for result in results:
        groups.setdefault(key(result), []).append(result)
    return (
        {name: _metrics(group, graded) for name, group in sorted(groups.items())}
        if len(groups) > 1
        else {}
    )


def _metrics(
    results: list[QueryResult], graded: dict[str, dict[str, int]] | None
) -> dict[str, Any]:
    from ranx import Qrels, Run, evaluate

    metrics: dict[str, Any] = {"questions": len(results)}
    qrels = qrels_of(results, graded)
    if qrels:
        with warnings.catch_warnings():  # ranx's numba kernels warn about their own int casts
            warnings.simplefilter("ignore")
            scores = evaluate(
                Qrels(qrels),
                Run(run_of(results, qrels)),
                RANKING_METRICS + [f"recall@{k}" for k in RECALL_CURVE],
            )
        metrics.update({name: round(float(value), 4) for name, value in scores.items()})
    with_answers = [
        r
        for r in results
        if not r.question.unanswerable and (r.question.answers or r.question.spans)
    ]
    if with_answers:
        for k in (1, 3, 5, 10):
            metrics[f"passage_hit@{k}"] = _rate(
                r.passage_hit_rank is not None and r.passage_hit_rank <= k for r in with_answers
            )
        if with_answers[0].answer is not None:
            for k in (1, 3):
                metrics[f"hit@{k}"] = _rate(
                    r.quote_hit_rank is not None and r.quote_hit_rank <= k for r in with_answers
                )
            metrics["ranked_hit@1"] = _rate(r.top_quote_hit for r in with_answers)
    asked = [r for r in results if r.answer is not None]
    if asked:
        unanswerable = [r for r in asked if r.question.unanswerable]
        answerable = [r for r in asked if not r.question.unanswerable]
        abstained = [r for r in asked if r.abstained]
        if unanswerable:
            metrics["abstention_recall"] = _rate(r.abstained for r in unanswerable)
            metrics["abstention_precision"] = (
                round(sum(r.question.unanswerable for r in abstained) / len(abstained), 4)
                if abstained
                else 0.0
            )
        if answerable:
            metrics["false_abstention_rate"] = _rate(r.abstained for r in answerable)
    latencies = [r.latency_ms for r in results]
    metrics["latency_p50_ms"] = round(float(np.percentile(latencies, 50)), 2)
    metrics["latency_p95_ms"] = round(float(np.percentile(latencies, 95)), 2)
    return metrics


def _rate(flags: Iterable[bool]) -> float:
    values = list(flags)
    return round(sum(values) / len(values), 4) if values else 0.0
