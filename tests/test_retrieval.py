"""Retrieval modes over a real index: BM25 (persisted, incremental), hybrid fusion, `explain`,
the rerankers (including a user's own CrossEncoder) and the multilingual encoder."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from corpus.tokenize import KeywordTokenizer
from embeddings.e5 import MODEL_ID as E5_MODEL_ID
from embeddings.encoder import DEFAULT_MODEL
from qa.engine import Verbatim
from qa.filters import Filters
from qa.index import current_version_dir
from qa.retriever import DenseRetriever

from .conftest import seeds_with

TROOPS = "How many U.S. military personnel are forward deployed in the region?"
CODE_DOC = (
    "Exercise notes\n\nThe logistics exercise was recorded under the code KX-7741. "
    "Supplies moved between two depots over three days without incident."
)


class RecordingTokenizer(KeywordTokenizer):
    """Remembers every text it tokenised, to see what an incremental build re-reads."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def tokenize(self, text: str) -> list[str]:
        self.seen.append(text)
        return super().tokenize(text)


def test_bm25_finds_an_exact_identifier(
    tmp_path: Path, make_engine: Callable[..., Verbatim]
) -> None:
    engine = make_engine()
    engine.build_index([seeds_with(tmp_path / "docs", "exercise.txt", CODE_DOC)])
    for mode in ("bm25", "hybrid"):
        result = engine.search("Which exercise used code KX-7741?", 3, mode=mode, explain=True)
        top = result.passages[0]
        assert top.doc_id == "exercise", mode
        assert top.explain is not None and top.explain.bm25_rank == 1
        assert "KX-7741" in top.explain.matched_terms  # as typed, not as indexed


def test_sentence_recall_adds_the_chunks_of_the_nearest_sentences(seed_engine: Verbatim) -> None:
    index = seed_engine.index
    (query,) = seed_engine.read_questions([TROOPS])
    _, nearest = index.sentence_store.search(query.vector.reshape(1, -1), 5, None, None)
    holding = {index.chunk_of_sentence[int(s)].chunk_id for s in nearest[0]}
    alone = DenseRetriever(index).retrieve(query, 1)
    assert len(alone) == 1
    recalled = DenseRetriever(index, sentence_recall=5).retrieve(query, 1)
    assert {c.chunk.chunk_id for c in recalled} == holding | {alone[0].chunk.chunk_id}
    assert len(recalled) > 1
    scores = [c.score for c in recalled]  # every candidate scored by its own chunk vector
    assert scores == sorted(scores, reverse=True) and recalled[0].chunk == alone[0].chunk


def test_sentence_vectors_get_a_search_graph_only_for_sentence_recall(
    tmp_path: Path, make_engine: Callable[..., Verbatim]
) -> None:
    def built(engine: Verbatim) -> Path:
        engine.build_index()
        version = current_version_dir(engine.settings.resolved_index_dir)
        assert version is not None
        return version

    # Above the HNSW threshold chunks get their graph; sentences, read only by id, do not.
    engine = make_engine(hnsw_threshold=10)
    version = built(engine)
    assert (version / "chunks" / "hnsw.faiss").exists()
    assert not (version / "sentences" / "hnsw.faiss").exists()
    recalling = make_engine(home=tmp_path / "recall", hnsw_threshold=10, sentence_recall=5)
    assert (built(recalling) / "sentences" / "hnsw.faiss").exists()
    # quotes read the sentence vectors by id from either store
    assert recalling.ask(TROOPS).quotes[0].text == engine.ask(TROOPS).quotes[0].text


def test_explain_shows_both_retrievers_and_the_fusion(
    make_engine: Callable[..., Verbatim],
) -> None:
    engine = make_engine(reranker="none")
    engine.build_index()
    answer = engine.ask(TROOPS, mode="hybrid", explain=True)
    explain = answer.quotes[0].explain
    assert explain is not None and explain.mode == "hybrid" and explain.rerank_score is None
    assert explain.dense_rank is not None and explain.bm25_rank is not None
    assert {"deployed", "personnel", "forward"} <= set(explain.matched_terms)  # not stems
    expected = 1 / (60 + explain.dense_rank) + 1 / (60 + explain.bm25_rank)  # plain RRF
    assert explain.fused_score == pytest.approx(expected, abs=1e-6)


def test_answers_without_explain_carry_none(seed_engine: Verbatim) -> None:
    assert all(q.explain is None for q in seed_engine.ask(TROOPS).quotes)


