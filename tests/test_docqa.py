"""Extractive QA sets recast as document QA (`verbatim eval set.json.gz`): the article-disjoint
split, the collection written, the unanswerable questions, and a real evaluation over them."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from embeddings.encoder import Encoder
from qa.evaluation.docqa import DocQASlice, is_docqa, load_articles, load_docqa, split_articles
from qa.evaluation.evaluate import evaluate
from qa.evaluation.questions import QuestionSetError
from qa.evaluation.runner import RunConfig
from qa.settings import Settings

FACTS = {
    "Mount_Fuji": (
        "Mount Fuji is the highest mountain in Japan, at 3,776 metres. It last erupted in 1707.",
        [("How high is Mount Fuji?", "3,776 metres"), ("When did Fuji last erupt?", "1707")],
    ),
    "Lake_Biwa": (
        "Lake Biwa is the largest freshwater lake in Japan. It lies in Shiga Prefecture.",
        [("Where is Lake Biwa?", "Shiga Prefecture")],
    ),
    "Shinkansen": (
        "The Shinkansen is a network of high-speed railway lines. The first line opened in 1964.",
        [("When did the first Shinkansen line open?", "1964")],
    ),
    "Sumo": (
        "Sumo is a form of wrestling. A wrestler who forces the other out of the ring wins.",
        [("How does a sumo wrestler win?", "forces the other out of the ring")],
    ),
    "Kyoto%27s_temples": (
        "Kyoto has about 1,600 Buddhist temples. Kinkaku-ji is covered in gold leaf.",
        [("What covers Kinkaku-ji?", "gold leaf")],
    ),
}


def _squad(path: Path, articles: int = 5) -> Path:
    data: dict[str, Any] = {"version": "test", "data": []}
    for n, (title, (context, qas)) in enumerate(list(FACTS.items())[:articles]):
        data["data"].append(
            {
                "title": title,
                "paragraphs": [
                    {
                        "context": context,
                        "qas": [
                            {
                                "id": f"q{n}-{i}",
                                "question": question,
                                "answers": [{"text": answer, "answer_start": context.find(answer)}],
                            }
                            for i, (question, answer) in enumerate(qas)
                        ],
                    }
                ],
            }
        )
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        json.dump(data, handle)
    return path


def test_the_parts_share_no_article_and_are_the_same_every_time(tmp_path: Path) -> None:
    articles = load_articles(_squad(tmp_path / "set.json.gz"))
    assert [a.title for a in articles][-1] == "Kyoto's temples"  # percent-decoded, spaced
    train, held = split_articles(articles, "train"), split_articles(articles, "eval")
    assert len(held) == 1 and len(train) == 4
    assert not {a.title for a in train} & {a.title for a in held}
    assert [a.title for a in split_articles(articles, "train")] == [a.title for a in train]


def test_a_slice_indexes_some_articles_and_asks_the_others_questions_as_unanswerable(
    tmp_path: Path,
) -> None:
    source = _squad(tmp_path / "set.json.gz")
    cut = DocQASlice(part="train", articles=3, withheld=1, questions=10, unanswerable=10)
    docs = tmp_path / "docs"
    (docs).mkdir()
    (docs / "stale.txt").write_text("from an earlier slice", encoding="utf-8")
    questions, corpus = load_docqa(source, docs, cut)
    files = sorted(p.stem for p in docs.glob("*.txt"))
    assert corpus == [docs] and len(files) == 3 and "stale" not in files
    answerable = [q for q in questions if not q.unanswerable]
    unanswerable = [q for q in questions if q.unanswerable]
    assert {d for q in answerable for d in q.doc_ids} <= set(files)
    for question in answerable:  # its answer is in its own article's text
        text = (docs / f"{question.doc_ids[0]}.txt").read_text(encoding="utf-8")
        assert all(answer in text for answer in question.answers)
    indexed_text = " ".join(p.read_text(encoding="utf-8") for p in docs.glob("*.txt"))
    assert unanswerable and all(q.lang == "en" for q in questions)
    withheld = {
        a
        for a, (_, qas) in FACTS.items()
        for q, _ in qas
        if q in {u.question for u in unanswerable}
    }
    assert len(withheld) == 1 and FACTS[withheld.pop()][0] not in indexed_text


def test_a_cut_article_keeps_its_first_paragraphs_and_asks_the_rest_as_unanswerable(
    tmp_path: Path,
) -> None:
    paragraphs = [
        ("Mount Fuji is 3,776 metres high.", [("How high is Fuji?", "3,776 metres")]),
        (
            "It last erupted in 1707. Its height is 3,776 metres.",
            [("When did Fuji last erupt?", "1707"), ("What is Fuji's height?", "3,776 metres")],
        ),
    ]
    article = {
        "title": "Mount Fuji",
        "paragraphs": [
            {
                "context": context,
                "qas": [
                    {"id": f"p{n}-{i}", "question": q, "answers": [{"text": a}]}
                    for i, (q, a) in enumerate(qas)
                ],
            }
            for n, (context, qas) in enumerate(paragraphs)
        ],
    }
    source = tmp_path / "set.json.gz"
    with gzip.open(source, "wt", encoding="utf-8") as handle:
        json.dump({"data": [article] * 5}, handle)
    cut = DocQASlice(part="train", articles=1, withheld=0, paragraphs=1)
    questions, _ = load_docqa(source, tmp_path / "docs", cut)
    (indexed,) = (tmp_path / "docs").glob("*.txt")
    assert indexed.read_text(encoding="utf-8") == "Mount Fuji\n\nMount Fuji is 3,776 metres high.\n"
    asked = {q.question: q.unanswerable for q in questions}
    # the height asked again of the cut paragraph is answered by the kept one: not unanswerable,
    # and not answerable from its own paragraph either, so it is not asked
    assert asked == {"How high is Fuji?": False, "When did Fuji last erupt?": True}


def test_a_file_in_another_layout_is_refused_with_the_layout_it_needs(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"questions": []}', encoding="utf-8")
    assert is_docqa(bad)
    with pytest.raises(QuestionSetError, match="SQuAD's layout"):
        load_articles(bad)
    source = _squad(tmp_path / "set.json.gz")
    with pytest.raises(QuestionSetError, match="fewer than"):
        load_docqa(source, tmp_path / "docs", DocQASlice(part="eval", articles=3, withheld=1))


def test_an_evaluation_over_a_recast_set_scores_quotes_and_abstentions(
    tmp_path: Path, encoder: Encoder
) -> None:
    source = _squad(tmp_path / "set.json.gz")
    cut = DocQASlice(part="train", articles=3, withheld=1, questions=10, unanswerable=10)
    evaluation = evaluate(
        source, [RunConfig("learned")], Settings(home=tmp_path / "home"), docqa=cut, encoder=encoder
    )
    metrics = evaluation.runs[0].metrics
    assert metrics["questions"] == len(evaluation.runs[0].results) >= 4
    assert metrics["ranked_hit@1"] == 1.0  # one short article each: the answer is found
    assert "abstention_recall" in metrics and "hit@1" in metrics
