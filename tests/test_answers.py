"""End to end with the real packaged model: the seed question set, the quote invariant,
abstention, diversity and duplicate merging."""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embeddings.encoder import Encoder
from qa.answer import Answer
from qa.engine import Verbatim
from qa.filters import Filters
from qa.quote_scorer import FEATURES, QuoteScorer
from qa.quotes import answer_types, asked_names
from qa.settings import Settings

from .conftest import load_question_set


def _params() -> list[Any]:
    return [
        pytest.param(q, id=q["id"], marks=pytest.mark.xfail(strict=True, reason=q["known_failure"]))
        if "known_failure" in q
        else pytest.param(q, id=q["id"])
        for q in load_question_set()
    ]


def assert_quotes_exact(engine: Verbatim, answer: Answer) -> None:
    """Each quote is its document's exact text, inside its passage, and no two quotes of the
    answer share any of that text (chunks overlap, so one sentence sits in two of them)."""
    spans = sorted((q.doc_id, q.char_start, q.char_end) for q in answer.quotes)
    for (doc, _, end), (next_doc, next_start, _) in itertools.pairwise(spans):
        assert doc != next_doc or end <= next_start
    for quote in answer.quotes:
        text = engine.document(quote.doc_id).text
        assert text[quote.char_start : quote.char_end] == quote.text
        assert text[quote.passage_start : quote.passage_start + len(quote.passage)] == quote.passage
        assert (
            quote.passage_start <= quote.char_start
            and quote.char_end <= quote.passage_start + len(quote.passage)
        )


def test_question_set_is_big_enough() -> None:
    questions = load_question_set()
    answerable = [q for q in questions if not q.get("unanswerable") and "known_failure" not in q]
    unanswerable = [q for q in questions if q.get("unanswerable") and "known_failure" not in q]
    assert len(answerable) >= 15 and len(unanswerable) >= 5


@pytest.mark.parametrize("question", _params())
def test_seed_question(seed_engine: Verbatim, question: dict[str, Any]) -> None:
    answer = seed_engine.ask(question["question"])
    assert_quotes_exact(seed_engine, answer)
    if question.get("unanswerable"):
        assert answer.status == "no_answer"
        assert all(q.closest_match for q in answer.quotes) and len(answer.quotes) <= 1
    else:
        assert answer.status == "answered"
        top = answer.quotes[0]
        assert any(gold in top.text for gold in question["answers"]), top.text
        assert top.doc_id in question["doc_ids"]
        # Japanese questions are scored by the cross-lingual reader's model (English-only index)
        reader = seed_engine.cross_lingual_reader if question["lang"] == "ja" else None
        scorer = reader.encoder if reader is not None else seed_engine.encoder
        threshold = seed_engine.answer_threshold(scorer.model_id, question["lang"] == "ja")
        assert all(q.score >= threshold for q in answer.quotes)


def test_answer_carries_document_metadata_and_section(seed_engine: Verbatim) -> None:
    answer = seed_engine.ask("How many U.S. military personnel are forward deployed in the region?")
    top = answer.quotes[0]
    assert top.title == "Japan-U.S. Joint Declaration on Security"
    assert top.section == "(2) (ii)"
    assert top.text.startswith("(ii) Meeting the commitments") and top.text.endswith(
        "current level in Japan."
    )
    assert answer.index_version == seed_engine.index.version


def test_a_question_asking_for_an_amount_needs_a_quote_that_states_one(
    seed_engine: Verbatim,
) -> None:
    # "Minister for Foreign Affairs Kishida" is on the subject but states no number.
    asked = seed_engine.ask("How many people work at the Ministry of Foreign Affairs?")
    assert asked.status == "no_answer"
    # The same words without asking for an amount: the signatory line is a fair answer.
    named = seed_engine.ask("Who was the Minister for Foreign Affairs?")
    assert named.status == "answered"
    assert "Kishida" in named.quotes[0].text
    counted = seed_engine.ask("How many U.S. military personnel are forward deployed?")
    assert counted.status == "answered" and "100,000" in counted.quotes[0].text


def test_dates_years_and_numbered_names_state_no_amount(seed_engine: Verbatim) -> None:
    # What the answer-type features see: "July 1, 2014" and "2+2" date and name things, they
    # count nothing; "eleven" counts. The ranker weighs these (amount_stated, amount_missing).
    dated = "On July 1, 2014, at the 2+2 meeting, the cabinet decided to develop security laws."
    assert answer_types(dated) == (False, True)  # (states a number, holds a date)
    assert answer_types("In all, eleven security laws are to be developed.") == (True, False)
    assert answer_types("(4) The G7 met in April 1996 and 2014年7月1日.") == (False, True)
    assert answer_types("約600人が登校した。") == (True, False)
    # and on the seed documents, the troop question's quote is the 100,000 sentence
    troops = seed_engine.ask("How many U.S. troops are in the region?")
    assert "100,000" in troops.quotes[0].text