@pytest.mark.parametrize("mode", ["dense", "bm25", "hybrid"])
def test_every_mode_answers_the_troops_question(seed_engine: Verbatim, mode: str) -> None:
    answer = seed_engine.ask(TROOPS, mode=mode)  # type: ignore[arg-type]
    assert answer.status == "answered"
    assert "100,000" in answer.quotes[0].text


def test_bm25_respects_filters(seed_engine: Verbatim) -> None:
    other = next(d.doc_id for d in seed_engine.documents() if "100,000" not in d.text)
    result = seed_engine.search(TROOPS, 5, Filters(doc_ids=[other]), mode="bm25")
    assert result.passages and {p.doc_id for p in result.passages} == {other}


def test_a_question_without_known_words_finds_nothing_by_bm25(seed_engine: Verbatim) -> None:
    assert seed_engine.search("zzyzx qwertyuiop", 5, mode="bm25").passages == []
    answer = seed_engine.ask("zzyzx qwertyuiop", mode="bm25")
    assert answer.status == "no_answer" and answer.quotes == []


def test_keyword_index_is_incremental_and_equals_a_clean_build(
    tmp_path: Path, make_engine: Callable[..., Verbatim], seed_dir: Path
) -> None:
    engine = make_engine()
    engine.build_index([seed_dir])
    changed = sorted(seed_dir.glob("*.txt"))[0]
    changed.write_text(changed.read_text(encoding="utf-8") + "\n\nA new code, KX-7741, was added.")
    recording = RecordingTokenizer()
    engine.tokenizer = recording
    engine.build_index([seed_dir])
    assert recording.seen, "the changed document was not tokenised"
    changed_chunks = [c.text for c in engine.index.entries[changed.stem].chunks]
    assert all(any(chunk in text for chunk in changed_chunks) for text in recording.seen), (
        "unchanged documents were tokenised again"
    )

    clean = make_engine(home=tmp_path / "clean")
    clean.build_index([seed_dir])
    for question in (TROOPS, "KX-7741", "Guidelines for Japan-U.S. Defense Cooperation"):
        incremental = engine.search(question, 10, mode="bm25")
        fresh = clean.search(question, 10, mode="bm25")
        assert [(p.chunk_id, p.score) for p in incremental.passages] == [
            (p.chunk_id, p.score) for p in fresh.passages
        ]


def test_an_index_from_before_bm25_still_searches_by_keywords(
    make_engine: Callable[..., Verbatim],
) -> None:
    engine = make_engine()
    engine.build_index()
    version = current_version_dir(engine.settings.resolved_index_dir)
    assert version is not None
    shutil.rmtree(version / "keywords")  # and the manifest as it was before BM25 and checksums
    manifest = json.loads((version / "manifest.json").read_text())
    for newer in ("keywords", "files"):
        del manifest[newer]
    (version / "manifest.json").write_text(json.dumps(manifest))
    engine.reload()
    assert "100,000" in engine.search(TROOPS, 1, mode="bm25").passages[0].text


def test_weighted_fusion_scores_are_normalised(make_engine: Callable[..., Verbatim]) -> None:
    engine = make_engine(fusion="weighted", fusion_weight=0.7, reranker="none")
    engine.build_index()
    result = engine.search(TROOPS, 10, mode="hybrid", explain=True)
    scores = [p.score for p in result.passages]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= s <= 1.0 for s in scores) and scores[0] > 0.5


def test_sentence_reranker_scores_every_reranked_passage(
    make_engine: Callable[..., Verbatim],
) -> None:
    engine = make_engine(reranker="sentences")
    engine.build_index()
    result = engine.search(TROOPS, 5, explain=True)
    assert all(
        p.explain is not None and p.explain.rerank_score is not None for p in result.passages
    )
    assert "100,000" in result.passages[0].text


def test_bi_encoder_reranker_scores_by_its_own_model(
    make_engine: Callable[..., Verbatim],
) -> None:
    engine = make_engine(reranker="bi-encoder", reranker_model="all-MiniLM-L6-v2")
    engine.build_index()
    result = engine.search(TROOPS, 3, explain=True)
    question = engine.encoder.encode_queries([TROOPS])[0]
    for passage in result.passages:
        assert passage.explain is not None and passage.explain.rerank_score is not None
        cosine = float(engine.encoder.encode_passages([passage.text])[0] @ question)
        assert passage.explain.rerank_score == pytest.approx(cosine, abs=1e-3)


