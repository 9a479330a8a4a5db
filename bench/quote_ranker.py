"""Quote scorers compared on the evaluation part of public extractive QA sets.

    python -m bench.quote_ranker [--out bench/results/quote_ranker.json]

For SQuAD v1.1 (English) and JaQuAD (Japanese, over the multilingual-e5-small index its
documents choose), the training collections of `qa.training` (one big, 25 small) and two
evaluations are indexed: one big collection of the evaluation part, and small collections of it
(`qa.evaluation.docqa.small_slices`: two articles' first paragraphs each, unanswerable questions
from other articles and from the paragraphs cut away). Every possible quote of every question is
listed with its features, once. Each scorer then picks each
question's best quote from the same lists, so the comparison is of scoring alone:

- `hand`: the earlier mix, 0.7 similarity + 0.3 keyword coverage;
- `hand+rules`: that mix with the amount rule it had (half the score for a quote that states no
  number when the question asks for an amount);
- `learned`: the ranker and confidence model `python -m qa.training` ships, refitted here on
  the training slice; `learned-no-types` / `learned-no-year` without the answer-type or the
  year features (the removal of each rule, measured); `boosted`: gradient-boosted trees on the
  same features (scikit-learn), pointwise, the non-linear alternative (its probability both
  ranks and is thresholded).

When the cross-encoder is built (`make train-cross-encoder`), SQuAD's evaluation questions are
also scored by the shipped learned model, the cross-encoder alone (its logit ranks the learned
model's best quotes; no threshold of its own) and their combination
(`VERBATIM_QUOTE_SCORER=cross-encoder`), each with its shipped threshold.

Metrics on each evaluation: ranked hit@1 (the best quote holds a gold answer), hit@1 (it
does and clears the threshold calibrated on the training slice), abstention precision and
recall on the unanswerable questions, with a paired t-test of ranked hit@1 against `learned`.
Sets absent from ../shared/eval/qa-train are skipped with a message.
"""

from __future__ import annotations

import argparse
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from rich.console import Console
from rich.table import Column, Table
from scipy import stats

from bench.run import write_results
from qa.engine import Verbatim
from qa.evaluation.docqa import DocQASlice, small_slices
from qa.quote_scorer import (
    CROSS_ENCODER_FOLDER,
    FEATURES,
    CrossEncoderQuoteScorer,
    LearnedQuoteScorer,
    QuoteCandidates,
    QuoteScorer,
)
from qa.settings import Settings
from qa.training import (
    MAX_FALSE_ABSTENTION,
    SETS,
    SHARED,
    SMALL_TRAIN_SLICES,
    TRAIN_SLICE,
    Confidence,
    QuestionFeatures,
    Scorer,
    calibrate_threshold,
    collect_set,
    fit,
    quote_texts,
    read_by_one_encoder,
    top_scores,
)

ROOT = Path(__file__).resolve().parent.parent
EVAL_SLICE = DocQASlice(part="eval", articles=40, withheld=10, questions=1000, unanswerable=250)
# Small collections of the evaluation part, as many as its articles make (88 SQuAD, 138 JaQuAD)
SMALL_EVAL_SLICES = {"squad": small_slices("eval", 22), "jaquad": small_slices("eval", 30)}
console = Console(stderr=True)
ANSWER_TYPES = ("amount_stated", "amount_missing", "date_stated", "date_missing")


def _column(features: npt.NDArray[np.float32], name: str) -> npt.NDArray[np.float64]:
    return features[:, FEATURES.index(name)].astype(np.float64)


