"""Scoring possible quotes from the features quote selection computes (`qa.quotes.FEATURES`).

Two scorers, one interface (`QuoteScorer`):

- `LearnedQuoteScorer` (default): per encoder, a linear ranker and a linear confidence model
  (`LinearQuoteModel`), trained by `python -m qa.training` on the training part of public
  extractive QA sets (SQuAD v1.1 for English, JaQuAD for Japanese questions read by the
  cross-lingual reader). Its confidence is the probability that the question is answerable from
  the quote; its threshold was calibrated on public unanswerable questions (questions of
  articles withheld from the collection). The weights ship in `qa/models/quote_ranker.json`:
  two dot products at question time, no model to load.
- `HandQuoteScorer`: the earlier hand-weighted mix of similarity and keyword coverage, kept for
  comparison (`VERBATIM_QUOTE_SCORER=hand`); its confidence is its score.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from embeddings.e5 import MODEL_ID as E5_MODEL_ID
from embeddings.encoder import DEFAULT_MODEL
from embeddings.use import MODEL_ID as USE_MODEL_ID

ScorerKind = Literal["learned", "hand", "cross-encoder"]
DEFAULT_MODEL_FILE = Path(__file__).parent / "models" / "quote_ranker.json"
CROSS_ENCODER_FOLDER = "quote-cross-encoder"  # under the models folder
COMBINATION_FILE = "combination.json"  # in that folder: how its logit joins the learned scores
Features = npt.NDArray[np.float32]
Scores = npt.NDArray[np.float64]

# What quote selection computes for each possible quote (one column each, in this order)
FEATURES: tuple[str, ...] = (
    "similarity",  # cosine of the question and the quote's summed sentence vectors
    "coverage",  # share of the question's IDF-weighted keywords the quote holds
    "matched_idf",  # log(1 + IDF of the question's keywords the quote holds)
    "similarity_gap",  # similarity minus the best similarity of any quote for this question
    "coverage_gap",  # coverage minus the best coverage
    "sentences",  # sentences in the quote (1-3)
    "words",  # log(1 + words in the quote)
    "passage_rank",  # log(1 + the rank of the passage it sits in), 0 for the first
    "passage_cosine",  # cosine of the question and that passage
    "passage_bm25",  # the passage's BM25 score over the best candidate's
    "passage_bm25_raw",  # log(1 + the passage's BM25 score): does anything match at all?
    "question_idf",  # log(1 + IDF of all the question's keywords): how much it names
    "position",  # log(1 + the quote's first sentence's position in its document)
    "amount_stated",  # the question asks for an amount and the quote states a number
    "amount_missing",  # the question asks for an amount and the quote states none
    "date_stated",  # the question asks when and the quote holds a date or a year
    "date_missing",  # the question asks when and the quote holds none
    "names_asked",  # the question names something: a capitalised name or a year
    "names_missing",  # share of those names the quote does not hold
    "names_missing_document",  # share of them the quote's whole document does not hold
    "question_unseen",  # share of the question's keyword IDF the collection never holds
)


@dataclass(frozen=True)
class QuoteCandidates:
    """A question's possible quotes, as a scorer sees them."""

    question: str
    model_id: str  # the encoder whose vectors the similarity features come from
    lang: str  # the question's language
    cross_lingual: bool  # the documents are in another language than the question
    features: Features  # one row per quote, columns as `FEATURES`
    texts: Callable[[list[int]], list[str]]  # the quotes' texts, by row (read when needed)
    # What one scoring step computed for a later one, for this question only (so a scorer
    # shared by threads keeps no per-question state of its own)
    memo: dict[str, Any] = field(default_factory=dict)


class QuoteScorer(Protocol):
    def rank(self, quotes: QuoteCandidates) -> Scores:
        """One ranking score per quote, higher is better."""
        ...

    def confidence(self, quotes: QuoteCandidates, ranks: Scores) -> Scores:
        """How sure the scorer is that each quote answers the question: what the answer
        threshold is compared with, and the `score` a quote shows."""
        ...

    def threshold(self, model_id: str, cross_lingual: bool, lang: str = "") -> float:
        """The confidence a best quote must reach to be an answer, for this encoder's quotes
        and a question in `lang` (of documents in another language than the question's, when
        `cross_lingual`)."""
        ...