def _engine_over(
    tmp_path: Path, encoder: Encoder, files: dict[str, str], **options: Any
) -> Verbatim:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, text in files.items():
        (corpus / name).write_text(text, encoding="utf-8")
    engine = Verbatim(Settings(home=tmp_path / "home", **options), encoder)
    engine.build_index([corpus])
    return engine


def test_one_document_does_not_fill_every_slot(tmp_path: Path, encoder: Encoder) -> None:
    many = "\n\n".join(
        [
            "Troops of both countries trained together on Okinawa in spring.",
            "Marines and ground forces held a joint landing drill near Naha.",
            "Soldiers from the two armies practised joint air defence at Kadena.",
            "Both navies exercised together with their troops off the coast of Sasebo.",
        ]
    )
    engine = _engine_over(
        tmp_path,
        encoder,
        {
            "many.txt": many,
            "other.txt": "Joint troop training exercises are held every year in Hokkaido.",
        },
        threshold=0.0,
    )
    answer = engine.ask("Where do the troops of both countries train together?", top_k=3)
    docs = [q.doc_id for q in answer.quotes]
    assert len(docs) == 3 and "other" in docs and docs.count("many") == 2


def test_near_duplicate_quotes_are_merged(tmp_path: Path, encoder: Encoder) -> None:
    paragraph = "The alliance remains the cornerstone of peace and stability in the region."
    engine = _engine_over(
        tmp_path,
        encoder,
        {
            "copy1.txt": paragraph,
            "copy2.txt": paragraph.replace("region", "region."),
            "unrelated.txt": "The cafeteria serves lunch between noon and two every weekday.",
        },
        threshold=0.0,
    )
    answer = engine.ask("What is the cornerstone of peace and stability?", top_k=3)
    texts = [q.text for q in answer.quotes]
    assert sum("cornerstone" in t for t in texts) == 1


def test_quotes_of_one_answer_never_repeat_a_sentence(tmp_path: Path, encoder: Encoder) -> None:
    # Short sentences with no words in common: chunks of three overlap by one sentence, and
    # windows of one to three sentences overlap without repeating each other's words.
    sentences = [
        "Naval patrols guard northern sea lanes.",
        "Engineers rebuilt three damaged runways.",
        "Budget talks stalled over housing costs.",
        "Satellite links connect command posts.",
        "Medical teams trained nurses for relief.",
        "Cyber specialists traced network probes.",
    ]
    engine = _engine_over(
        tmp_path,
        encoder,
        {"ops.txt": " ".join(sentences)},
        threshold=-1.0,
        chunk_size=120,
        chunk_overlap=40,
    )
    answer = engine.ask("How were runways and sea lanes protected?", top_k=5)
    assert len(answer.quotes) >= 3
    assert_quotes_exact(engine, answer)