def hand(features: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    return 0.7 * _column(features, "similarity") + 0.3 * _column(features, "coverage")


def hand_with_rules(features: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    return hand(features) * 0.5 ** _column(features, "amount_missing")


def _itself(features: npt.NDArray[np.float32], ranks: npt.NDArray[np.float64]) -> Any:
    return ranks


def _boosted(train: list[QuestionFeatures]) -> Scorer:
    from sklearn.ensemble import HistGradientBoostingClassifier

    x = np.vstack([q.features for q in train if len(q.features)])
    y = np.concatenate([q.holds_answer * (not q.unanswerable) for q in train if len(q.features)])
    model = HistGradientBoostingClassifier(max_iter=300, learning_rate=0.1, random_state=0)
    model.fit(x, y)
    return lambda f: model.predict_proba(f)[:, 1]


def scorers(train: list[QuestionFeatures]) -> dict[str, tuple[Scorer, Confidence]]:
    """Each scorer as (ranking, confidence)."""
    without = {"learned-no-types": tuple(f for f in FEATURES if f not in ANSWER_TYPES)}
    out: dict[str, tuple[Scorer, Confidence]] = {
        "hand": (hand, _itself),
        "hand+rules": (hand_with_rules, _itself),
    }
    learned = fit(train)
    out["learned"] = (learned.rank, learned.confidence)
    for name, features in without.items():
        model = fit(train, features)
        out[name] = (model.rank, model.confidence)
    out["boosted"] = (_boosted(train), _itself)
    return out


def measure(
    scorer: tuple[Scorer, Confidence], train: list[QuestionFeatures], test: list[QuestionFeatures]
) -> dict[str, Any]:
    threshold = calibrate_threshold(top_scores(*scorer, train), MAX_FALSE_ABSTENTION)
    return _metrics(top_scores(*scorer, test), threshold)


def _metrics(tops: list[tuple[float, bool, bool]], threshold: float | None) -> dict[str, Any]:
    """From each question's (best quote's confidence, unanswerable, it holds an answer); with
    no threshold, nothing abstains."""
    cut = -np.inf if threshold is None else threshold
    answerable = [(s, hit) for s, unanswerable, hit in tops if not unanswerable]
    unanswerable = [s for s, is_unanswerable, _ in tops if is_unanswerable]
    abstained_right = sum(s < cut for s in unanswerable)
    abstained_wrong = sum(s < cut for s, _ in answerable)
    abstained = abstained_right + abstained_wrong
    return {
        "ranked_hit@1": round(float(np.mean([hit for _, hit in answerable])), 4),
        "hit@1": round(float(np.mean([hit and s >= cut for s, hit in answerable])), 4),
        "abstention_precision": round(abstained_right / abstained, 4) if abstained else 0.0,
        "abstention_recall": round(abstained_right / len(unanswerable), 4) if unanswerable else 0,
        "false_abstention_rate": round(abstained_wrong / len(answerable), 4),
        "threshold": None if threshold is None else round(threshold, 4),
        "_hits": [int(hit) for _, hit in answerable],
    }


def cross_encoder_runs(
    name: str, test: list[QuestionFeatures], cache: Path, folder: Path
) -> dict[str, dict[str, Any]]:
    """The shipped learned model, the cross-encoder alone and their combination on the same
    quote lists; the quotes' texts come from the evaluation slice's index."""
    learned = LearnedQuoteScorer.load()
    combined = CrossEncoderQuoteScorer.load(learned, folder)
    base = Settings()
    engine = Verbatim(
        base.model_copy(
            update={
                "home": _home(cache, name, "eval", 0),
                "index_dir": None,
                "quote_scorer": "hand",
            }
        )
    )
    scored: dict[str, QuoteScorer] = {
        "learned (shipped)": learned,
        "learned + cross-encoder": combined,
    }
    # per scorer, as `top_scores` gives them: (confidence, unanswerable, best holds an answer)
    tops: dict[str, list[tuple[float, bool, bool]]] = {
        "learned (shipped)": [],
        "cross-encoder alone": [],
        "learned + cross-encoder": [],
    }
    for n, q in enumerate(test, 1):
        if not len(q.features):
            for values in tops.values():
                values.append((-1.0, q.unanswerable, False))
            continue
        candidates = QuoteCandidates(
            question=q.question,
            model_id=q.model_id,
            lang=q.lang,
            cross_lingual=False,
            features=q.features,
            texts=_texts(engine, q),
        )
        for label, scorer in scored.items():
            ranks = scorer.rank(candidates)
            best = int(np.argmax(ranks))
            sure = float(scorer.confidence(candidates, ranks)[best])
            tops[label].append((sure, q.unanswerable, bool(q.holds_answer[best])))
        top, _, logits = candidates.memo["cross_encoder"]
        alone = int(top[int(np.argmax(logits))])
        tops["cross-encoder alone"].append((0.0, q.unanswerable, bool(q.holds_answer[alone])))
        if n % 250 == 0:
            console.print(f"  cross-encoder: {n}/{len(test)} questions")
    model_id = test[0].model_id  # the evaluation part holds one encoder's questions
    lang = test[0].lang
    thresholds = {label: s.threshold(model_id, False, lang) for label, s in scored.items()}
    return {label: _metrics(values, thresholds.get(label)) for label, values in tops.items()}


def _texts(engine: Verbatim, q: QuestionFeatures) -> Callable[[list[int]], list[str]]:
    return lambda rows: quote_texts(engine, q, rows)


def _features(
    name: str, label: str, slices: list[DocQASlice], cache: Path
) -> list[QuestionFeatures]:
    """Collected once per set and slices, each slice its own collection; later runs reuse the
    file (delete it to recollect)."""
    stored = cache / f"{name}-{label}.pkl"
    if stored.exists():
        data: list[QuestionFeatures] = pickle.loads(stored.read_bytes())
        return data
    console.print(f"{name} {label}: indexing and collecting features")
    data = []
    for n, slice_ in enumerate(slices):
        data += collect_set(SHARED / SETS[name], _home(cache, name, label, n), slice_)[0]
    stored.write_bytes(pickle.dumps(data))
    return data


def _home(cache: Path, name: str, label: str, n: int) -> Path:
    """Where the `n`th collection of a set's training or evaluation slices is indexed."""
    return cache / f"{name}-{label}" / str(n)


def _with_p(measured: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each scorer's metrics with the paired t-test of its ranked hits against `learned`'s."""
    base = measured["learned"].pop("_hits")
    for values in measured.values():
        hits = values.pop("_hits", base)
        values["p_vs_learned"] = (
            None if hits == base else round(float(stats.ttest_rel(hits, base).pvalue), 4)
        )
    return measured


def _print(title: str, measured: dict[str, dict[str, Any]]) -> None:
    table = Table(
        Column("scorer", min_width=16, no_wrap=True),
        "ranked hit@1",
        "hit@1",
        "abst. precision",
        "abst. recall",
        "false abst.",
        "p vs learned",
        title=title,
    )
    for label, v in measured.items():
        table.add_row(
            label,
            f"{v['ranked_hit@1']:.3f}",
            f"{v['hit@1']:.3f}",
            f"{v['abstention_precision']:.3f}",
            f"{v['abstention_recall']:.3f}",
            f"{v['false_abstention_rate']:.3f}",
            "" if v["p_vs_learned"] is None else f"{v['p_vs_learned']:.4f}",
        )
    Console().print(table)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "verbatim-quotes")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "results" / "quote_ranker.json"
    )
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    cross_encoder = Settings().resolved_models_dir / CROSS_ENCODER_FOLDER
    for name, filename in SETS.items():
        if not (SHARED / filename).exists():
            console.print(f"skipping {name}: {SHARED / filename} is absent")
            continue
        # one encoder's questions (a few Japanese questions are detected as another language)
        model_id, train = read_by_one_encoder(
            _features(name, "train", [TRAIN_SLICE, *SMALL_TRAIN_SLICES], args.cache)
        )
        trained = scorers(train)
        results[name] = {}
        for label, slices in (("eval", [EVAL_SLICE]), ("small-eval", SMALL_EVAL_SLICES[name])):
            test = [q for q in _features(name, label, slices, args.cache) if q.model_id == model_id]
            measured = {scorer: measure(s, train, test) for scorer, s in trained.items()}
            if name == "squad" and label == "eval" and cross_encoder.exists():
                measured |= cross_encoder_runs(name, test, args.cache, cross_encoder)
            results[name][label] = _with_p(measured)
            _print(f"{name}: {label}, {len(test)} questions", measured)
    write_results(results, args.out)


if __name__ == "__main__":
    main()
