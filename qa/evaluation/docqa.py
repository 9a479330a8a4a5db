"""Extractive QA sets (SQuAD's JSON layout, plain or gzipped) recast as document QA.

Each article becomes one document (its title, then its paragraphs), the articles of one part go
into one index, and their questions are asked of the whole collection: a quote is right when it
holds a gold answer string. Unanswerable questions are the questions of articles withheld from
the collection, asked of it anyway: written about something, with the answer nowhere indexed.

Articles are split once, by a fixed seed, into a training part (what the quote ranker learns
and its threshold is calibrated on) and an evaluation part (what is reported): no article, and
so no question, is in both. A `DocQASlice` takes the first articles of a part for the
collection, the next ones as withheld, and samples questions from each, all by the same seed,
so a slice is the same on every machine. With `paragraphs`, an indexed article is cut to its
first paragraphs: only their questions are answerable, and the questions of the paragraphs cut
away whose answers the collection nowhere holds join the unanswerable ones, asked about the very
topic of an indexed document. `small_slices` makes collections of a few short documents, the
size of a team's folder, whose keyword statistics differ from a big collection's.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from corpus.loader import safe_doc_id
from corpus.metadata import detect_language
from qa.evaluation.questions import Question, QuestionSetError

Part = Literal["train", "eval"]
SPLIT_SEED = 20261207
EVAL_SHARE = 0.2  # of a set's articles, in the evaluation part


@dataclass(frozen=True)
class QA:
    id: str
    question: str
    answers: list[str]  # gold answer texts
    paragraph: int  # the article's paragraph it was asked of


@dataclass(frozen=True)
class Article:
    title: str
    paragraphs: list[str]
    qas: list[QA]

    @property
    def doc_id(self) -> str:
        """The title where it is a safe id already, else what is safe of it and a digest (the
        unsafe characters of Japanese titles would otherwise leave "_" for many)."""
        safe = safe_doc_id(self.title.replace(" ", "_"))
        if safe == self.title.replace(" ", "_"):
            return safe
        return f"{safe.strip('_')[:40]}_{hashlib.sha1(self.title.encode()).hexdigest()[:10]}"

    @property
    def text(self) -> str:
        return "\n\n".join([self.title, *self.paragraphs]) + "\n"


@dataclass(frozen=True)
class DocQASlice:
    """Which articles and questions of a part to use."""

    part: Part = "eval"
    skip: int = 0  # articles of the part passed over first (another slice's)
    articles: int = 40  # indexed: the collection asked
    withheld: int = 10  # not indexed: their questions are the unanswerable ones
    questions: int = 1000  # answerable, sampled from the indexed articles
    unanswerable: int = 250  # sampled from the withheld articles
    paragraphs: int = 0  # an indexed article's first paragraphs only (0: all of them)

    def cut(self, article: Article) -> Article:
        """The article as indexed: its first `paragraphs`, with only their questions."""
        if not self.paragraphs:
            return article
        return Article(
            title=article.title,
            paragraphs=article.paragraphs[: self.paragraphs],
            qas=[qa for qa in article.qas if qa.paragraph < self.paragraphs],
        )


def small_slices(part: Part, count: int, skip: int = 0) -> list[DocQASlice]:
    """`count` collections of two articles' first four paragraphs each (about 5 KB of English),
    asked the questions of those paragraphs and 30 unanswerable ones: of the next two articles
    and of the paragraphs cut away."""
    return [
        DocQASlice(
            part=part,
            skip=skip + 4 * n,
            articles=2,
            withheld=2,
            questions=100,
            unanswerable=30,
            paragraphs=4,
        )
        for n in range(count)
    ]


def is_docqa(path: Path) -> bool:
    """A SQuAD-layout file: `.json.gz`, or a `.json` whose top level is an object (a question
    set in JSON is a list)."""
    if not path.is_file():
        return False
    if path.name.endswith(".json.gz"):
        return True
    if path.suffix != ".json":
        return False
    with path.open(encoding="utf-8") as handle:
        head = handle.read(64).lstrip()
    return head.startswith("{")


def load_articles(path: Path) -> list[Article]:
    """Every article of the file, in file order."""
    try:
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as handle:
            data = json.load(handle)
        return [_article(item) for item in data["data"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise QuestionSetError(
            f"{path}: not an extractive QA set in SQuAD's layout"
            f" ({{'data': [{{'title', 'paragraphs': [{{'context', 'qas'}}]}}]}}): {exc}"
        ) from exc


def _article(item: dict[str, Any]) -> Article:
    title = urllib.parse.unquote(str(item["title"])).replace("_", " ").strip()
    paragraphs, qas = [], []
    for n, paragraph in enumerate(item["paragraphs"]):
        paragraphs.append(" ".join(str(paragraph["context"]).split()))
        for qa in paragraph["qas"]:
            answers = sorted({" ".join(a["text"].split()) for a in qa["answers"] if a["text"]})
            if answers and not qa.get("is_impossible", False):
                qas.append(QA(str(qa["id"]), " ".join(str(qa["question"]).split()), answers, n))
    return Article(title=title, paragraphs=paragraphs, qas=qas)


def split_articles(articles: list[Article], part: Part) -> list[Article]:
    """The articles of `part`, in the fixed shuffled order (article-disjoint parts)."""
    order = list(range(len(articles)))
    random.Random(SPLIT_SEED).shuffle(order)
    cut = max(1, round(len(order) * EVAL_SHARE))
    chosen = order[:cut] if part == "eval" else order[cut:]
    return [articles[i] for i in chosen]


def load_docqa(path: Path, docs: Path, slice_: DocQASlice) -> tuple[list[Question], list[Path]]:
    """Write the slice's collection under `docs` (one text file per indexed article, replacing
    whatever was there) and return its questions, answerable then unanswerable."""
    part = split_articles(load_articles(path), slice_.part)
    if len(part) < slice_.skip + slice_.articles + slice_.withheld:
        raise QuestionSetError(
            f"{path}: the {slice_.part} part has {len(part)} articles, fewer than the"
            f" {slice_.skip} skipped + {slice_.articles} indexed + {slice_.withheld} withheld"
            " asked for"
        )
    lang = detect_language(part[0].paragraphs[0])
    part = part[slice_.skip :]
    whole = part[: slice_.articles]
    indexed = [slice_.cut(article) for article in whole]
    withheld = part[slice_.articles : slice_.articles + slice_.withheld]
    docs.mkdir(parents=True, exist_ok=True)
    wanted = {f"{a.doc_id}.txt" for a in indexed}
    for stale in docs.glob("*.txt"):
        if stale.name not in wanted:
            stale.unlink()
    for article in indexed:
        target = docs / f"{article.doc_id}.txt"
        if not target.exists() or target.read_text(encoding="utf-8") != article.text:
            target.write_text(article.text, encoding="utf-8")
    rng = random.Random(SPLIT_SEED)
    answerable = [(a, qa) for a in indexed for qa in a.qas]
    unanswerable = [(a, qa) for a in withheld for qa in a.qas]
    if slice_.paragraphs:
        unanswerable += _cut_away(whole, indexed)
    questions = [
        Question(
            id=qa.id,
            question=qa.question,
            answers=qa.answers,
            doc_ids=[article.doc_id],
            category=f"{slice_.part}-answerable",
            lang=lang,
        )
        for article, qa in _sample(rng, answerable, slice_.questions)
    ] + [
        Question(
            id=qa.id,
            question=qa.question,
            unanswerable=True,
            category=f"{slice_.part}-withheld",
            lang=lang,
        )
        for _, qa in _sample(rng, unanswerable, slice_.unanswerable)
    ]
    return questions, [docs]


def _cut_away(whole: list[Article], indexed: list[Article]) -> list[tuple[Article, QA]]:
    """Questions of the paragraphs cut from indexed articles whose answers the collection
    nowhere holds: unanswerable, and about the very topic of a document it does hold."""
    text = "\n".join(article.text for article in indexed)
    kept = {qa.id for article in indexed for qa in article.qas}
    return [
        (article, qa)
        for article in whole
        for qa in article.qas
        if qa.id not in kept and not any(answer in text for answer in qa.answers)
    ]


def _sample(rng: random.Random, items: list[Any], count: int) -> list[Any]:
    return rng.sample(items, count) if count < len(items) else items