_WORDS = st.sampled_from(
    [
        "The",
        "alliance",
        "U.S.",
        "Japan",
        "troops",
        "(ii)",
        "1996.",
        "Dec.",
        "日米同盟。",
        "100,000",
        "\n",
        "\n\n",
        "# Heading",
        "- item",
        "3.5",
        "agreed!",
        "defense",
        "cooperation.",
    ]
)


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(_WORDS, min_size=1, max_size=150).map(" ".join),
    st.sampled_from(["troops", "Japan alliance", "日米"]),
)
def test_every_quote_is_exact_for_arbitrary_documents(
    encoder: Encoder, raw: str, question: str
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        corpus = Path(directory) / "corpus"
        corpus.mkdir()
        (corpus / "doc.txt").write_text(raw, encoding="utf-8")
        engine = Verbatim(
            Settings(
                home=Path(directory) / "home", threshold=-1.0, chunk_size=120, chunk_overlap=40
            ),
            encoder,
        )
        if engine.build_index([corpus]).chunks_total == 0:
            return  # nothing but whitespace: nothing to quote
        answer = engine.ask(question, top_k=5)
        assert_quotes_exact(engine, answer)  # (no quotes at all when no sentence is quotable)


def test_filters_restrict_answers_to_matching_documents(seed_engine: Verbatim) -> None:
    question = "What is the cornerstone of regional peace and security?"
    only_2014 = seed_engine.ask(
        question, top_k=5, filters=Filters(date_from="2014", date_to="2014")
    )
    assert only_2014.quotes and {q.doc_id for q in only_2014.quotes} == {"000_ca5c4864f6c7d21a"}
    by_id = seed_engine.ask(question, top_k=5, filters=Filters(doc_ids=["001_dd8c4ca6def8021f"]))
    assert {q.doc_id for q in by_id.quotes} == {"001_dd8c4ca6def8021f"}
    nothing = seed_engine.ask(question, filters=Filters(lang="ja"))
    assert nothing.status == "no_answer" and nothing.quotes == []


def test_what_a_question_names_is_looked_for_in_the_quote_and_its_document(
    seed_engine: Verbatim,
) -> None:
    # Capitalised runs and years are names; a word capitalised because it opens the question
    # is not; Japanese has no capitals, so the features stay off for it.
    names = asked_names("Besides Okinawa, where did the Security Consultative Committee meet?")
    assert names == [{"okinawa"}, {"security", "consultative", "committee"}]
    assert asked_names("Who was President of the United States in 1996?") == [
        {"president", "of", "the", "united", "states"},
        {"1996"},
    ]
    assert asked_names("日米安全保障協議委員会はいつ開かれましたか?") == []
    # On the seed documents: Tokyo is in the 2+2 statement, Boston in none of them
    column = {name: i for i, name in enumerate(FEATURES)}
    for city, in_documents in (("Tokyo", True), ("Boston", False)):
        _, windows, features = seed_engine.quote_features(f"When did the 2+2 meet in {city}?")
        assert set(features[:, column["names_asked"]]) == {1.0}
        absent = features[:, column["names_missing_document"]]
        assert bool(absent.min() == 0.0) is in_documents, city
        holding = [
            row
            for row, window in enumerate(windows)
            if city
            in seed_engine.index.entries[window.span[0]].document.text[
                window.span[1] : window.span[2]
            ]
        ]
        assert bool(holding) is in_documents
        assert all(features[row, column["names_missing"]] == 0.0 for row in holding)


def test_what_the_documents_never_mention_is_a_feature_of_every_quote(
    seed_engine: Verbatim,
) -> None:
    # The share of a question's keyword weight the collection never holds: none of an alliance
    # question, most of a question about Sweden's consumption tax, all of a made-up one.
    keywords, tokenize = seed_engine.index.keywords, seed_engine.tokenizer.tokenize
    assert (
        keywords.unseen_share(tokenize("What is the alliance between Japan and the United States?"))
        == 0
    )
    assert 0.5 < keywords.unseen_share(tokenize("What was the consumption tax in Sweden?")) < 1
    assert keywords.unseen_share(tokenize("zzzqqq blorf")) == 1.0
    _, _, features = seed_engine.quote_features("What was the consumption tax in Sweden?")
    unseen = features[:, FEATURES.index("question_unseen")]
    assert len(set(unseen)) == 1 and unseen[0] > 0.5  # the question's, on every quote


class _RankedConfidence:
    """The shipped scorer's ranking, with a confidence that is sure of one chosen quote only
    (by rank position): what the answer threshold sees."""

    def __init__(self, learned: QuoteScorer, sure_position: int) -> None:
        self.learned = learned
        self.sure_position = sure_position

    def rank(self, quotes: Any) -> Any:
        return self.learned.rank(quotes)

    def confidence(self, quotes: Any, ranks: Any) -> Any:
        sure = ranks * 0.0
        sure[ranks.argsort()[::-1][self.sure_position]] = 1.0
        return sure

    def threshold(self, model_id: str, cross_lingual: bool, lang: str = "") -> float:
        return 0.5


def test_the_best_ranked_quote_decides_whether_a_question_is_answered(
    seed_engine: Verbatim, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The confidence model was fitted and calibrated on best quotes only: a lower-ranked quote
    # it happens to be sure of must not turn an abstention into an answer.
    question = "What did the 2+2 meeting decide about the Guidelines?"
    learned = seed_engine.quote_scorer
    monkeypatch.setattr(seed_engine, "quote_scorer", _RankedConfidence(learned, 3))
    abstained = seed_engine.ask(question)
    assert abstained.status == "no_answer" and len(abstained.quotes) == 1
    monkeypatch.setattr(seed_engine, "quote_scorer", _RankedConfidence(learned, 0))
    answered = seed_engine.ask(question)
    assert answered.status == "answered"
    assert answered.quotes[0].text == abstained.quotes[0].text  # the same best quote, now sure
