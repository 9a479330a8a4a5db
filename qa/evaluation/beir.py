"""BEIR folders (`corpus.jsonl`, `queries.jsonl`, `qrels/test.tsv`) as question sets.

The corpus is written out as one text file per document (title line, blank line, text), the way
a user's folder looks, and indexed by the ordinary pipeline into an index of its own.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from corpus.loader import safe_doc_id
from corpus.metadata import detect_language
from qa.evaluation.questions import Question, QuestionSetError

Qrels = dict[str, dict[str, int]]


def is_beir(path: Path) -> bool:
    return path.is_dir() and (path / "corpus.jsonl").exists() and (path / "queries.jsonl").exists()


def write_corpus(folder: Path, target: Path, limit: int = 0) -> int:
    """Write the BEIR corpus under `target` (existing files are kept); returns the count."""
    target.mkdir(parents=True, exist_ok=True)
    count = 0
    with (folder / "corpus.jsonl").open(encoding="utf-8") as lines:
        for line in lines:
            if limit and count >= limit:
                break
            doc = json.loads(line)
            path = target / f"{safe_doc_id(str(doc['_id']))}.txt"
            if not path.exists():
                title = str(doc.get("title") or "").strip()
                body = f"{title}\n\n{doc['text']}\n" if title else f"{doc['text']}\n"
                path.write_text(body, encoding="utf-8")
            count += 1
    return count


def load_beir(folder: Path, split: str = "test") -> tuple[list[Question], Qrels]:
    """The queries that have judgements in `split`, and the graded judgements themselves."""
    qrels_path = folder / "qrels" / f"{split}.tsv"
    if not qrels_path.exists():
        raise QuestionSetError(f"{folder}: no qrels/{split}.tsv")
    qrels: Qrels = {}
    with qrels_path.open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            grade = int(row["score"])
            if grade > 0:
                qrels.setdefault(row["query-id"], {})[safe_doc_id(row["corpus-id"])] = grade
    questions = []
    with (folder / "queries.jsonl").open(encoding="utf-8") as lines:
        for line in lines:
            query = json.loads(line)
            query_id = str(query["_id"])
            if query_id in qrels:
                questions.append(
                    Question(
                        id=query_id,
                        question=query["text"],
                        doc_ids=sorted(qrels[query_id]),
                        category=folder.name,
                        lang=_lang(query["text"]),
                    )
                )
    return questions, qrels


def _lang(text: str) -> str:
    return detect_language(text)
