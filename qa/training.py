"""Training the quote ranker (`qa/models/quote_ranker.json`) from public extractive QA sets.

    python -m qa.training                      # SQuAD v1.1 and JaQuAD train from ../shared
    python -m qa.training --out my_ranker.json # then VERBATIM_QUOTE_MODEL=my_ranker.json

Only the training part of each set is read (`qa.evaluation.docqa`: article-disjoint from the
evaluation part that is reported). For each question the real pipeline retrieves candidates
and lists every possible quote with its features (`Verbatim.quote_features`); a quote holding
a gold answer string is a positive. Per encoder whose cosines the features carry and language
(`TRAINED`: the model each set's documents choose, MiniLM for SQuAD and multilingual-e5-small
for JaQuAD, and e5 for SQuAD's English too), `fit` trains
(1) a ranker, a conditional logit that puts a quote holding the answer first among a question's
quotes, and (2) a confidence model, a logistic regression telling the best quotes of answerable
questions from those of questions whose article was withheld from the collection, whose
threshold is calibrated on those same training questions. The questions come from one big
collection and from 25 small ones (`small_slices`: a few short documents, unanswerable questions
about their cut-away paragraphs too), so the confidence model has seen what a question the
collection barely mentions looks like in a folder of a few documents as well as in a big one.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

from embeddings.e5 import MODEL_NAME as E5_MODEL_NAME
from qa.engine import Verbatim
from qa.evaluation.docqa import DocQASlice, load_docqa, small_slices
from qa.evaluation.questions import Question
from qa.quote_scorer import (
    DEFAULT_MODEL_FILE,
    FEATURES,
    LearnedQuoteScorer,
    LinearQuoteModel,
)
from qa.settings import Settings

SHARED = Path(__file__).resolve().parents[2] / "shared" / "eval" / "qa-train"
SETS = {"squad": "squad-v1.1-train.json.gz", "jaquad": "jaquad-train.json.gz"}
# One model per (set, encoder): None is the encoder the documents choose (MiniLM for SQuAD's
# English, multilingual-e5-small for JaQuAD); "@en" keys e5's model for English questions,
# whose features differ from Japanese ones (keywords, lengths) beyond one threshold's reach.
TRAINED = [("squad", None, ""), ("jaquad", None, ""), ("squad", E5_MODEL_NAME, "@en")]
TRAIN_SLICE = DocQASlice(part="train", articles=60, withheld=20, questions=3000, unanswerable=1000)
# And 25 small collections of a few short documents after it: a team's folder, whose keyword
# statistics (how much of a question the collection never mentions) a big collection lacks
SMALL_TRAIN_SLICES = small_slices("train", 25, skip=TRAIN_SLICE.articles + TRAIN_SLICE.withheld)
Scorer = Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float64]]
Confidence = Callable[[npt.NDArray[np.float32], npt.NDArray[np.float64]], npt.NDArray[np.float64]]
# Abstention: the threshold abstains on as many unanswerable questions as it can while
# abstaining on at most this share of the answerable ones (2%: abstention precision 0.9 at a
# recall of 0.7 on the training part, a wrong quote being worse than none)
MAX_FALSE_ABSTENTION = 0.02


@dataclass
class QuestionFeatures:
    """One question's possible quotes: features, labels, and what they were scored with."""

    question_id: str
    question: str
    unanswerable: bool
    model_id: str
    features: npt.NDArray[np.float32]
    holds_answer: npt.NDArray[np.int8]  # 1: the quote holds a gold answer
    spans: list[tuple[str, int, int]]  # each quote's (doc_id, start, end)
    lang: str = ""  # the question's, as detected


def collect(
    engine: Verbatim, questions: list[Question], progress: bool = True
) -> list[QuestionFeatures]:
    """Features and labels of every possible quote of every question."""
    out = []
    for n, question in enumerate(questions, 1):
        query, windows, features = engine.quote_features(question.question)
        spans = [window.span for window in windows]
        holds = [
            any(
                answer in engine.index.entries[doc_id].document.text[start:end]
                for answer in question.answers
            )
            for doc_id, start, end in spans
        ]
        out.append(
            QuestionFeatures(
                question_id=question.id,
                question=question.question,
                unanswerable=question.unanswerable,
                model_id=query.model_id,
                features=features,
                holds_answer=np.asarray(holds, dtype=np.int8),
                spans=spans,
                lang=query.lang,
            )
        )
        if progress and n % 250 == 0:
            print(f"  {n}/{len(questions)} questions", file=sys.stderr)
    return out


