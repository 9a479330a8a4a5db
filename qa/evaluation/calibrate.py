"""Choosing the answer threshold on a question set (`verbatim eval --calibrate`).

The signal is the top quote's score (sentence similarity mixed with keyword coverage), which is
what `ask` compares with the threshold. The chosen threshold abstains on as many unanswerable
questions as it can while abstaining on at most `max_false_abstention` of the answerable ones;
it sits midway between the highest unanswerable score it catches and the next score above, for
the widest margin on both sides.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from qa.evaluation.runner import QueryResult

DEFAULT_MAX_FALSE_ABSTENTION = 0.05


@dataclass(frozen=True)
class Calibration:
    threshold: float
    abstention_precision: float
    abstention_recall: float
    false_abstention_rate: float
    answerable: int
    unanswerable: int
    max_false_abstention: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def calibrate(
    results: list[QueryResult], max_false_abstention: float = DEFAULT_MAX_FALSE_ABSTENTION
) -> Calibration | None:
    """The threshold for these results, or None when the set lacks either kind of question."""
    answerable = sorted(_top_score(r) for r in results if not r.question.unanswerable)
    unanswerable = sorted(_top_score(r) for r in results if r.question.unanswerable)
    if not answerable or not unanswerable or results[0].answer is None:
        return None
    allowed = int(max_false_abstention * len(answerable))  # answerable questions we may lose
    ceiling = answerable[allowed]  # thresholds up to here keep the false-abstention bound
    catchable = [s for s in unanswerable if s < ceiling]
    if catchable:  # just above the highest unanswerable score we can abstain on
        highest = max(catchable)
        above = min(s for s in answerable + unanswerable if s > highest)
        threshold = (highest + above) / 2
    else:  # every unanswerable question scores like an answerable one: abstain on nothing
        threshold = answerable[0] - 0.01
    abstained_unanswerable = sum(s < threshold for s in unanswerable)
    abstained_answerable = sum(s < threshold for s in answerable)
    abstained = abstained_unanswerable + abstained_answerable
    return Calibration(
        threshold=round(threshold, 4),
        abstention_precision=round(abstained_unanswerable / abstained, 4) if abstained else 0.0,
        abstention_recall=round(abstained_unanswerable / len(unanswerable), 4),
        false_abstention_rate=round(abstained_answerable / len(answerable), 4),
        answerable=len(answerable),
        unanswerable=len(unanswerable),
        max_false_abstention=max_false_abstention,
    )


def _top_score(result: QueryResult) -> float:
    """The best quote's score whether or not it cleared the threshold (-1 with no quote)."""
    if result.answer is None or not result.answer.quotes:
        return -1.0
    return max(q.score for q in result.answer.quotes)
