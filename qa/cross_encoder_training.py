"""Fine-tuning the quote cross-encoder (`VERBATIM_QUOTE_SCORER=cross-encoder`).

    python -m qa.training --cross-encoder

1. A slice of SQuAD's training part that the linear ranker never saw (`CROSS_ENCODER_SLICE`,
   other articles) gives (question, quote) pairs: for each question, the best quote holding the
   answer by the hand mix as the positive and the best three that do not as hard negatives.
2. The packaged MiniLM weights get a one-logit head and are fine-tuned on those pairs with
   sentence-transformers' `CrossEncoderTrainer` (binary cross-entropy), on the CPU.
3. On a sample of the ranker's own training slice, the cross-encoder reads each question's
   best `DEPTH` quotes; how its logit joins the learned score (a weight chosen for ranked
   hit@1), the confidence model with the logit as one more input, and its threshold are
   fitted there.

Everything is written to `$VERBATIM_HOME/models/quote-cross-encoder/`.
"""

from __future__ import annotations

import json
import random
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import numpy.typing as npt

from embeddings.encoder import DEFAULT_MODEL, EncoderConfig, model_location
from qa.engine import Verbatim
from qa.evaluation.docqa import DocQASlice
from qa.quote_scorer import (
    COMBINATION_FILE,
    CROSS_ENCODER_FOLDER,
    FEATURES,
    CrossEncoderCombination,
    LearnedQuoteScorer,
    LinearQuoteModel,
    cross_encoder_logits,
)
from qa.settings import Settings
from qa.training import (
    MAX_FALSE_ABSTENTION,
    TRAIN_SLICE,
    QuestionFeatures,
    calibrate_threshold,
    collect_set,
    quote_texts,
    read_by_one_encoder,
)

# Sized for about an hour on two cores, most of it fine-tuning (~3 s a batch of 32)
CROSS_ENCODER_SLICE = DocQASlice(
    part="train", skip=80, articles=60, withheld=0, questions=2000, unanswerable=0
)
DEPTH = 10  # the learned ranker's best quotes the cross-encoder reads
# Questions of the ranker's training slice the combination is fitted on (a fixed sample: each
# costs the cross-encoder DEPTH pairs, ~0.3 s on two busy cores)
COMBINATION_QUESTIONS = 1200
NEGATIVES = 3
EPOCHS = 1
BATCH = 32
MAX_LENGTH = 128  # tokens: a question and a quote of one or two sentences fit
# A question as the cross-encoder read it: its learned ranks, logits and rows, best DEPTH
_Read = tuple[
    QuestionFeatures, npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.intp]
]


def training_pairs(
    engine: Verbatim, data: list[QuestionFeatures]
) -> tuple[list[str], list[str], list[float]]:
    """(questions, quotes, labels): per answerable question one positive and hard negatives."""
    similarity, coverage = FEATURES.index("similarity"), FEATURES.index("coverage")
    questions, quotes, labels = [], [], []
    for q in data:
        if q.unanswerable or not q.holds_answer.any():
            continue
        hand = 0.7 * q.features[:, similarity] + 0.3 * q.features[:, coverage]
        order = np.argsort(-hand, kind="stable")
        positive = [int(i) for i in order if q.holds_answer[i]][:1]
        negatives = [int(i) for i in order if not q.holds_answer[i]][:NEGATIVES]
        rows = positive + negatives
        questions.extend([q.question] * len(rows))
        quotes.extend(quote_texts(engine, q, rows))
        labels.extend([1.0] * len(positive) + [0.0] * len(negatives))
    return questions, quotes, labels


def fine_tune(pairs: tuple[list[str], list[str], list[float]], out: Path) -> None:
    """The packaged MiniLM with a one-logit head, trained on the pairs, saved to `out`."""
    from datasets import Dataset
    from sentence_transformers.cross_encoder import (
        CrossEncoder,
        CrossEncoderTrainer,
        CrossEncoderTrainingArguments,
    )
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss

    base = model_location(EncoderConfig(model=DEFAULT_MODEL))
    model = CrossEncoder(base, num_labels=1, max_length=MAX_LENGTH, device="cpu")
    questions, quotes, labels = pairs
    dataset = Dataset.from_dict({"question": questions, "quote": quotes, "label": labels})
    with tempfile.TemporaryDirectory() as scratch:
        arguments = CrossEncoderTrainingArguments(
            output_dir=scratch,
            num_train_epochs=EPOCHS,
            per_device_train_batch_size=BATCH,
            learning_rate=5e-5,
            warmup_steps=0.1,  # a share of the steps
            save_strategy="no",
            logging_steps=50,
            report_to="none",
            use_cpu=True,
            seed=13,
        )
        trainer = CrossEncoderTrainer(
            model=model,
            args=arguments,
            train_dataset=dataset.shuffle(seed=13),
            loss=BinaryCrossEntropyLoss(model),
        )
        trainer.train()
    model.save_pretrained(str(out))


