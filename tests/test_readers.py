"""Every supported format read for real; bad files reported and skipped, never fatal."""

from __future__ import annotations

import json
from pathlib import Path

import docx

from corpus.loader import discover, load_documents, read_document


def _pdf(text: str) -> bytes:
    """A minimal one-page PDF with `text` in Helvetica."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = b"%PDF-1.4\n"
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return out


def _read(path: Path):  # type: ignore[no-untyped-def]
    sources, errors = discover([path])
    assert errors == []
    return read_document(sources[0])


def test_markdown_front_matter_becomes_metadata(tmp_path: Path) -> None:
    path = tmp_path / "notes.md"
    path.write_text(
        "---\ntitle: Alliance notes\ndate: 2020-05-01\nurl: https://example.org/n\n"
        "team: policy\n---\n"
        "# Summary\n\nThe alliance is strong.\n",
        encoding="utf-8",
    )
    doc = _read(path)
    assert (doc.title, doc.date, doc.url) == (
        "Alliance notes",
        "2020-05-01",
        "https://example.org/n",
    )
    assert doc.metadata == {"team": "policy"}
    assert doc.text == "# Summary\n\nThe alliance is strong."


def test_sidecar_metadata_overrides_the_file(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("Title line\n\nBody sentence here.", encoding="utf-8")
    (tmp_path / "a.meta.json").write_text(json.dumps({"url": "https://x.test/a", "source": "MOFA"}))
    doc = _read(tmp_path / "a.txt")
    assert (doc.title, doc.url, doc.source) == ("Title line", "https://x.test/a", "MOFA")


def test_html_drops_scripts_and_keeps_structure(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_text(
        "<html><head><title>Page</title><meta name='date' content='2021-03-04'>"
        "<script>alert('x')</script><style>p{}</style></head><body><nav>Menu</nav>"
        "<h1>Heading</h1><p>First <b>bold</b> paragraph.</p>"
        "<ul><li>One item</li></ul></body></html>",
        encoding="utf-8",
    )
    doc = _read(path)
    assert (doc.title, doc.date) == ("Page", "2021-03-04")
    assert "alert" not in doc.text and "Menu" not in doc.text and "p{}" not in doc.text
    assert doc.text == "# Heading\n\nFirst bold paragraph.\n\n- One item"


def test_pdf_text_is_extracted(tmp_path: Path) -> None:
    path = tmp_path / "memo.pdf"
    path.write_bytes(_pdf("The treaty was signed in 1960."))
    doc = _read(path)
    assert doc.text == "The treaty was signed in 1960."


def test_docx_paragraphs_headings_and_properties(tmp_path: Path) -> None:
    document = docx.Document()
    document.core_properties.title = "Word memo"
    document.add_heading("Background", level=1)
    document.add_paragraph("Cooperation deepened in 2015.")
    document.save(str(tmp_path / "memo.docx"))
    doc = _read(tmp_path / "memo.docx")
    assert doc.title == "Word memo"
    assert doc.text == "# Background\n\nCooperation deepened in 2015."


def test_japanese_text_in_shift_jis_is_read_and_detected(tmp_path: Path) -> None:
    path = tmp_path / "ja.txt"
    path.write_bytes("日米安全保障共同宣言\n\n日米同盟は地域の平和の礎である。".encode("cp932"))
    doc = _read(path)
    assert doc.lang == "ja"
    assert doc.title == "日米安全保障共同宣言"


def test_bad_files_are_reported_and_skipped(tmp_path: Path) -> None:
    (tmp_path / "good.txt").write_text("A good document with a sentence.", encoding="utf-8")
    (tmp_path / "binary.txt").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "latin.txt").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    (tmp_path / "broken.docx").write_bytes(b"PK not a zip")
    (tmp_path / "empty.md").write_text("   \n", encoding="utf-8")
    result = load_documents([tmp_path])
    assert [d.doc_id for d in result.documents] == ["good"]
    reasons = {Path(e.path).name: e.reason for e in result.errors}
    assert set(reasons) == {"binary.txt", "latin.txt", "broken.pdf", "broken.docx", "empty.md"}
    assert "binary" in reasons["binary.txt"]
    assert "UTF-8" in reasons["latin.txt"]
    assert "no text" in reasons["empty.md"]


def test_symlink_outside_the_corpus_is_not_read(tmp_path: Path) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text("Private data that must stay out.", encoding="utf-8")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "link.txt").symlink_to(outside)
    sources, errors = discover([corpus])
    assert sources == []
    assert "outside the corpus" in errors[0].reason


def test_ids_are_relative_paths_and_unique(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    for name in ("a.txt", "a.md", "sub/b.txt"):
        (tmp_path / name).write_text("Some text here.", encoding="utf-8")
    sources, _ = discover([tmp_path])
    assert sorted(s.doc_id for s in sources) == ["a_md", "a_txt", "sub__b"]


def test_world_and_japan_fields_all_become_metadata(tmp_path: Path) -> None:
    page = (
        '"The World and Japan" Database (Project Leader: TANAKA Akihiko)\n'
        "Database of Japanese Politics and International Relations\n"
        "National Graduate Institute for Policy Studies (GRIPS)\n\n"
        "[Title] Joint Statement of the Security Consultative Committee\n"
        "[Place] Washington, D.C.\n[Date] April 27, 2015\n[Source] Ministry of Defense\n"
        "[Notes] Provisional translation,\nsee the Japanese original\n[Full text]\n\n"
        "The Ministers approved the new Guidelines.\n"
    )
    (tmp_path / "scc.txt").write_text(page, encoding="utf-8")
    doc = _read(tmp_path / "scc.txt")
    assert doc.title == "Joint Statement of the Security Consultative Committee"
    assert (doc.date, doc.source) == ("2015-04-27", "Ministry of Defense")
    assert doc.metadata["place"] == "Washington, D.C."
    assert doc.metadata["notes"] == "Provisional translation, see the Japanese original"
    assert doc.text == "The Ministers approved the new Guidelines."