def collect_set(
    source: Path, home: Path, slice_: DocQASlice, settings: Settings | None = None
) -> tuple[list[QuestionFeatures], Verbatim]:
    """Index the slice's collection under `home` and collect its questions' features; the
    engine over that index comes back too (the quotes' texts are in its documents)."""
    base = settings or Settings()
    run_settings = base.model_copy(update={"home": home, "index_dir": None, "quote_scorer": "hand"})
    if base.models_dir is None:
        run_settings = run_settings.model_copy(update={"models_dir": base.resolved_models_dir})
    questions, corpus = load_docqa(source, home / "docs", slice_)
    engine = Verbatim(run_settings)
    engine.build_index(corpus)
    return collect(engine, questions), engine


def read_by_one_encoder(data: list[QuestionFeatures]) -> tuple[str, list[QuestionFeatures]]:
    """The encoder most of a set's questions were read by, and those questions: a model's
    weights belong to the scale of one encoder's cosines."""
    counts = Counter(q.model_id for q in data)
    model_id = counts.most_common(1)[0][0]
    return model_id, [q for q in data if q.model_id == model_id]


def quote_texts(engine: Verbatim, question: QuestionFeatures, rows: list[int]) -> list[str]:
    """The texts of some of a question's quotes."""
    out = []
    for row in rows:
        doc_id, start, end = question.spans[row]
        out.append(engine.index.entries[doc_id].document.text[start:end])
    return out


def fit(
    data: list[QuestionFeatures],
    features: tuple[str, ...] = FEATURES,
    trained_on: str = "",
    max_false_abstention: float = MAX_FALSE_ABSTENTION,
) -> LinearQuoteModel:
    """The ranker (a conditional logit over each answerable question's quotes), then the
    confidence model (a logistic regression over the best quotes of answerable and
    unanswerable questions), then its threshold."""
    from sklearn.linear_model import LogisticRegression

    columns = [FEATURES.index(name) for name in features]
    usable = [q for q in data if len(q.features)]
    x = np.vstack([q.features[:, columns] for q in usable]).astype(np.float64)
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0
    answered = [q for q in usable if not q.unanswerable and q.holds_answer.any()]
    weights = _conditional_logit(
        [(q.features[:, columns] - mean) / scale for q in answered],
        [q.holds_answer.astype(bool) for q in answered],
    )
    model = LinearQuoteModel(
        features=features,
        mean=mean,
        scale=scale,
        weights=weights,
        confidence_weights=np.zeros(len(features)),
        confidence_rank_weight=0.0,
        confidence_bias=0.0,
        threshold=0.0,
        trained_on=trained_on,
    )
    tops = []
    for q in usable:
        ranks = model.rank(q.features)
        best = int(np.argmax(ranks))
        tops.append(np.append(model.standardised(q.features[best : best + 1])[0], ranks[best]))
    regression = LogisticRegression(max_iter=2000)
    regression.fit(np.vstack(tops), [not q.unanswerable for q in usable])
    model = replace(
        model,
        confidence_weights=regression.coef_[0][:-1],
        confidence_rank_weight=float(regression.coef_[0][-1]),
        confidence_bias=float(regression.intercept_[0]),
    )
    tops_scored = top_scores(model.rank, model.confidence, data)
    return replace(model, threshold=calibrate_threshold(tops_scored, max_false_abstention))


def _conditional_logit(
    questions: list[npt.NDArray[np.float64]], positives: list[npt.NDArray[np.bool_]]
) -> npt.NDArray[np.float64]:
    """Weights maximising, over the questions, the log-probability of a softmax over each
    question's quotes landing on one holding the answer (L2-regularised; L-BFGS)."""
    from scipy.optimize import minimize

    l2 = 1e-3

    def loss(w: npt.NDArray[np.float64]) -> tuple[float, npt.NDArray[np.float64]]:
        total, gradient = 0.0, np.zeros_like(w)
        for x, positive in zip(questions, positives, strict=True):
            scores = x @ w
            e = np.exp(scores - scores.max())
            p_all = e / e.sum()
            p_pos = e[positive] / e[positive].sum()
            total -= float(np.log(e[positive].sum()) - np.log(e.sum()))
            gradient -= x[positive].T @ p_pos - x.T @ p_all
        n = len(questions)
        return total / n + l2 * float(w @ w), gradient / n + 2 * l2 * w

    start = np.zeros(questions[0].shape[1])
    result = minimize(loss, start, jac=True, method="L-BFGS-B")
    return result.x  # type: ignore[no-any-return]