def fit_combination(
    learned: LinearQuoteModel,
    model_id: str,
    engine: Verbatim,
    data: list[QuestionFeatures],
    folder: Path,
) -> CrossEncoderCombination:
    """How the cross-encoder's logit joins `learned`, fitted on `data` (its training slice)."""
    from sklearn.linear_model import LogisticRegression

    predict = cross_encoder_logits(folder)
    read: list[_Read] = []
    for n, q in enumerate(data, 1):
        if not len(q.features):
            continue
        ranks = learned.rank(q.features)
        top = np.argsort(-ranks, kind="stable")[:DEPTH]
        logits = predict([(q.question, t) for t in quote_texts(engine, q, top.tolist())])
        read.append((q, ranks[top], logits, top))
        if n % 500 == 0:
            print(f"  read {n}/{len(data)} questions", file=sys.stderr)
    weight = max(np.linspace(0.0, 3.0, 31), key=lambda w: _ranked_hits(read, float(w)))
    tops = []
    for q, ranks, logits, top in read:
        best = int(np.argmax(ranks + weight * logits))
        row = top[best]
        tops.append(
            np.concatenate(
                [learned.standardised(q.features[row : row + 1])[0], [ranks[best], logits[best]]]
            )
        )
    regression = LogisticRegression(max_iter=2000)
    regression.fit(np.vstack(tops), [not q.unanswerable for q, *_ in read])
    coef = regression.coef_[0]
    combination = CrossEncoderCombination(
        model_ids=(model_id,),
        depth=DEPTH,
        logit_weight=float(weight),
        confidence_weights=coef[:-2],
        confidence_rank_weight=float(coef[-2]),
        confidence_logit_weight=float(coef[-1]),
        confidence_bias=float(regression.intercept_[0]),
        threshold=0.0,
    )
    sure = regression.predict_proba(np.vstack(tops))[:, 1]
    scored = [(float(p), q.unanswerable, False) for p, (q, *_) in zip(sure, read, strict=True)]
    threshold = calibrate_threshold(scored, MAX_FALSE_ABSTENTION)
    return CrossEncoderCombination(**{**combination.__dict__, "threshold": threshold})


def _ranked_hits(read: list[_Read], weight: float) -> int:
    return sum(
        int(q.holds_answer[top[int(np.argmax(ranks + weight * logits))]])
        for q, ranks, logits, top in read
        if not q.unanswerable
    )


def build_cross_encoder(source: Path, work: Path, settings: Settings) -> Path:
    """Steps 1-3 of the module's description; returns the folder written."""
    folder = settings.resolved_models_dir / CROSS_ENCODER_FOLDER
    staging = folder.with_name(folder.name + ".new")
    shutil.rmtree(staging, ignore_errors=True)
    print("cross-encoder: collecting training pairs", file=sys.stderr)
    data, engine = collect_set(source, work / "cross-encoder", CROSS_ENCODER_SLICE, settings)
    pairs = training_pairs(engine, data)
    print(f"cross-encoder: fine-tuning on {len(pairs[0])} pairs", file=sys.stderr)
    fine_tune(pairs, staging)
    print("cross-encoder: fitting how it joins the learned ranker", file=sys.stderr)
    collected, ranker_engine = collect_set(source, work / "ranker", TRAIN_SLICE, settings)
    model_id, ranker_data = read_by_one_encoder(collected)
    ranker_data = random.Random(13).sample(
        ranker_data, min(COMBINATION_QUESTIONS, len(ranker_data))
    )
    learned = LearnedQuoteScorer.load().model(model_id)
    combination = fit_combination(learned, model_id, ranker_engine, ranker_data, staging)
    (staging / COMBINATION_FILE).write_text(
        json.dumps(combination.to_dict(), indent=1) + "\n", encoding="utf-8"
    )
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)  # a failed run leaves the previous cross-encoder in place
    return folder
