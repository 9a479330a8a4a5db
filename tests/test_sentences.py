from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from corpus.sentences import split_sentences


def _texts(text: str) -> list[str]:
    return [text[s.start : s.end] for s in split_sentences(text)]


def test_abbreviations_and_acronyms_do_not_end_sentences() -> None:
    text = "The U.S. Army met on Dec. 5 with Mr. Smith. It was No. 3 on the list."
    assert _texts(text) == [
        "The U.S. Army met on Dec. 5 with Mr. Smith.",
        "It was No. 3 on the list.",
    ]


def test_acronym_at_sentence_end_followed_by_an_opener_splits() -> None:
    assert _texts("Forces left the U.S. The base closed.") == [
        "Forces left the U.S.",
        "The base closed.",
    ]


def test_decimals_and_missing_space_after_full_stop() -> None:
    text = "Growth was 3.5 percent in the 21st century.The leaders agreed."
    assert _texts(text) == ["Growth was 3.5 percent in the 21st century.", "The leaders agreed."]


def test_numbered_items_stay_with_their_sentence() -> None:
    text = "(i) The first item. It continues.\n(2) Second item.\n1. Listed item here."
    assert _texts(text) == [
        "(i) The first item.",
        "It continues.",
        "(2) Second item.",
        "1. Listed item here.",
    ]


def test_japanese_sentences_and_closing_brackets() -> None:
    text = "日米同盟は重要である。「協力を強化する。」と述べた!次に進む?はい。"
    assert _texts(text) == [
        "日米同盟は重要である。",
        "「協力を強化する。」",
        "と述べた!",
        "次に進む?",
        "はい。",
    ]


def test_wrapped_lines_join_and_short_lines_stand_alone() -> None:
    text = "Overview\nThis sentence is wrapped across\ntwo lines. Next one."
    assert _texts(text) == ["Overview", "This sentence is wrapped across\ntwo lines.", "Next one."]


_ALPHABET = st.sampled_from([*"abcXYZ .!?。」)(\n12U.S ", "Dec.", "U.S.", "日本", "(ii)", "\n\n"])


@settings(max_examples=300, deadline=None)
@given(st.lists(_ALPHABET, max_size=60).map("".join))
def test_splitting_never_loses_or_repeats_characters(text: str) -> None:
    spans = split_sentences(text)
    position = 0
    for span in spans:
        assert position <= span.start < span.end <= len(text)
        assert text[position : span.start].strip() == ""  # only whitespace between sentences
        assert text[span.start : span.end] == text[span.start : span.end].strip()
        position = span.end
    assert text[position:].strip() == ""
    assert re.sub(r"\s", "", "".join(text[s.start : s.end] for s in spans)) == re.sub(
        r"\s", "", text
    )
