from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from corpus.chunking import ChunkerSettings, chunk_document
from corpus.loader import default_corpus_dir, discover, read_document
from corpus.models import Document
from corpus.normalize import normalize_text


def _seed(doc_id: str) -> Document:
    sources, _ = discover([default_corpus_dir()])
    return read_document(next(s for s in sources if s.doc_id == doc_id))


def test_numbered_items_get_their_item_path_as_section() -> None:
    doc = _seed("001_dd8c4ca6def8021f")
    sentences, _ = chunk_document(doc)
    by_text = {doc.text[s.start : s.end][:12]: s.section for s in sentences}
    assert by_text["(ii) Meeting"] == "(2) (ii)"
    assert by_text["(v) Prevent "] == "(3) (v)"
    assert by_text["(4) The lead"] == "(4)"
    assert (
        by_text["The leaders "] == "(2)"
    )  # "century.The leaders" was split from (2)'s first sentence
    assert (
        by_text["The declarat"] == "Japan-U.S. Joint Declaration on Security"
    )  # under the title heading


def test_items_stay_whole_and_sentences_are_never_cut() -> None:
    doc = _seed("001_dd8c4ca6def8021f")
    sentences, chunks = chunk_document(doc, ChunkerSettings(max_chars=600, overlap_chars=100))
    item = doc.text.index("(ii) Meeting the commitments")
    item_end = doc.text.index("\n", item)
    assert any(c.char_start <= item and item_end <= c.char_end for c in chunks)
    boundaries = {s.start for s in sentences}
    ends = {s.end for s in sentences}
    for chunk in chunks:
        assert chunk.text == doc.text[chunk.char_start : chunk.char_end]
        assert chunk.char_start in boundaries and chunk.char_end in ends
        assert len(chunk.text) <= 600 or len(chunk.sentences) == 1


def test_chunks_overlap_by_trailing_sentences() -> None:
    doc = Document(
        doc_id="d", text=" ".join(f"Sentence number {n} is here." for n in range(30)), title="t"
    )
    _, chunks = chunk_document(doc, ChunkerSettings(max_chars=200, overlap_chars=60))
    assert len(chunks) > 3
    for before, after in itertools.pairwise(chunks):
        shared = sorted(set(before.sentences) & set(after.sentences))
        assert shared and shared == list(before.sentences[-len(shared) :])  # the tail repeats
        assert len(doc.text[before.char_start : before.char_end]) <= 200


def test_chunk_ids_are_stable_across_runs_and_change_with_content() -> None:
    doc = _seed("000_ca5c4864f6c7d21a")
    first = [c.chunk_id for c in chunk_document(doc)[1]]
    assert first == [c.chunk_id for c in chunk_document(_seed("000_ca5c4864f6c7d21a"))[1]]
    edited = Document(**{**doc.to_dict(), "text": doc.text.replace("Kerry", "Blinken")})
    assert first[0] not in [c.chunk_id for c in chunk_document(edited)[1]]


def test_markdown_headings_and_bullets_give_sections() -> None:
    text = normalize_text(
        "# Plans\n\nIntro text is here.\n\n## Budget\n\n"
        "- First point is long enough.\n- Second point."
    )
    doc = Document(doc_id="d", text=text, title="t")
    sentences, _ = chunk_document(doc)
    sections = {doc.text[s.start : s.end]: s.section for s in sentences}
    assert sections["Intro text is here."] == "Plans"
    assert sections["- Second point."] == "Budget"


_WORDS = st.sampled_from(
    [
        "Alpha",
        "beta.",
        "U.S.",
        "(i)",
        "(2)",
        "日本の安全。",
        "\n",
        "\n\n",
        "# Head",
        "- item",
        "3.5",
        "end!",
        "x",
    ]
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_WORDS, max_size=120).map(" ".join), st.integers(50, 400), st.integers(0, 49))
def test_every_chunk_is_an_exact_span_of_whole_sentences(raw: str, size: int, overlap: int) -> None:
    text = normalize_text(raw)
    doc = Document(doc_id="p", text=text, title="p")
    sentences, chunks = chunk_document(doc, ChunkerSettings(max_chars=size, overlap_chars=overlap))
    covered: set[int] = set()
    for chunk in chunks:
        assert chunk.text == text[chunk.char_start : chunk.char_end]
        assert chunk.char_start == sentences[chunk.sentences[0]].start
        assert chunk.char_end == sentences[chunk.sentences[-1]].end
        assert list(chunk.sentences) == list(range(chunk.sentences[0], chunk.sentences[-1] + 1))
        covered.update(chunk.sentences)
    assert covered == set(range(len(sentences)))  # no sentence is left out of every chunk
