"""The quote scorers: the shipped learned ranker, its training, and its failure modes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bots.cli import app
from embeddings.e5 import MODEL_ID as E5_MODEL_ID
from embeddings.encoder import DEFAULT_MODEL
from qa.quote_scorer import (
    DEFAULT_MODEL_FILE,
    FEATURES,
    LearnedQuoteScorer,
    QuoteModelError,
    make_quote_scorer,
)
from qa.training import QuestionFeatures, fit


def test_the_shipped_ranker_has_a_model_for_each_packaged_reading_path() -> None:
    scorer = LearnedQuoteScorer.load()
    assert {DEFAULT_MODEL, E5_MODEL_ID} <= set(scorer.models)
    for model in scorer.models.values():
        assert set(model.features) <= set(FEATURES)
        assert "train part" in model.trained_on  # never the reserved dev/validation splits
        assert 0.0 < model.threshold < 1.0
    # an encoder it was not trained for is scored by the fallback's model, not refused
    assert scorer.threshold("some/other-model", False) == scorer.threshold(scorer.fallback, False)


def _question(rng: np.random.Generator, n: int, answerable: bool, name: str) -> QuestionFeatures:
    """Random quotes where coverage decides: the quote holding the answer covers the most."""
    features = rng.normal(0.0, 1.0, (n, len(FEATURES))).astype(np.float32)
    coverage = FEATURES.index("coverage")
    features[:, coverage] = rng.uniform(0.0, 0.5, n)
    holds = np.zeros(n, dtype=np.int8)
    if answerable:
        holds[0] = 1
        features[0, coverage] = rng.uniform(0.6, 1.0)
    return QuestionFeatures(name, name, not answerable, "m", features, holds, [("d", 0, 1)] * n)


def test_fit_learns_what_puts_the_answer_first_and_when_to_abstain() -> None:
    rng = np.random.default_rng(7)
    train = [_question(rng, 30, i % 4 != 0, f"t{i}") for i in range(400)]
    test = [_question(rng, 30, i % 4 != 0, f"e{i}") for i in range(200)]
    model = fit(train, trained_on="synthetic")
    answerable = [q for q in test if not q.unanswerable]
    firsts = [int(np.argmax(model.rank(q.features))) == 0 for q in answerable]
    assert np.mean(firsts) > 0.95
    top = {
        q.question_id: float(model.confidence(q.features, model.rank(q.features)).max())
        for q in test
    }
    abstained = [q for q in test if top[q.question_id] < model.threshold]
    assert sum(q.unanswerable for q in abstained) / len(abstained) > 0.9
    assert sum(q.unanswerable for q in abstained) / sum(q.unanswerable for q in test) > 0.9


def test_a_ranker_file_that_cannot_be_used_says_what_to_do(tmp_path: Path) -> None:
    broken = tmp_path / "ranker.json"
    broken.write_text("{not json", encoding="utf-8")
    with pytest.raises(QuoteModelError, match=r"python -m qa\.training"):
        make_quote_scorer("learned", broken)
    shipped = json.loads(DEFAULT_MODEL_FILE.read_text(encoding="utf-8"))
    first = next(iter(shipped["models"].values()))
    first["features"] = [*first["features"][:-1], "a_feature_from_the_future"]
    broken.write_text(json.dumps(shipped), encoding="utf-8")
    with pytest.raises(QuoteModelError, match="a_feature_from_the_future"):
        make_quote_scorer("learned", broken)
    assert make_quote_scorer("hand", broken).threshold(DEFAULT_MODEL, False) == 0.39  # not read


def test_the_cli_reports_a_broken_ranker_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "ranker.json"
    broken.write_text("[]", encoding="utf-8")
    monkeypatch.setenv("VERBATIM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("VERBATIM_QUOTE_MODEL", str(broken))
    result = CliRunner().invoke(app, ["ask", "When was the declaration issued?"])
    assert result.exit_code == 1
    assert "VERBATIM_QUOTE_SCORER=hand" in result.output
    assert "Traceback" not in result.output
