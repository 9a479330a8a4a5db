"""BM25 tokens: English stems and stop words, exact numbers and identifiers, Japanese by a
morphological analyser (or bigrams), mixed text."""

from __future__ import annotations

import pytest

from corpus.tokenize import KeywordTokenizer, TokenizerSettings


def test_english_words_are_stemmed_and_stop_words_dropped() -> None:
    tokens = KeywordTokenizer().tokenize("The troops were deployed to the regions")
    assert tokens == ["troop", "were", "deploy", "region"]


@pytest.mark.parametrize("exact", ["100,000", "1978", "2+2", "f-35", "3.5"])
def test_numbers_and_identifiers_stay_whole(exact: str) -> None:
    text = f"About {exact.upper()} were reported, said Article V."
    tokens = KeywordTokenizer().tokenize(text)
    assert exact in tokens
    assert "articl" in tokens and "v" in tokens


def test_hyphenated_words_are_split_unless_they_hold_digits() -> None:
    text = "The Japan-U.S. Alliance in the Asia-Pacific flies the F-35."
    tokens = KeywordTokenizer().tokenize(text)
    assert {"japan", "u.s", "allianc", "asia", "pacif", "f-35"} <= set(tokens)
    assert "japan-u.s" not in tokens
    whole = KeywordTokenizer(TokenizerSettings(split_hyphens=False)).tokenize(text)
    assert {"japan-u.s", "asia-pacific", "f-35"} <= set(whole)


def test_question_and_document_tokens_meet() -> None:
    tokenizer = KeywordTokenizer()
    question = set(tokenizer.tokenize("Which guidelines would be reviewed?"))
    sentence = set(tokenizer.tokenize("Review the 1978 Guidelines."))
    assert {"guidelin", "review"} <= question & sentence


@pytest.mark.parametrize("analyzer", ["sudachi", "fugashi"])
def test_japanese_is_split_into_dictionary_forms_without_particles(analyzer: str) -> None:
    tokenizer = KeywordTokenizer(TokenizerSettings(japanese=analyzer))  # type: ignore[arg-type]
    tokens = tokenizer.tokenize("日米安全保障条約に基づき、米軍を展開している。")
    assert {"日米", "安全", "保障", "条約", "米軍", "展開"} <= set(tokens)
    assert not {"に", "を", "、", "。"} & set(tokens)
    assert "基づく" in tokens  # the dictionary form, so 基づき and 基づいて match


def test_bigrams_when_asked() -> None:
    tokens = KeywordTokenizer(TokenizerSettings(japanese="bigram")).tokenize("米軍展開")
    assert tokens == ["米軍", "軍展", "展開"]


def test_mixed_text_keeps_each_script_rule() -> None:
    tokens = KeywordTokenizer().tokenize(
        "The 2+2 meeting (日米安全保障協議委員会) was held in Tokyo"
    )
    assert {"2+2", "meet", "tokyo", "日米", "安全", "保障"} <= set(tokens)


def test_text_without_words_has_no_tokens() -> None:
    assert KeywordTokenizer().tokenize(" …, — !? ") == []


@pytest.mark.parametrize("analyzer", ["sudachi", "fugashi"])
def test_each_token_keeps_the_word_as_written(analyzer: str) -> None:
    """What `--explain` shows a reader: their words, not stems or dictionary forms."""
    tokenizer = KeywordTokenizer(TokenizerSettings(japanese=analyzer))  # type: ignore[arg-type]
    terms = dict(tokenizer.terms("Forces deployed to the Asia-Pacific, 基づき F-35"))
    assert terms["forc"] == "Forces" and terms["deploy"] == "deployed"
    assert terms["pacif"] == "Pacific" and terms["f-35"] == "F-35"
    assert terms["基づく"] == "基づき"
    assert [t for t, _ in tokenizer.terms("Forces deployed")] == tokenizer.tokenize(
        "Forces deployed"
    )
