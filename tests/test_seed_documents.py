"""Parsing the two seed documents: exact metadata, boilerplate out, body intact."""

from __future__ import annotations

from corpus.loader import default_corpus_dir, discover, read_document
from corpus.models import Document


def _seeds() -> dict[str, Document]:
    sources, errors = discover([default_corpus_dir()])
    assert errors == []
    return {s.doc_id: read_document(s) for s in sources}


def test_world_and_japan_page_metadata_and_body() -> None:
    doc = _seeds()["000_ca5c4864f6c7d21a"]
    assert doc.date == "2014-12-19"
    assert doc.source == "Ministry of Foreign Affairs of Japan"
    assert doc.metadata["collection"] == "The World and Japan"
    assert doc.lang == "en"
    # The database header and the field lines are not content.
    assert "TANAKA Akihiko" not in doc.text
    assert "GRIPS" not in doc.text
    assert "[Date]" not in doc.text and "[Full text]" not in doc.text
    assert doc.text.startswith("Minister for Foreign Affairs Kishida\n\nMinister of Defense Eto")
    assert doc.text.endswith("as well as a platform for global cooperation.")
    assert "Asia- Pacific region" in doc.text  # the source's own spacing is kept, not repaired


def test_world_and_japan_page_without_title_gets_a_derived_one() -> None:
    doc = _seeds()["000_ca5c4864f6c7d21a"]
    assert doc.title == "Joint statement by Kishida, Eto, Kerry and Hagel"


def test_plain_seed_takes_its_first_line_as_title() -> None:
    doc = _seeds()["001_dd8c4ca6def8021f"]
    assert doc.title == "Japan-U.S. Joint Declaration on Security"
    assert doc.date is None and doc.source is None
    assert "about 100,000 forward deployed military personnel in the region" in doc.text
    assert doc.text.endswith("to ensure the effectiveness of the Guidelines.")
    raw = (default_corpus_dir() / "001_dd8c4ca6def8021f.txt").read_text(encoding="utf-8")
    assert doc.text == raw.strip()  # already normal text: normalisation changes nothing