def test_a_users_cross_encoder_orders_the_candidates(
    tmp_path: Path, make_engine: Callable[..., Verbatim]
) -> None:
    model_dir = _tiny_cross_encoder(tmp_path / "tiny-cross-encoder")
    engine = make_engine(reranker="cross-encoder", reranker_model=str(model_dir), rerank_depth=8)
    engine.build_index()
    result = engine.search(TROOPS, 8, explain=True)
    rerank = [p.explain.rerank_score for p in result.passages if p.explain is not None]
    assert len(rerank) == 8 and None not in rerank
    assert rerank == sorted(rerank, reverse=True)  # type: ignore[type-var]


def test_a_missing_cross_encoder_is_a_clear_error(make_engine: Callable[..., Verbatim]) -> None:
    from embeddings.encoder import ModelLoadError

    engine = make_engine(reranker="cross-encoder", reranker_model="/nonexistent/cross-encoder")
    engine.build_index()
    with pytest.raises(ModelLoadError, match="VERBATIM_RERANKER_MODEL"):
        engine.search(TROOPS)


def test_multilingual_model_finds_english_passages_for_japanese_questions(
    make_engine: Callable[..., Verbatim],
) -> None:
    engine = make_engine(model="use-multilingual")
    engine.build_index()
    result = engine.search("地域に前方展開している米軍の兵力はどのくらいですか?", 3, mode="dense")
    assert any("100,000" in p.text for p in result.passages)
    assert engine.index.manifest["model"] == "universal-sentence-encoder-multilingual-3"


def _tiny_cross_encoder(target: Path) -> Path:
    """A randomly initialised two-layer BERT cross-encoder, saved locally (no download)."""
    from sentence_transformers import CrossEncoder
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    target.mkdir(parents=True)
    words = sorted(set(" ".join([TROOPS, CODE_DOC]).lower().replace("?", " ").split()))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    (target / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizer(vocab_file=str(target / "vocab.txt"))
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
    )
    config.num_labels = 1  # one relevance score per (question, passage) pair
    BertForSequenceClassification(config).save_pretrained(target)
    tokenizer.save_pretrained(target)
    CrossEncoder(str(target), device="cpu")  # loads: the same call the reranker makes
    return target


JAPANESE_DOC = (
    "日米安全保障体制について\n\n"
    "日米安全保障条約は1960年に署名された。"
    "同条約第5条は、日本の施政の下にある領域における武力攻撃に対する共同対処を定めている。"
    "在日米軍の駐留経費の一部は日本側が負担している。"
)


def test_a_language_the_encoder_cannot_read_is_answered_from_keywords(
    tmp_path: Path, make_engine: Callable[..., Verbatim]
) -> None:
    engine = make_engine(model=DEFAULT_MODEL)  # configured: the English-only packaged model
    engine.build_index([seeds_with(tmp_path / "docs", "ja.txt", JAPANESE_DOC)])
    answer = engine.ask("日米安全保障条約が署名されたのは何年ですか?", mode="hybrid", explain=True)
    assert answer.status == "answered"
    top = answer.quotes[0]
    assert top.doc_id == "ja" and "1960年" in top.text
    assert top.explain is not None and top.explain.dense_rank is None  # no dense noise fused
    # told the model reads Japanese: dense joins in
    told = make_engine(model=DEFAULT_MODEL, model_languages="en,ja")
    passages = told.search("日米安全保障条約", 5, mode="hybrid", explain=True).passages
    assert any(p.explain is not None and p.explain.dense_rank is not None for p in passages)


def test_a_japanese_folder_indexed_with_no_settings_is_read_by_the_multilingual_encoder(
    tmp_path: Path, make_engine: Callable[..., Verbatim]
) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "ja.txt").write_text(JAPANESE_DOC, encoding="utf-8")
    engine = make_engine()
    report = engine.build_index([folder])
    assert report.model == E5_MODEL_ID and report.unread_languages == {}
    assert engine.index.manifest["languages"] == {"ja": 1}
    answer = engine.ask("日米安全保障条約が署名されたのは何年ですか?", explain=True)
    top = answer.quotes[0]
    assert answer.status == "answered" and "1960年" in top.text
    assert top.explain is not None and top.explain.dense_rank is not None  # its vectors are read
    assert engine.ask("What is the capital of France?").status == "no_answer"
