"""The `verbatim` command as a user runs it: real processes, real exit codes, clean stdout."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from corpus.loader import discover, read_document
from embeddings.e5 import MODEL_ID as E5_MODEL_ID
from embeddings.encoder import DEFAULT_MODEL

from .conftest import (
    DESIGN_ANSWER_FIELDS,
    DESIGN_CONVERSATION_FIELDS,
    DESIGN_QUOTE_FIELDS,
    seeds_with,
)

VERBATIM = shutil.which("verbatim") or str(
    Path(__file__).resolve().parent.parent / ".venv/bin/verbatim"
)
TROOPS = "How many U.S. military personnel are forward deployed in the region?"


def run(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "VERBATIM_HOME": str(home), "HF_HUB_OFFLINE": "1", **env}
    return subprocess.run(
        [VERBATIM, *args], capture_output=True, text=True, env=environment, timeout=300
    )


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cli-home")


def test_ask_without_an_index_indexes_the_seeds_and_answers(home: Path) -> None:
    result = run(home, "ask", TROOPS)
    assert result.returncode == 0, result.stderr
    assert "about 100,000 forward deployed military personnel" in result.stdout
    assert "Japan-U.S. Joint Declaration on Security" in result.stdout
    assert "(2) (ii)" in result.stdout


def test_ask_json_prints_only_the_answer_shape(home: Path) -> None:
    result = run(home, "ask", "--json", "--top-k", "2", TROOPS)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)  # nothing but JSON on stdout
    assert set(answer) == DESIGN_ANSWER_FIELDS | DESIGN_CONVERSATION_FIELDS
    assert answer["conversation_id"] is None and answer["context"] is None
    assert answer["status"] == "answered" and 1 <= len(answer["quotes"]) <= 2
    quote = answer["quotes"][0]
    assert set(quote) >= DESIGN_QUOTE_FIELDS
    sources, _ = discover([Path(__file__).resolve().parent.parent / "corpus" / "default"])
    document = read_document(next(s for s in sources if s.doc_id == quote["doc_id"]))
    assert document.text[quote["char_start"] : quote["char_end"]] == quote["text"]


def test_ask_mode_and_explain(home: Path) -> None:
    shown = run(home, "ask", "--mode", "bm25", "--explain", TROOPS)
    assert shown.returncode == 0, shown.stderr
    assert "mode bm25" in shown.stdout and "bm25 #1" in shown.stdout and "deploy" in shown.stdout
    as_json = json.loads(run(home, "ask", "--json", "--mode", "hybrid", "--explain", TROOPS).stdout)
    assert as_json["quotes"][0]["explain"]["mode"] == "hybrid"
    wrong = run(home, "ask", "--mode", "semantic", TROOPS)
    assert wrong.returncode == 2 and "semantic" in wrong.stderr


def test_ask_filters_by_document_metadata(home: Path) -> None:
    question = "What is the cornerstone of regional peace and security?"
    dated = json.loads(
        run(home, "ask", "--json", "--since", "2014", "--until", "2014", question).stdout
    )
    assert dated["quotes"] and {q["doc_id"] for q in dated["quotes"]} == {"000_ca5c4864f6c7d21a"}
    one = json.loads(run(home, "ask", "--json", "--doc", "001_dd8c4ca6def8021f", question).stdout)
    assert {q["doc_id"] for q in one["quotes"]} == {"001_dd8c4ca6def8021f"}


def test_unanswerable_question_says_so(home: Path) -> None:
    result = run(home, "ask", "What is the capital of France?")
    assert result.returncode == 0
    assert "No answer in the documents" in result.stdout
    as_json = json.loads(run(home, "ask", "--json", "What is the capital of France?").stdout)
    assert as_json["status"] == "no_answer"
    closest = as_json["quotes"][0]
    assert closest["closest_match"] and closest["score"] < as_json["threshold"]
    # the score beside the threshold, told apart at the precision shown
    shown = re.search(r"score ([\d.-]+), below the answer threshold ([\d.-]+)", result.stdout)
    assert shown and float(shown[1]) < float(shown[2]), result.stdout


def test_index_reports_and_documents_lists(home: Path, tmp_path: Path) -> None:
    corpus = tmp_path / "docs"
    corpus.mkdir()
    (corpus / "note.md").write_text(
        "# Note\n\nThe budget review happens every March.", encoding="utf-8"
    )
    (corpus / "bad.pdf").write_bytes(b"not a pdf")
    result = run(home, "index", "--json", str(corpus))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["added"] == ["note"] and report["failed"][0]["path"].endswith("bad.pdf")
    assert "skipped" in result.stderr and result.stderr.count("bad.pdf") == 1  # said once
    listing = json.loads(run(home, "documents", "--json").stdout)
    assert [d["doc_id"] for d in listing] == ["note"]
    again = run(home, "index", str(corpus))
    assert "1 unchanged" in again.stdout and "already up to date" in again.stdout
    (corpus / "note.md").write_text("# Note\n\nThe review moved to April.", encoding="utf-8")
    logged = run(home, "-v", "--log-format", "json", "index", str(corpus))
    events = [json.loads(line) for line in logged.stderr.splitlines() if line.startswith("{")]
    assert {"document_skipped", "index_built"} <= {e["event"] for e in events}, logged.stderr
    assert report["unread_languages"] == {} and "cannot read" not in again.stderr


SEED_TROOPS_DOC = "001_dd8c4ca6def8021f"  # states the forward-deployed troop numbers


def test_the_encoder_follows_the_documents_languages_unless_one_is_configured(
    tmp_path: Path,
) -> None:
    corpus = seeds_with(
        tmp_path / "docs",
        "leave.md",
        "# 育児休業制度\n\n従業員は最長16週間の有給育児休業を取得できます。"
        "休業は少なくとも4週間前までに人事部に申請しなければなりません。\n",
    )
    home = tmp_path / "home"
    report = json.loads(run(home, "index", "--json", str(corpus)).stdout)
    assert report["model"] == E5_MODEL_ID and report["model_reason"] == "languages"
    assert report["unread_languages"] == {}
    listed = run(home, "documents", COLUMNS="200").stdout
    assert f"encoder {E5_MODEL_ID} (chosen for the documents' languages: en 2, ja 1)" in listed
    asked = {
        "育児休業は何週間取れますか?": "leave",
        "How many U.S. military personnel are forward deployed in the region?": SEED_TROOPS_DOC,
        "地域に前方展開している米軍の兵力はどのくらいですか?": SEED_TROOPS_DOC,  # cross-lingual
    }

    def answered_from(*flags: str) -> dict[str, str | None]:
        found = {}
        for question in asked:
            answer = json.loads(run(home, *flags, "ask", "--json", question).stdout)
            found[question] = answer["status"] == "answered" and answer["quotes"][0]["doc_id"]
        return found

    assert answered_from() == asked

    # configured: the English model, though it cannot read the Japanese document
    flags = ("--model", "all-MiniLM-L6-v2")
    report = json.loads(run(home, *flags, "index", "--json", str(corpus)).stdout)
    assert report["model"] == DEFAULT_MODEL and report["model_reason"] == "configured"
    assert report["replaced_model"] == E5_MODEL_ID and report["unread_languages"] == {"ja": 1}
    assert report["chunks_embedded"] == report["chunks_total"]  # no mix of two models' vectors
    shown = run(home, *flags, "index", str(corpus))
    assert "cannot read (1 in ja)" in shown.stderr
    assert "VERBATIM_MODEL=multilingual-e5-small" in shown.stderr
    assert answered_from(*flags) == asked  # the cross-lingual reader reads what MiniLM cannot
    assert answered_from() == asked  # unset, the model is the index's own


def test_usage_errors_exit_2(home: Path) -> None:
    assert run(home, "ask").returncode == 2
    assert run(home, "ask", "   ").returncode == 2
    bad = run(home, "ask", "--top-k", "0", "question")
    assert bad.returncode == 2 and "top_k" in bad.stderr
    assert run(home, "frobnicate").returncode == 2


def test_failures_exit_1_with_one_line_and_no_traceback(home: Path, tmp_path: Path) -> None:
    missing = run(home, "index", str(tmp_path / "nowhere"))
    assert missing.returncode == 1
    assert "no documents could be indexed" in missing.stderr and "Traceback" not in missing.stderr
    other_model = run(home, "ask", "question", VERBATIM_MODEL=str(tmp_path / "other-model"))
    assert other_model.returncode == 1 and "Traceback" not in other_model.stderr
    assert "re-index" in other_model.stderr


def test_help_explains_commands(home: Path) -> None:
    result = run(home, "--help")
    assert result.returncode == 0
    for command in ("index", "ask", "documents"):
        assert command in result.stdout
    assert "VERBATIM_" in result.stdout


@pytest.mark.parametrize("command", ["index", "ask", "serve"])
def test_help_names_each_settings_variable_in_its_sentence(home: Path, command: str) -> None:
    result = run(home, command, "--help", COLUMNS="200")
    assert result.returncode == 0
    assert "[env: VERBATIM_" in result.stdout  # not swallowed as markup
    assert not re.search(r"\w \.(\s|$)", result.stdout), result.stdout  # "Port ." once read so
    assert "<bool>" not in result.stdout  # a flag takes no value
    assert "<int>" in result.stdout or "<str>" in result.stdout or "<path>" in result.stdout


def test_shard_option_explains_its_format_and_what_it_needs(home: Path) -> None:
    malformed = run(home, "index", "--shard", "3/2")
    assert malformed.returncode == 2 and "--shard takes I/N" in malformed.stderr
    unshared = run(home, "index", "--shard", "1/2")  # FAISS: nothing for other machines to share
    assert unshared.returncode == 1, unshared.stderr
    assert "VERBATIM_VECTOR_STORE=milvus" in unshared.stderr
    assert "Traceback" not in unshared.stderr


def _files(folder: Path) -> dict[str, int]:
    return {str(f.relative_to(folder)): f.stat().st_size for f in folder.rglob("*") if f.is_file()}


def test_index_prepares_every_model_so_no_question_waits_for_one(tmp_path: Path) -> None:
    home, models = tmp_path / "home", tmp_path / "models"  # a fresh models folder
    env = {"VERBATIM_MODELS_DIR": str(models)}
    indexed = run(home, "index", **env)
    assert indexed.returncode == 0, indexed.stderr
    assert f"written to {models}" in indexed.stderr  # what is written where, and its size
    listing = json.loads(run(home, "models", "--json", **env).stdout)
    assert listing["folder"] == str(models)
    described = " ".join(m["what"] for m in listing["models"])
    assert "multilingual-e5-small" in described and "ONNX graph" in described
    prepared = _files(models)
    asked = run(home, "ask", "地域に前方展開している米軍の兵力はどのくらいですか?", **env)
    assert asked.returncode == 0 and "100,000" in asked.stdout, asked.stderr
    assert _files(models) == prepared  # the cold process's first question prepared nothing


def test_ask_continues_a_conversation(tmp_path: Path) -> None:
    home = tmp_path / "home"  # its own: the module's home may hold another test's documents
    first = json.loads(
        run(
            home, "ask", "--json", "--conversation", "new", "Where was the 2+2 meeting held?"
        ).stdout
    )
    conversation_id = first["conversation_id"]
    shown = run(home, "ask", "--conversation", conversation_id, "When was it held?")
    assert shown.returncode == 0, shown.stderr
    assert "read with your earlier question: Where was the 2+2 meeting held?" in shown.stderr
    assert "October 3, 2013" in shown.stdout
    assert f"--conversation {conversation_id}" in shown.stderr
    unknown = run(home, "ask", "--conversation", "no-such-id", "When was it held?")
    assert unknown.returncode == 1 and "--conversation new" in unknown.stderr


def test_collections_are_indexed_listed_and_asked_apart(tmp_path: Path) -> None:
    home = tmp_path / "home"
    hr = tmp_path / "hr"
    hr.mkdir()
    (hr / "leave.md").write_text(
        "# Parental leave policy\n\nEmployees may take up to sixteen weeks of paid parental"
        " leave.\n",
        encoding="utf-8",
    )
    built = run(home, "index", "--collection", "hr", str(hr))
    assert built.returncode == 0, built.stderr
    assert str(home / "collections" / "hr") in built.stdout
    listed = json.loads(run(home, "collections", "--json").stdout)
    assert [(c["name"], c["documents"]) for c in listed] == [("default", 0), ("hr", 1)]
    leave = json.loads(
        run(home, "ask", "--json", "--collection", "hr", "How long is parental leave?").stdout
    )
    assert leave["quotes"][0]["doc_id"] == "leave"
    seeds = json.loads(run(home, "ask", "--json", TROOPS).stdout)  # the default: the seeds
    assert seeds["quotes"][0]["doc_id"] == SEED_TROOPS_DOC
    missing = run(home, "ask", "--collection", "finance", TROOPS)
    assert missing.returncode == 1 and "verbatim index --collection finance" in missing.stderr
    invalid = run(home, "ask", "--collection", "../x", TROOPS)
    assert invalid.returncode == 2 and "collection" in invalid.stderr


def test_serve_refuses_several_workers_without_shared_state(tmp_path: Path) -> None:
    """Processes with rate windows of their own would let a client through N times its limit."""
    result = run(tmp_path, "serve", "--workers", "2", "--port", "0", VERBATIM_STATE_URL="")
    assert result.returncode == 2
    assert "VERBATIM_STATE_URL=redis://" in result.stderr
    assert "Traceback" not in result.stderr
