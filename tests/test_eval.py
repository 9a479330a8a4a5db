"""`verbatim eval`: question sets, BEIR folders, metrics, reports, comparisons and the gate."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from corpus.loader import default_corpus_dir, discover, read_document
from embeddings.encoder import Encoder
from qa.answer import Answer, Quote
from qa.evaluation.calibrate import calibrate
from qa.evaluation.evaluate import evaluate, failed_floors, parse_run
from qa.evaluation.questions import Question, QuestionSetError, load_questions
from qa.evaluation.report import baseline_changes, results_json, write_reports
from qa.evaluation.runner import QueryResult, RunConfig
from qa.settings import Settings

from .conftest import QUESTION_SET

VERBATIM = str(Path(__file__).resolve().parent.parent / ".venv" / "bin" / "verbatim")


def test_seed_question_set_shape_and_gold_answers_are_in_their_documents() -> None:
    questions = load_questions(QUESTION_SET)
    sources, _ = discover([default_corpus_dir()])
    texts = {s.doc_id: read_document(s).text for s in sources}
    assert len(questions) >= 40
    assert sum(q.lang == "ja" for q in questions) >= 8
    assert sum(q.unanswerable for q in questions) >= 8
    for question in questions:
        for doc_id in question.gold_doc_ids:
            assert doc_id in texts, question.id
        for answer in question.answers:
            assert any(answer in texts[d] for d in question.doc_ids), (question.id, answer)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"question": "x", "answers": ["a"]', "line 2: not valid JSON"),
        ('{"answers": ["a"]}', "line 2: question: Field required"),
        ('{"question": "x"}', "line 2: question: an answerable question needs answers"),
        ('{"question": "x", "unanswerable": true, "answers": ["a"]}', "cannot have gold answers"),
        ('{"id": "a", "question": "y", "answers": ["b"]}', "line 2: duplicate id 'a'"),
        ('{"question": "x", "answer": ["typo"]}', "line 2: answer: Extra inputs are not permitted"),
    ],
)
def test_malformed_sets_name_the_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "set.jsonl"
    path.write_text('{"id": "a", "question": "ok", "answers": ["b"]}\n' + line + "\n")
    with pytest.raises(QuestionSetError, match=message):
        load_questions(path)


def test_yaml_sets_load(tmp_path: Path) -> None:
    path = tmp_path / "set.yaml"
    path.write_text("- question: How many troops?\n  answers: ['about 100,000']\n  lang: en\n")
    (question,) = load_questions(path)
    assert question.answers == ["about 100,000"] and question.id == "entry-1"


def _seed_set(tmp_path: Path) -> Path:
    path = tmp_path / "small.jsonl"
    rows = [
        {
            "id": "troops",
            "question": "How many U.S. military personnel are forward deployed in the region?",
            "answers": ["about 100,000"],
            "doc_ids": ["001_dd8c4ca6def8021f"],
            "category": "number",
        },
        {
            "id": "span",
            "question": "What remains the guarantee for Japan's security?",
            "spans": [{"doc_id": "001_dd8c4ca6def8021f", "start": 1646, "end": 1761}],
            "category": "fact",
        },
        {
            "id": "france",
            "question": "What is the capital of France?",
            "unanswerable": True,
            "category": "off_topic",
        },
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


def test_question_set_metrics_reports_and_comparison(tmp_path: Path, encoder: Encoder) -> None:
    settings = Settings(home=tmp_path / "home")
    runs = [
        RunConfig("dense", mode="dense"),
        parse_run("small-chunks:chunk_size=300,chunk_overlap=0"),
    ]
    evaluation = evaluate(_seed_set(tmp_path), runs, settings, encoder=encoder)
    dense = evaluation.runs[0].metrics
    assert dense["questions"] == 3
    assert dense["recall@10"] == 1.0 and dense["ndcg@10"] == 1.0
    assert dense["hit@1"] == 1.0 and dense["passage_hit@1"] == 1.0
    assert dense["abstention_recall"] == 1.0 and dense["false_abstention_rate"] == 0.0
    assert set(dense["by_category"]) == {"number", "fact", "off_topic"}
    assert evaluation.comparison is not None and "small-chunks" in evaluation.comparison_table

    written = write_reports(evaluation, tmp_path / "report")
    results = json.loads((tmp_path / "report" / "results.json").read_text())
    assert [r["name"] for r in results["runs"]] == ["dense", "small-chunks"]
    assert results["runs"][1]["config"] == {
        "mode": Settings().mode,  # the configured mode when a run names none
        "chunk_size": "300",
        "chunk_overlap": "0",
    }
    assert {"ndcg@10", "mrr@10", "recall@10", "recall@100", "hit@1"} <= set(
        results["runs"][0]["metrics"]
    )
    csv_lines = (tmp_path / "report" / "per_query.csv").read_text().splitlines()
    assert len(csv_lines) == 1 + 2 * 3 and csv_lines[0].startswith("run,id,question")
    assert "about 100,000" in (tmp_path / "report" / "per_query.csv").read_text()
    assert (tmp_path / "report" / "recall.png").read_bytes().startswith(b"\x89PNG")
    assert "| dense |" in (tmp_path / "report" / "report.md").read_text()
    assert len(written) == 4

    assert failed_floors(evaluation, [("hit@1", 0.9)]) == []
    assert failed_floors(evaluation, [("hit@1", 1.01)]) == [
        "dense: hit@1 = 1.0000 is below the floor 1.01",
        "small-chunks: hit@1 = 1.0000 is below the floor 1.01",
    ]

    worse = results_json(evaluation)
    worse["runs"][0]["per_query"]["troops"]["quote_rank"] = None
    (tmp_path / "old.json").write_text(json.dumps(worse))
    changes = baseline_changes(evaluation, tmp_path / "old.json")
    assert changes[0] == "dense vs dense: 1 wins, 0 losses"
    assert "troops" in changes[2]


def test_beir_folder_is_indexed_on_its_own_and_ranked(tmp_path: Path, encoder: Encoder) -> None:
    beir = tmp_path / "tiny-beir"
    (beir / "qrels").mkdir(parents=True)
    docs = {
        "d1": ("Coral reefs", "Coral reefs bleach when ocean water becomes too warm."),
        "d2": ("Volcanoes", "Volcanic eruptions release ash and sulfur dioxide into the air."),
        "d3": ("Bees", "Honey bees communicate the location of flowers with a waggle dance."),
    }
    (beir / "corpus.jsonl").write_text(
        "\n".join(json.dumps({"_id": k, "title": t, "text": x}) for k, (t, x) in docs.items())
    )
    (beir / "queries.jsonl").write_text(
        json.dumps({"_id": "q1", "text": "Why do corals bleach?"})
        + "\n"
        + json.dumps({"_id": "q2", "text": "How do bees tell each other where flowers are?"})
        + "\n"
        + json.dumps({"_id": "q3", "text": "not judged"})
    )
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td3\t2\n")
    settings = Settings(home=tmp_path / "home", index_dir=tmp_path / "user-index")
    evaluation = evaluate(beir, [RunConfig("dense")], settings, encoder=encoder)
    metrics = evaluation.runs[0].metrics
    assert metrics["questions"] == 2  # only judged queries
    assert metrics["ndcg@10"] == 1.0 and metrics["mrr@10"] == 1.0
    assert "hit@1" not in metrics  # BEIR has no answer strings to quote
    assert not (tmp_path / "user-index").exists()  # the user's own index is left alone


def _verbatim(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VERBATIM_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([VERBATIM, *args], capture_output=True, text=True, env=env, timeout=600)


def test_cli_gate_and_errors(tmp_path: Path) -> None:
    small = _seed_set(tmp_path)
    passing = _verbatim(
        tmp_path, "eval", str(small), "--min", "hit@1=1.0", "--out", str(tmp_path / "r")
    )
    assert passing.returncode == 0, passing.stderr
    assert "hit@1" in passing.stdout and (tmp_path / "r" / "results.json").exists()
    failing = _verbatim(tmp_path, "eval", str(small), "--min", "ndcg@10=1.01")
    assert failing.returncode == 1 and "below the floor" in failing.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "x", "answers": ["a"]}\n{oops\n')
    malformed = _verbatim(tmp_path, "eval", str(bad))
    assert malformed.returncode == 1 and "bad.jsonl: line 2: not valid JSON" in malformed.stderr
    assert "Traceback" not in malformed.stderr
    usage = _verbatim(tmp_path, "eval", str(small), "--run", "x:nonsense=1")
    assert usage.returncode == 2 and "unknown setting" in usage.stderr


def test_modes_are_runs_over_one_index_and_calibration_is_reported(tmp_path: Path) -> None:
    small = _seed_set(tmp_path)
    result = _verbatim(
        tmp_path,
        "eval",
        str(small),
        "--mode",
        "dense",
        "--mode",
        "bm25",
        "--mode",
        "hybrid",
        "--calibrate",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    runs = json.loads(result.stdout)["runs"]
    assert [r["config"]["mode"] for r in runs] == ["dense", "bm25", "hybrid"]
    for run in runs:
        metrics = run["metrics"]
        threshold = metrics["calibrated_threshold"]
        assert metrics["calibrated_false_abstention_rate"] <= 0.05
        assert f"{run['name']}: VERBATIM_THRESHOLD={threshold}" in result.stderr
    assert len(list((tmp_path / "eval" / "runs").iterdir())) == 1  # one index for all modes


def _result(question: Question, score: float) -> QueryResult:
    quote = Quote(
        rank=1,
        text="t",
        doc_id="d",
        title="T",
        date=None,
        source=None,
        url=None,
        char_start=0,
        char_end=1,
        section=None,
        passage="t",
        passage_start=0,
        score=score,
    )
    answer = Answer(
        question=question.question,
        status="answered",
        quotes=[quote],
        threshold=0.5,
        index_version="v",
        took_ms=1.0,
    )
    return QueryResult(question, [], [], answer, 1.0, None, None)


def test_calibration_keeps_false_abstentions_within_the_bound() -> None:
    answerable = [Question(id=f"a{i}", question="q", answers=["x"]) for i in range(20)]
    unanswerable = [Question(id=f"u{i}", question="q", unanswerable=True) for i in range(4)]
    scores = [0.30 + 0.02 * i for i in range(20)]  # 0.30 .. 0.68
    results = [_result(q, s) for q, s in zip(answerable, scores, strict=True)]
    results += [_result(q, s) for q, s in zip(unanswerable, [0.1, 0.2, 0.31, 0.9], strict=True)]
    calibration = calibrate(results, 0.05)
    assert calibration is not None
    # One answerable question (5% of 20) may be lost: 0.31 is caught, 0.9 cannot be.
    assert 0.31 < calibration.threshold <= 0.32
    assert calibration.false_abstention_rate == 0.05
    assert calibration.abstention_recall == 0.75 and calibration.abstention_precision == 0.75
    strict = calibrate(results, 0.0)
    assert strict is not None and strict.false_abstention_rate == 0.0
    assert strict.abstention_recall == 0.5 and 0.2 < strict.threshold < 0.30
    assert calibrate(results[:20], 0.05) is None  # no unanswerable questions: nothing to choose