def top_scores(
    rank: Scorer, confidence: Confidence, data: list[QuestionFeatures]
) -> list[tuple[float, bool, bool]]:
    """Per question: (best quote's confidence, unanswerable, the best quote holds an answer)."""
    out = []
    for q in data:
        if not len(q.features):
            out.append((-1.0, q.unanswerable, False))
            continue
        ranks = rank(q.features)
        best = int(np.argmax(ranks))
        sure = confidence(q.features[best : best + 1], ranks[best : best + 1])
        out.append((float(sure[0]), q.unanswerable, bool(q.holds_answer[best])))
    return out


def calibrate_threshold(tops: list[tuple[float, bool, bool]], max_false: float) -> float:
    """The threshold abstaining on the most unanswerable questions while abstaining on at
    most `max_false` of the answerable ones (midway to the next score, for a margin)."""
    answerable = sorted(s for s, unanswerable, _ in tops if not unanswerable)
    unanswerable = sorted(s for s, unanswerable, _ in tops if unanswerable)
    ceiling = answerable[int(max_false * len(answerable))]
    catchable = [s for s in unanswerable if s < ceiling]
    if not catchable:
        return answerable[0] - 1e-4
    highest = max(catchable)
    above = min(s for s in answerable + unanswerable if s > highest)
    return (highest + above) / 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED, help="folder of the train sets")
    parser.add_argument("--out", type=Path, default=DEFAULT_MODEL_FILE)
    parser.add_argument(
        "--work", type=Path, default=None, help="indexes and features (default: $VERBATIM_HOME)"
    )
    parser.add_argument(
        "--cross-encoder",
        action="store_true",
        help="instead: fine-tune the quote cross-encoder from the packaged MiniLM and fit how it"
        " joins the shipped ranker (written under $VERBATIM_HOME/models; about an hour here)",
    )
    args = parser.parse_args(argv)
    missing = [name for name in SETS.values() if not (args.data / name).exists()]
    if missing:
        print(f"error: {args.data} lacks {', '.join(missing)}", file=sys.stderr)
        return 1
    settings = Settings()
    work = args.work or settings.home / "training"
    if args.cross_encoder:
        from qa.cross_encoder_training import build_cross_encoder

        folder = build_cross_encoder(args.data / SETS["squad"], work / "squad", settings)
        print(f"wrote {folder}", file=sys.stderr)
        return 0
    models: dict[str, LinearQuoteModel] = {}
    fallback = ""
    for name, model, suffix in TRAINED:
        filename = SETS[name]
        print(f"{name}{suffix}: indexing its training slice, collecting features", file=sys.stderr)
        configured = settings.model_copy(update={"model": model}) if model else settings
        home = work / (name if model is None else f"{name}-{model}")
        data, _ = collect_set(args.data / filename, home, TRAIN_SLICE, configured)
        for n, small in enumerate(SMALL_TRAIN_SLICES):
            data += collect_set(args.data / filename, home / f"small-{n}", small, configured)[0]
        model_id, kept = read_by_one_encoder(data)
        if len(kept) < len(data):
            print(
                f"  {len(data) - len(kept)} of {len(data)} questions were read by another encoder"
                " (their language detected otherwise) and are left out",
                file=sys.stderr,
            )
        described = (
            f"{filename} train part: {_describe(TRAIN_SLICE)}; and {len(SMALL_TRAIN_SLICES)}"
            f" small collections of {_describe(SMALL_TRAIN_SLICES[0])}"
        )
        models[model_id + suffix] = fit(kept, trained_on=described)
        fallback = fallback or model_id
        trained = {model_id + suffix: models[model_id + suffix].to_dict()}
        print(json.dumps(trained, indent=1), file=sys.stderr)
    LearnedQuoteScorer(models, fallback).save(args.out)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


def _describe(slice_: DocQASlice) -> str:
    indexed = f"{slice_.articles} articles indexed"
    if slice_.paragraphs:
        indexed += f" (their first {slice_.paragraphs} paragraphs)"
    return (
        f"{indexed}, {slice_.withheld} withheld; up to {slice_.questions} answerable and"
        f" {slice_.unanswerable} unanswerable questions"
    )


if __name__ == "__main__":
    sys.exit(main())