class QuoteModelError(ValueError):
    """A quote ranker file that cannot be used; the message says why and what to do."""


@dataclass(frozen=True)
class LinearQuoteModel:
    """Two linear models over the standardised `features` it was trained on: one ranks a
    question's quotes (a conditional logit: trained to put a quote holding the answer first),
    one turns a quote's features and ranking score into the probability that the question is
    answerable from it (logistic regression on best quotes of answerable and unanswerable
    questions), compared with `threshold`."""

    features: tuple[str, ...]
    mean: npt.NDArray[np.float64]
    scale: npt.NDArray[np.float64]
    weights: npt.NDArray[np.float64]  # ranking
    confidence_weights: npt.NDArray[np.float64]
    confidence_rank_weight: float  # the ranking score's weight in the confidence
    confidence_bias: float
    threshold: float
    trained_on: str = ""  # what it learned from, for docs and reports

    def standardised(self, features: Features) -> npt.NDArray[np.float64]:
        columns = [FEATURES.index(name) for name in self.features]
        return (features[:, columns] - self.mean) / self.scale

    def rank(self, features: Features) -> Scores:
        return self.standardised(features) @ self.weights

    def confidence(self, features: Features, ranks: Scores) -> Scores:
        z = (
            self.standardised(features) @ self.confidence_weights
            + self.confidence_rank_weight * ranks
            + self.confidence_bias
        )
        return 1.0 / (1.0 + np.exp(-z))

    def to_dict(self) -> dict[str, Any]:
        return {
            "features": list(self.features),
            "mean": self.mean.round(6).tolist(),
            "scale": self.scale.round(6).tolist(),
            "weights": self.weights.round(6).tolist(),
            "confidence_weights": self.confidence_weights.round(6).tolist(),
            "confidence_rank_weight": round(self.confidence_rank_weight, 6),
            "confidence_bias": round(self.confidence_bias, 6),
            "threshold": round(self.threshold, 4),
            "trained_on": self.trained_on,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LinearQuoteModel:
        features = tuple(str(f) for f in data["features"])
        unknown = set(features) - set(FEATURES)
        if unknown:
            raise QuoteModelError(f"features this version does not compute: {sorted(unknown)}")
        vectors = {
            key: np.asarray(data[key], dtype=np.float64)
            for key in ("mean", "scale", "weights", "confidence_weights")
        }
        if any(len(v) != len(features) for v in vectors.values()):
            raise QuoteModelError("features, mean, scale and weights differ in length")
        return cls(
            features=features,
            **vectors,
            confidence_rank_weight=float(data["confidence_rank_weight"]),
            confidence_bias=float(data["confidence_bias"]),
            threshold=float(data["threshold"]),
            trained_on=str(data.get("trained_on", "")),
        )


class LearnedQuoteScorer:
    """A `LinearQuoteModel` per encoder (its cosines have their own scale); encoders it was not
    trained for use the `fallback` encoder's model. Questions about documents in another
    language are scored by the hand mix: every public training question shares its article's
    language, so the models learned to lean on shared keywords such a question cannot have
    (the seed set's Japanese questions about English documents all abstained)."""

    def __init__(self, models: dict[str, LinearQuoteModel], fallback: str) -> None:
        if fallback not in models:
            raise QuoteModelError(f"the fallback encoder {fallback!r} has no model")
        self.models = models
        self.fallback = fallback
        self.cross_lingual = hand_scorer()

    def model(self, model_id: str, lang: str = "") -> LinearQuoteModel:
        """The encoder's model for questions in `lang` (trained on that language's questions,
        keyed `MODEL@LANG`), else the encoder's, else the fallback encoder's."""
        return (
            self.models.get(f"{model_id}@{lang}")
            or self.models.get(model_id)
            or self.models[self.fallback]
        )

    def rank(self, quotes: QuoteCandidates) -> Scores:
        if quotes.cross_lingual:
            return self.cross_lingual.rank(quotes)
        return self.model(quotes.model_id, quotes.lang).rank(quotes.features)

    def confidence(self, quotes: QuoteCandidates, ranks: Scores) -> Scores:
        if quotes.cross_lingual:
            return self.cross_lingual.confidence(quotes, ranks)
        return self.model(quotes.model_id, quotes.lang).confidence(quotes.features, ranks)

    def threshold(self, model_id: str, cross_lingual: bool, lang: str = "") -> float:
        if cross_lingual:
            return self.cross_lingual.threshold(model_id, cross_lingual)
        return self.model(model_id, lang).threshold

    @classmethod
    def load(cls, path: Path = DEFAULT_MODEL_FILE) -> LearnedQuoteScorer:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            models = {k: LinearQuoteModel.from_dict(v) for k, v in data["models"].items()}
            return cls(models, str(data["fallback"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise QuoteModelError(
                f"cannot load the quote ranker {path}: {exc}. Rebuild it with"
                " `python -m qa.training`, or set VERBATIM_QUOTE_SCORER=hand"
            ) from exc

    def save(self, path: Path) -> None:
        data = {
            "version": 1,
            "fallback": self.fallback,
            "models": {k: m.to_dict() for k, m in sorted(self.models.items())},
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


# The hand scorer's thresholds, chosen by `verbatim eval eval/seed_questions.jsonl --calibrate`
# (false abstentions <= 5%) for the packaged models. Quote scores differ in scale between
# models, so a threshold belongs to its model.
HAND_THRESHOLDS = {
    DEFAULT_MODEL: 0.39,  # English questions (the model reads English only)
    USE_MODEL_ID: 0.115,  # English and Japanese questions
    E5_MODEL_ID: 0.545,  # Japanese questions, read by the cross-lingual reader
}
HAND_UNCALIBRATED_THRESHOLD = 0.45  # other models: calibrate on your questions


def make_quote_scorer(
    kind: ScorerKind,
    model_file: Path | None = None,
    keyword_weight: float = 0.3,
    models_dir: Path | None = None,
) -> QuoteScorer:
    """The configured scorer; `model_file` replaces the packaged learned model, and the
    cross-encoder is read from `models_dir` (where `python -m qa.training --cross-encoder`
    writes it)."""
    if kind == "hand":
        return hand_scorer(keyword_weight)
    learned = LearnedQuoteScorer.load(model_file or DEFAULT_MODEL_FILE)
    if kind == "cross-encoder":
        folder = (models_dir or Path(".")) / CROSS_ENCODER_FOLDER
        return CrossEncoderQuoteScorer.load(learned, folder)
    return learned


def hand_scorer(keyword_weight: float = 0.3) -> HandQuoteScorer:
    return HandQuoteScorer(keyword_weight, HAND_THRESHOLDS, HAND_UNCALIBRATED_THRESHOLD)


@dataclass(frozen=True)
class HandQuoteScorer:
    """Similarity and IDF-weighted keyword coverage, mixed by hand-chosen weights; thresholds
    from `verbatim eval --calibrate` on the seed set, per packaged encoder."""

    keyword_weight: float
    thresholds: dict[str, float]
    default_threshold: float

    def rank(self, quotes: QuoteCandidates) -> Scores:
        similarity = quotes.features[:, FEATURES.index("similarity")].astype(np.float64)
        coverage = quotes.features[:, FEATURES.index("coverage")].astype(np.float64)
        return (1 - self.keyword_weight) * similarity + self.keyword_weight * coverage

    def confidence(self, quotes: QuoteCandidates, ranks: Scores) -> Scores:
        return ranks

    def threshold(self, model_id: str, cross_lingual: bool, lang: str = "") -> float:
        return self.thresholds.get(model_id, self.default_threshold)


@dataclass(frozen=True)
class CrossEncoderCombination:
    """How the cross-encoder's logit joins the learned scores (fitted on the training part)."""

    model_ids: tuple[str, ...]  # encoders whose questions it reads (its vocabulary's language)
    depth: int  # the learned ranker's best quotes it reads
    logit_weight: float  # ranking: learned score + logit_weight x logit
    confidence_weights: npt.NDArray[np.float64]  # over the learned model's standardised features
    confidence_rank_weight: float
    confidence_logit_weight: float
    confidence_bias: float
    threshold: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_ids": list(self.model_ids),
            "depth": self.depth,
            "logit_weight": round(self.logit_weight, 6),
            "confidence_weights": self.confidence_weights.round(6).tolist(),
            "confidence_rank_weight": round(self.confidence_rank_weight, 6),
            "confidence_logit_weight": round(self.confidence_logit_weight, 6),
            "confidence_bias": round(self.confidence_bias, 6),
            "threshold": round(self.threshold, 4),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CrossEncoderCombination:
        return cls(
            model_ids=tuple(str(m) for m in data["model_ids"]),
            depth=int(data["depth"]),
            logit_weight=float(data["logit_weight"]),
            confidence_weights=np.asarray(data["confidence_weights"], dtype=np.float64),
            confidence_rank_weight=float(data["confidence_rank_weight"]),
            confidence_logit_weight=float(data["confidence_logit_weight"]),
            confidence_bias=float(data["confidence_bias"]),
            threshold=float(data["threshold"]),
        )


class CrossEncoderQuoteScorer:
    """The learned scorer's best `depth` quotes read again, question and quote together, by a
    cross-encoder the project fine-tunes from the packaged MiniLM weights. Its logit joins the
    learned ranking score and the confidence model; quotes below `depth` keep their learned
    order after those it read. Questions of other encoders (the cross-lingual reader's) are
    scored by the learned scorer alone: the cross-encoder reads English."""

    def __init__(
        self,
        learned: LearnedQuoteScorer,
        predict: Callable[[list[tuple[str, str]]], Scores],
        combination: CrossEncoderCombination,
    ) -> None:
        self.learned = learned
        self.predict = predict  # logits of (question, quote) pairs
        self.combination = combination

    def _reads(self, model_id: str, cross_lingual: bool) -> bool:
        return model_id in self.combination.model_ids and not cross_lingual

    def rank(self, quotes: QuoteCandidates) -> Scores:
        ranks = self.learned.rank(quotes)
        if not self._reads(quotes.model_id, quotes.cross_lingual):
            return ranks
        top = np.argsort(-ranks, kind="stable")[: self.combination.depth]
        pairs = [(quotes.question, text) for text in quotes.texts(top.tolist())]
        logits = self.predict(pairs)
        quotes.memo["cross_encoder"] = (top, ranks[top], logits)
        combined: Scores = ranks - (ranks.max() - ranks.min() + 1e6)  # below all it read
        combined[top] = ranks[top] + self.combination.logit_weight * logits
        return combined

    def confidence(self, quotes: QuoteCandidates, ranks: Scores) -> Scores:
        if not self._reads(quotes.model_id, quotes.cross_lingual):
            return self.learned.confidence(quotes, ranks)
        top, learned_ranks, logits = quotes.memo["cross_encoder"]
        model = self.learned.model(quotes.model_id, quotes.lang)
        c = self.combination
        z = (
            model.standardised(quotes.features[top]) @ c.confidence_weights
            + c.confidence_rank_weight * learned_ranks
            + c.confidence_logit_weight * logits
            + c.confidence_bias
        )
        sure = np.zeros(len(ranks))
        sure[top] = 1.0 / (1.0 + np.exp(-z))
        return sure

    def threshold(self, model_id: str, cross_lingual: bool, lang: str = "") -> float:
        if self._reads(model_id, cross_lingual):
            return self.combination.threshold
        return self.learned.threshold(model_id, cross_lingual, lang)

    @classmethod
    def load(cls, learned: LearnedQuoteScorer, folder: Path) -> CrossEncoderQuoteScorer:
        try:
            combination = CrossEncoderCombination.from_dict(
                json.loads((folder / COMBINATION_FILE).read_text(encoding="utf-8"))
            )
            predict = cross_encoder_logits(folder)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise QuoteModelError(
                f"cannot load the quote cross-encoder from {folder}: {exc}. Build it with"
                " `python -m qa.training --cross-encoder` (about an hour on two cores), or set"
                " VERBATIM_QUOTE_SCORER=learned"
            ) from exc
        return cls(learned, predict, combination)


def cross_encoder_logits(folder: Path) -> Callable[[list[tuple[str, str]]], Scores]:
    """The logits of a sentence-transformers CrossEncoder saved in `folder`, on the CPU."""
    import torch
    from sentence_transformers import CrossEncoder

    model = CrossEncoder(str(folder), device="cpu", local_files_only=True)

    def predict(pairs: list[tuple[str, str]]) -> Scores:
        if not pairs:
            return np.zeros(0)
        with torch.inference_mode():
            logits = model.predict(
                pairs, batch_size=32, activation_fn=torch.nn.Identity(), convert_to_numpy=True
            )
        return np.asarray(logits, dtype=np.float64).reshape(-1)

    return predict
