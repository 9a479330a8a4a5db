from __future__ import annotations

from corpus.normalize import normalize_text


def test_nfkc_folds_full_width_forms() -> None:
    assert normalize_text("ＵＳ　Ｆｏｒｃｅｓ（在日）１２３") == "US Forces(在日)123"


def test_whitespace_is_unified_once() -> None:
    raw = "\ufeffTitle  line \r\n\r\n\r\n\r\n  Body\ttext\u200b here.  \rNext"
    assert normalize_text(raw) == "Title line\n\nBody text here.\nNext"


def test_normalising_twice_changes_nothing() -> None:
    once = normalize_text("Ａ  b\r\n\n\n\nc\u3000d")
    assert normalize_text(once) == once
