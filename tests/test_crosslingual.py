"""Questions in a language the index's encoder cannot read go to the cross-lingual reader."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from embeddings.encoder import Encoder
from qa.engine import Verbatim
from qa.logs import configure_logging
from qa.settings import Settings

from .test_answers import assert_quotes_exact
from .test_batching import hold_reads

QUESTION = "地域に前方展開している米軍の兵力はどのくらいですか?"  # about 100,000 personnel


class _CountingEncoder:
    """The reader's real encoder, counting the passages it is asked to encode and the sizes of
    its calls for questions."""

    def __init__(self, encoder: Encoder) -> None:
        self.encoder = encoder
        self.passages = 0
        self.texts: list[str] = []
        self.question_calls: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.encoder, name)

    def encode_passages(self, texts: list[str], progress: Any = None) -> Any:
        self.passages += len(texts)
        self.texts.extend(texts)
        return self.encoder.encode_passages(texts, progress)

    def encode_queries(self, questions: Sequence[str]) -> Any:
        self.question_calls.append(len(questions))
        return self.encoder.encode_queries(questions)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory, encoder: Encoder) -> Verbatim:
    engine = Verbatim(Settings(home=tmp_path_factory.mktemp("xl-home")), encoder)
    engine.build_index()
    return engine


def test_japanese_question_about_english_documents_is_answered(engine: Verbatim) -> None:
    assert engine.encoder.languages == frozenset({"en"})  # the index's model reads English only
    answer = engine.ask(QUESTION)
    assert answer.status == "answered"
    assert "about 100,000" in answer.quotes[0].text
    assert_quotes_exact(engine, answer)
    reader = engine.cross_lingual_reader
    assert reader is not None
    threshold = engine.answer_threshold(reader.encoder.model_id, cross_lingual=True)
    assert all(q.score >= threshold for q in answer.quotes)


def test_the_readers_quotes_are_single_sentences(engine: Verbatim) -> None:
    # The 1997 Guidelines sentence, not a window of the 1996 declaration's opening sentences.
    answer = engine.ask("日米防衛協力のための指針が承認されたのはいつですか?")
    assert answer.status == "answered"
    assert "in 1997" in answer.quotes[0].text
    index = engine.index
    for quote in answer.quotes:
        spans = index.entries[quote.doc_id].sentences
        assert any((s.start, s.end) == (quote.char_start, quote.char_end) for s in spans)
    english = engine.ask("What did the declaration reaffirm about the security arrangements?")
    assert any(
        sum(quote.char_start <= s.start and s.end <= quote.char_end for s in spans) > 1
        for quote in english.quotes
        for spans in [index.entries[quote.doc_id].sentences]
    ), "English quotes may still join neighbouring sentences"


def test_without_the_reader_the_same_question_is_not_answered(
    tmp_path: Path, encoder: Encoder, engine: Verbatim
) -> None:
    plain = Verbatim(
        Settings(
            home=tmp_path, index_dir=engine.settings.resolved_index_dir, cross_lingual_model="none"
        ),
        encoder,
    )
    assert plain.cross_lingual_reader is None
    answer = plain.ask(QUESTION)
    assert not (answer.status == "answered" and "about 100,000" in answer.quotes[0].text)


def _reading(home: Path, encoder: Encoder, engine: Verbatim) -> tuple[Verbatim, _CountingEncoder]:
    """A new engine over `engine`'s index (so an empty memo), its reader's encoder counted."""
    fresh = Verbatim(Settings(home=home, index_dir=engine.settings.resolved_index_dir), encoder)
    reader = fresh.cross_lingual_reader
    assert reader is not None
    counting = _CountingEncoder(reader.encoder)
    reader.encoder = counting  # type: ignore[assignment]
    return fresh, counting


def test_english_questions_never_reach_the_reader(
    tmp_path: Path, encoder: Encoder, engine: Verbatim
) -> None:
    fresh, counting = _reading(tmp_path, encoder, engine)
    fresh.ask("How many U.S. military personnel are forward deployed in the region?")
    assert counting.passages == 0
    fresh.ask(QUESTION)
    first = counting.passages
    fresh.ask(QUESTION)  # the same passages again: read from the memo
    assert first > 0 and counting.passages == first


def test_searching_passages_reads_no_sentences(
    tmp_path: Path, encoder: Encoder, engine: Verbatim
) -> None:
    """`search` returns passages only: the reader orders them and reads no sentence (the
    sentences are for quotes, and `ask` reads them)."""
    fresh, counting = _reading(tmp_path, encoder, engine)
    passages = fresh.search(QUESTION, 3).passages
    assert "about 100,000" in " ".join(p.text for p in passages)
    chunks = {chunk.text for chunk in fresh.index.chunks_by_vector_id.values()}
    assert counting.texts and set(counting.texts) <= chunks  # candidate passages, no sentence
    fresh.ask(QUESTION)
    assert not set(counting.texts) <= chunks  # `ask` reads the kept passages' sentences


def test_questions_arriving_together_read_each_passage_once(
    tmp_path: Path, encoder: Encoder, engine: Verbatim
) -> None:
    """Concurrent questions (as after a re-index under load) must not each encode the same
    passages: together they encode exactly what one question alone does."""
    alone, read_alone = _reading(tmp_path / "alone", encoder, engine)
    alone.ask(QUESTION)
    together, read_together = _reading(tmp_path / "together", encoder, engine)
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(together.ask, [QUESTION] * 8))
    assert all("about 100,000" in a.quotes[0].text for a in answers)
    assert read_together.passages == read_alone.passages > 0


def test_the_japanese_questions_of_a_batch_share_one_reader_call(
    tmp_path: Path, encoder: Encoder, engine: Verbatim
) -> None:
    fresh, counting = _reading(tmp_path, encoder, engine)
    held, waiting = hold_reads(fresh.batcher)
    japanese = [QUESTION, "日米安全保障共同宣言はいつ発表されましたか?", QUESTION]
    with ThreadPoolExecutor(6) as pool:
        first = pool.submit(fresh.ask, "first question about the alliance")
        held.wait_entered()  # alone: read at once, in its own thread
        second = pool.submit(fresh.ask, "second question about the alliance")
        held.wait_entered()  # the reading thread's first batch
        batch = [pool.submit(fresh.ask, q) for q in [*japanese, "Who signed the statement?"]]
        waiting.wait_for(1 + len(batch))
        held.released.set()
        answers = [future.result(60) for future in batch]
        first.result(60), second.result(60)
    assert held.sizes == [1, 1, len(batch)]
    assert counting.question_calls == [len(japanese)]  # the English one is not read by the reader
    assert "about 100,000" in answers[0].quotes[0].text
    assert "April 1996" in answers[1].quotes[0].text
    assert answers[2].quotes[0].text == answers[0].quotes[0].text


def test_japanese_off_topic_question_is_abstained(engine: Verbatim) -> None:
    answer = engine.ask("フランスの首都はどこですか?")
    assert answer.status == "no_answer"
    assert [q.closest_match for q in answer.quotes] == [True]


def test_unloadable_reader_model_falls_back_to_keywords(
    tmp_path: Path, encoder: Encoder, engine: Verbatim
) -> None:
    broken = Verbatim(
        Settings(
            home=tmp_path,
            index_dir=engine.settings.resolved_index_dir,
            cross_lingual_model=str(tmp_path / "no-such-model"),
        ),
        encoder,
    )
    stream = io.StringIO()
    configure_logging("WARNING", stream)
    try:
        answer = broken.ask(QUESTION)  # answered as without a reader, not an error
    finally:
        configure_logging("WARNING")
    assert answer.status in ("answered", "no_answer")
    assert broken.cross_lingual_reader is None
    assert json.loads(stream.getvalue())["event"] == "cross_lingual_model_unavailable"
