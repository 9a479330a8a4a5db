"""The one core API every door calls: build the index, ask, search, list documents."""

from __future__ import annotations

import functools
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from corpus.loader import default_corpus_dir
from corpus.metadata import detect_language
from corpus.models import Document
from corpus.tokenize import KeywordTokenizer
from embeddings.e5 import MODEL_NAME as E5_MODEL_NAME
from embeddings.encoder import (
    DEFAULT_MODEL,
    Encoder,
    EncoderConfig,
    ModelLoadError,
    model_for_languages,
)
from embeddings.store import set_search_threads
from qa.answer import Answer, Explanation, Passage, Quote, SearchResult
from qa.batching import QuestionBatcher
from qa.conversation import (
    Conversation,
    ConversationStore,
    Resolution,
    Turn,
    lifted,
    new_conversation_id,
    resolve,
)
from qa.crosslingual import CrossLingualReader
from qa.filters import Filters
from qa.index import (
    BuildProgress,
    BuildReport,
    Index,
    IndexBuilder,
    IndexNotFoundError,
    built_model,
    current_version_dir,
    load_index,
)
from qa.logs import get_logger
from qa.quote_scorer import QuoteScorer, make_quote_scorer
from qa.quotes import QuoteSelector, QuoteWindow, ScoredQuote, diverse
from qa.rerank import Reranker, make_reranker
from qa.retriever import Candidate, Mode, Query, Selection, make_retriever
from qa.settings import DEFAULT_COLLECTION, Settings
from qa.state import State, open_state

# Answered by the default configuration (eval/seed_questions.jsonl: s01, s04, j01)
SEED_EXAMPLES = (
    "How many U.S. military personnel are forward deployed in the region?",
    "Where and when was the 2+2 Security Consultative Committee meeting held?",
    "地域に前方展開している米軍の兵力はどのくらいですか?",
)
# An example question about a document, by its language (others are asked in English).
_TITLE_QUESTION = {"en": "What does {title} say?", "ja": "「{title}」には何が書かれていますか?"}
_log = get_logger("verbatim.engine")


@functools.cache
def _seed_ids() -> frozenset[str]:
    """The packaged seed documents' ids (read once: the package does not change)."""
    return frozenset(path.stem for path in default_corpus_dir().glob("*.txt"))


def _shared_encoder(config: EncoderConfig) -> Encoder:
    """One encoder per model and configuration in a process (loaded on first use): engines,
    their indexes and the cross-lingual reader share it instead of loading ~0.8 GB each."""
    return _encoder_of(replace(config, model=Encoder(config).model_id))


@functools.lru_cache(maxsize=4)
def _encoder_of(config: EncoderConfig) -> Encoder:
    return Encoder(config)


class DocumentNotFoundError(KeyError):
    pass


@dataclass(frozen=True)
class _Request:
    """What a caller asked beside the question, carried to where its batch is answered."""

    started: float
    index: Index  # the index when it was asked: its answer comes from that version
    top_k: int | None
    filters: Filters | None
    mode: Mode | None
    explain: bool
    # in a conversation: the question as asked (retrieval reads `resolution.query`)
    asked: str = ""
    resolution: Resolution | None = None


class Verbatim:
    """Answers questions from an index with exact quotes.

    The encoder loads once and is shared; the index is loaded on first use and reloaded when
    a build swaps in a new version, so a long-running server picks up re-indexes.
    """

    def __init__(self, settings: Settings | None = None, encoder: Encoder | None = None) -> None:
        self.settings = settings or Settings()
        self._encoders = {encoder.model_id: encoder} if encoder is not None else {}
        set_search_threads(1)  # one question per search: OpenMP threads only add overhead
        self.tokenizer = KeywordTokenizer(self.settings.tokenizer)
        self.quote_scorer: QuoteScorer = make_quote_scorer(
            self.settings.quote_scorer,
            self.settings.quote_model,
            self.settings.quote_keyword_weight,
            self.settings.resolved_models_dir,
        )
        self._reranker: Reranker | None = None
        self._reranker_ready = False
        self._reader: CrossLingualReader | None = None
        self._reader_ready = False
        self._reader_lock = threading.Lock()
        self._index: Index | None = None
        self._examples: tuple[str, list[str]] | None = None  # (index version, questions)
        self._state: State | None = None
        self._lock = threading.Lock()
        self.batcher = QuestionBatcher(
            self.read_questions, self.settings.query_batch, self.settings.query_batch_wait_ms
        )

    # ------------------------------------------------------------ indexing

    def build_index(
        self, paths: Sequence[Path] | None = None, progress: BuildProgress | None = None
    ) -> BuildReport:
        """Index `paths` (default: the packaged seed corpus) incrementally and swap it in."""
        report = self._builder().build(list(paths) if paths else [default_corpus_dir()], progress)
        self.reload()
        report.unread_languages = self._unread_languages()
        if report.unread_languages:
            # at INFO: the report carries it, and each door tells its user once
            _log.info(
                "documents_in_unread_languages",
                model=self.encoder.model_id,
                documents=report.unread_languages,
                advice=f"index them with VERBATIM_MODEL={E5_MODEL_NAME}",
            )
        return report

    def unread_languages_note(self, report: BuildReport) -> str | None:
        """What a user should know about documents the model cannot read, if there are any."""
        if not report.unread_languages:
            return None
        counts = ", ".join(f"{n} in {lang}" for lang, n in report.unread_languages.items())
        return (
            f"documents the model {self.encoder.model_id} cannot read ({counts}): questions about"
            " them are read by the cross-lingual reader at question time, slow on a large corpus"
            " (~0.2 s a question on JaQuAD). Index them with"
            f" VERBATIM_MODEL={E5_MODEL_NAME} instead."
        )

    def _unread_languages(self) -> dict[str, int]:
        """Documents per language the encoder cannot read (see `BuildReport`)."""
        counts = Counter(e.document.lang for e in self.index.entries.values())
        return {lang: n for lang, n in sorted(counts.items()) if not self._understood(lang)}

    @property
    def encoder(self) -> Encoder:
        """The encoder questions are read with: the configured model's (`VERBATIM_MODEL`),
        else the one the index was built with (chosen from its documents' languages), else,
        before any index, the default model's."""
        built = built_model(self.settings.resolved_index_dir)
        return self._encoder_for(self.settings.model or built or DEFAULT_MODEL)

    def _encoder_for(self, model: str) -> Encoder:
        config = replace(self.settings.encoder, model=model)
        model_id = Encoder(config).model_id
        if model_id not in self._encoders:
            self._encoders[model_id] = _shared_encoder(config)
        return self._encoders[model_id]

    def _encoder_for_languages(self, languages: Counter[str]) -> Encoder:
        return self._encoder_for(model_for_languages(languages))

    def _builder(self) -> IndexBuilder:
        configured = bool(self.settings.model)
        return IndexBuilder(
            self.settings.resolved_index_dir,
            self._encoder_for(self.settings.model or DEFAULT_MODEL),
            self.settings.chunker,
            self.tokenizer,
            store=self.settings.store,
            max_file_bytes=int(self.settings.max_file_mb * 1024 * 1024),
            parse_limits=self.settings.parse_limits,
            choose_encoder=None if configured else self._encoder_for_languages,
        )

    def prepare_shard(
        self,
        paths: Sequence[Path] | None,
        shard: int,
        shards: int,
        progress: BuildProgress | None = None,
    ) -> BuildReport:
        """Encode this machine's share of the documents into the shared staging collection; a
        later `build_index` anywhere takes those vectors instead of encoding (docs/scaling.md)."""
        return self._builder().prepare(
            list(paths) if paths else [default_corpus_dir()], shard, shards, progress
        )

    def prepare_models(self) -> None:
        """Load every model a question may need, the encoder and the cross-lingual reader,
        converting and exporting them into the models folder on first use (about 40 s and
        1.5 GB for the reader): a later process's first question only loads them."""
        self.encoder.load()
        self.cross_lingual_reader  # noqa: B018 - loading is the point

    def ensure_index(self, progress: BuildProgress | None = None) -> BuildReport | None:
        """Build the seed documents into the default collection when it has no index yet, so
        asking works with no setup; another collection must have been indexed."""
        if current_version_dir(self.settings.resolved_index_dir) is not None:
            return None
        name = self.settings.collection
        if name != DEFAULT_COLLECTION:
            raise IndexNotFoundError(
                f"no collection {name!r}: index it with `verbatim index --collection {name} PATH`"
            )
        return self.build_index(None, progress)

    def prepare(self, progress: BuildProgress | None = None) -> BuildReport | None:
        """Everything a long-running door needs before its first question, so none waits for a
        model: the encoder, the index (built when there is none), the lazy parts (FAISS, BM25,
        the reranker) through one warm-up question, and the cross-lingual reader's model,
        loaded beside them in its own thread."""
        reader = threading.Thread(target=lambda: self.cross_lingual_reader, daemon=True)
        reader.start()
        self.encoder.load()
        report = self.ensure_index(progress)
        self.ask("warm-up")
        reader.join()
        return report

    @property
    def index(self) -> Index:
        directory = current_version_dir(self.settings.resolved_index_dir)
        with self._lock:
            if self._index is None or self._index.directory != directory:
                # a configured model must be the index's; otherwise the index names its own
                model = self.settings.model
                self._index = load_index(
                    self.settings.resolved_index_dir,
                    self._encoder_for(model).model_id if model else None,
                    self.settings.store,
                    self.settings.verify_index,
                )
            return self._index

    def check_ready(self) -> None:
        """Raise when a question could not be answered now (e.g. Milvus is unreachable)."""
        len(self.index.chunk_store)

    def reload(self) -> None:
        with self._lock:
            self._index = None

    # ------------------------------------------------------------ questions

    def ask(
        self,
        question: str,
        top_k: int | None = None,
        filters: Filters | None = None,
        mode: Mode | None = None,
        explain: bool = False,
        conversation: Conversation | None = None,
    ) -> Answer:
        """The quotes that answer `question`, or `no_answer` with the closest one flagged.

        In a `conversation`, a follow-up is read with the earlier turn it points back to
        (`qa.conversation.resolve`; the answer's `context` names it), and the question is
        added to the conversation as its next turn (saved by `converse`)."""
        request = self._request(question, top_k, filters, mode, explain)
        if conversation is None:
            return self.batcher.run(question, partial(self._answer, request))
        resolution = (
            resolve(question, conversation, self.tokenizer)
            if self.settings.follow_ups
            else Resolution(question)
        )
        request = replace(request, asked=question, resolution=resolution)
        answer = self.batcher.run(resolution.query, partial(self._answer, request))
        quoted = [q.doc_id for q in answer.quotes if not q.closest_match]
        conversation.turns.append(Turn(question, resolution.query, list(dict.fromkeys(quoted))))
        conversation.updated = time.time()
        return answer.model_copy(update={"conversation_id": conversation.conversation_id})

    # ------------------------------------------------------------ conversations

    @property
    def state(self) -> State:
        """Conversations, feedback, de-duplication and rate windows (`VERBATIM_STATE_URL`)."""
        with self._lock:
            if self._state is None:
                self._state = open_state(
                    self.settings.state_url,
                    self.settings.home,
                    self.settings.conversation_ttl_s,
                    self.settings.conversation_max_turns,
                )
            return self._state

    @property
    def conversations(self) -> ConversationStore:
        return self.state.conversations

    def converse(self, question: str, conversation: Conversation, **options: Any) -> Answer:
        """`ask` as the next turn of `conversation`, which is then saved."""
        answer = self.ask(question, conversation=conversation, **options)
        self.conversations.save(conversation)
        return answer

    def conversation(self, conversation_id: str, owner: str = "") -> Conversation | None:
        """A stored conversation `owner` may continue; None when unknown, expired or another
        owner's (the same answer: another owner's conversations are not there for them)."""
        found = self.conversations.get(conversation_id)
        return found if found is not None and found.owner == owner else None

    def conversation_for(
        self, key: str, owner: str = "", idle_restart_s: float | None = None
    ) -> Conversation:
        """The conversation stored under a door's own `key` (a Slack thread), or a new one
        under it; also new when idle longer than `idle_restart_s` (a DM after a pause)."""
        found = self.conversation(key, owner)
        if found is None:
            return Conversation(key, owner=owner)
        if idle_restart_s is not None and time.time() - found.updated > idle_restart_s:
            return Conversation(key, owner=owner)
        return found

    @staticmethod
    def new_conversation(owner: str = "") -> Conversation:
        return Conversation(new_conversation_id(), owner=owner)

    def _answer(self, request: _Request, query: Query) -> Answer:
        top_k = request.top_k or self.settings.top_k
        index, mode = request.index, request.mode or self.settings.mode
        query, candidates = self._candidates(
            index, query, max(self.settings.candidates, top_k), request.filters, mode
        )
        resolution = request.resolution
        if resolution is not None and resolution.preferred:
            candidates = lifted(candidates, resolution.preferred, self.settings.follow_up_lift)
        # Enough distinct quotes for `diverse` to spread top_k over documents; comparing every
        # quote with every kept one was the largest cost of an answer after the encoder.
        selector = QuoteSelector(index, self.tokenizer, self.quote_scorer)
        ranked = selector.rank(query, candidates, limit=max(5 * top_k, 25))
        threshold = self.answer_threshold(
            query.model_id, selector.cross_lingual(query, candidates), query.lang
        )
        # The confidence model was fitted and its threshold calibrated on each question's best
        # quote by rank: that quote decides whether the question is answered at all.
        best_clears = bool(ranked) and ranked[0].score >= threshold
        answering = [q for q in ranked if q.score >= threshold] if best_clears else []
        if answering:
            chosen, status, closest = diverse(answering, top_k), "answered", False
        else:
            chosen, status, closest = ranked[:1], "no_answer", True
        return Answer(
            question=request.asked or query.text,
            status=status,
            quotes=[
                self._quote(
                    index,
                    q,
                    rank,
                    closest,
                    self._explain(query, q.candidate, mode) if request.explain else None,
                )
                for rank, q in enumerate(chosen, 1)
            ],
            threshold=round(threshold, 4),
            index_version=index.version,
            took_ms=round((time.perf_counter() - request.started) * 1000, 2),
            context=resolution.context if resolution is not None else None,
        )

    def quote_features(
        self, question: str
    ) -> tuple[Query, list[QuoteWindow], npt.NDArray[np.float32]]:
        """Every possible quote `ask` would weigh for `question`, with its features (columns as
        `qa.quote_scorer.FEATURES`) and the question as read: what the quote ranker learns from."""
        index = self.index
        query = self.read_questions([question])[0]
        query, candidates = self._candidates(
            index, query, self.settings.candidates, None, self.settings.mode
        )
        windows, features = QuoteSelector(index, self.tokenizer, self.quote_scorer).features(
            query, candidates
        )
        return query, windows, features

    def answer_threshold(self, model_id: str, cross_lingual: bool = False, lang: str = "") -> float:
        """The score a best quote must reach, for quotes scored with `model_id`'s vectors and a
        question in `lang` (of documents in another language, when `cross_lingual`)."""
        if self.settings.threshold is not None:
            return self.settings.threshold
        return self.quote_scorer.threshold(model_id, cross_lingual, lang)

    def search(
        self,
        question: str,
        top_k: int | None = None,
        filters: Filters | None = None,
        mode: Mode | None = None,
        explain: bool = False,
    ) -> SearchResult:
        """Ranked passages for `question`, without quote selection."""
        request = self._request(question, top_k, filters, mode, explain)
        return self.batcher.run(question, partial(self._search, request))

    def _search(self, request: _Request, query: Query) -> SearchResult:
        index, mode = request.index, request.mode or self.settings.mode
        top_k = request.top_k or self.settings.top_k
        query, candidates = self._candidates(
            index, query, top_k, request.filters, mode, quotes=False
        )
        passages = [
            Passage(
                rank=rank,
                chunk_id=c.chunk.chunk_id,
                doc_id=c.chunk.doc_id,
                title=index.entries[c.chunk.doc_id].document.title,
                text=c.chunk.text,
                char_start=c.chunk.char_start,
                char_end=c.chunk.char_end,
                section=c.chunk.section,
                score=round(c.score, 4),
                explain=self._explain(query, c, mode) if request.explain else None,
            )
            for rank, c in enumerate(candidates, 1)
        ]
        return SearchResult(
            question=query.text,
            passages=passages,
            index_version=index.version,  # the version these passages came from
            took_ms=round((time.perf_counter() - request.started) * 1000, 2),
        )

    def _request(
        self,
        question: str,
        top_k: int | None,
        filters: Filters | None,
        mode: Mode | None,
        explain: bool,
    ) -> _Request:
        """What the caller asked, checked before it joins a batch: an empty question, or no
        index the configured model can read, fails its caller alone, before any encoding."""
        started = time.perf_counter()
        if not question.strip():
            raise ValueError("the question is empty")
        return _Request(started, self.index, top_k, filters, mode, explain)

    def read_questions(self, questions: Sequence[str]) -> list[Query]:
        """The questions as retrieval reads them, each encoder called once for all of them: the
        index's for every question, the cross-lingual reader's for those the index's encoder
        cannot read."""
        vectors = self.encoder.encode_queries(questions)
        langs = [detect_language(q) for q in questions]
        understood = [self._understood(lang) for lang in langs]
        unread = [q for q, known in zip(questions, understood, strict=True) if not known]
        reader = self.cross_lingual_reader if unread else None
        read = (
            dict(zip(unread, reader.encoder.encode_queries(unread), strict=True)) if reader else {}
        )
        return [
            Query(
                text=question,
                vector=vector,
                tokens=self.tokenizer.tokenize(question),
                semantic=known,
                lang=lang,
                model_id=self.encoder.model_id,
                read_vector=read.get(question),
            )
            for question, vector, known, lang in zip(
                questions, vectors, understood, langs, strict=True
            )
        ]

    def _understood(self, lang: str) -> bool:
        """Whether the encoder's vectors mean anything for a question in `lang`."""
        languages = self.settings.model_language_set or self.encoder.languages
        return languages is None or lang in languages

    def _candidates(
        self,
        index: Index,
        query: Query,
        k: int,
        filters: Filters | None,
        mode: Mode,
        quotes: bool = True,
    ) -> tuple[Query, list[Candidate]]:
        """First stage (the `mode`'s retriever), then the reranker when one is configured, or,
        for a question the encoder cannot read, the cross-lingual reader (which reads the
        question anew: the query it returns carries that reading, with the sentence vectors
        quote selection needs when `quotes`)."""
        settings = self.settings
        retriever = make_retriever(
            index,
            mode,
            sentence_recall=settings.sentence_recall,
            fusion=settings.fusion,
            rrf_k=settings.rrf_k,
            weight=settings.fusion_weight,
        )
        reader = None if query.semantic else self.cross_lingual_reader
        reranker = self.reranker
        second_stage = reader is not None or reranker is not None
        depth = max(k, settings.rerank_depth) if second_stage else k
        candidates = retriever.retrieve(query, depth, self._selection(index, filters))
        if reader is not None:
            return reader.read(index, query, candidates, k, sentences=quotes)
        if reranker is not None:
            candidates = reranker.rerank(index, query, candidates)
        return query, candidates[:k]

    @property
    def reranker(self) -> Reranker | None:
        with self._lock:
            if not self._reranker_ready:
                models = self.settings.resolved_models_dir
                self._reranker = make_reranker(self.settings.rerank, models)
                self._reranker_ready = True
            return self._reranker

    @property
    def cross_lingual_reader(self) -> CrossLingualReader | None:
        """The reader for questions the encoder cannot read; None when not configured, or when
        its model cannot be loaded (logged once; such questions are then answered from
        keywords alone, as without it)."""
        with self._reader_lock:  # not self._lock: loading a model must not hold up `index`
            if not self._reader_ready:
                self._reader = self._make_reader()
                self._reader_ready = True
            return self._reader

    def _make_reader(self) -> CrossLingualReader | None:
        name = self.settings.cross_lingual_model
        if name in ("", "none"):
            return None
        # the reader's model with its own prompts, not those configured for VERBATIM_MODEL
        config = replace(self.settings.encoder, model=name, query_prompt=None, passage_prompt=None)
        try:
            encoder = _shared_encoder(config)
            encoder.load()
        except ModelLoadError as exc:
            _log.warning("cross_lingual_model_unavailable", model=name, error=str(exc))
            return None
        return CrossLingualReader(encoder, self.settings.rerank_depth)

    def _explain(self, query: Query, candidate: Candidate, mode: Mode) -> Explanation:
        words = set(self.tokenizer.tokenize(candidate.chunk.text))
        return Explanation(
            mode=mode,
            dense_rank=candidate.dense_rank,
            dense_score=round(candidate.dense_score, 4),
            bm25_rank=candidate.bm25_rank,
            bm25_score=round(candidate.bm25_score, 4),
            fused_score=None if candidate.fused_score is None else round(candidate.fused_score, 6),
            rerank_score=(
                None if candidate.rerank_score is None else round(candidate.rerank_score, 4)
            ),
            matched_terms=list(
                dict.fromkeys(w for t, w in self.tokenizer.terms(query.text) if t in words)
            ),
        )

    def example_questions(self) -> list[str]:
        """Questions to offer someone who has not asked yet: the configured ones; over the
        packaged seed documents, a few the seed set shows answered; otherwise questions about
        the newest documents' titles that are answered from those documents."""
        if self.settings.example_questions:
            return list(self.settings.example_questions)
        index = self.index
        if index.documents and set(index.documents) <= _seed_ids():
            return list(SEED_EXAMPLES)
        if self._examples is None or self._examples[0] != index.version:
            self._examples = (index.version, self._title_examples(index))
        return list(self._examples[1])

    def _title_examples(self, index: Index, wanted: int = 3, tries: int = 8) -> list[str]:
        newest = sorted(
            index.documents.values(), key=lambda d: (d.date or "", d.title), reverse=True
        )
        examples: list[str] = []
        for document in newest[:tries]:
            question = _TITLE_QUESTION.get(document.lang, _TITLE_QUESTION["en"]).format(
                title=document.title.strip()
            )
            answer = self.ask(question)
            if answer.status == "answered" and answer.quotes[0].doc_id == document.doc_id:
                examples.append(question)
            if len(examples) == wanted:
                break
        return examples

    def documents(self) -> list[Document]:
        return sorted(self.index.documents.values(), key=lambda d: d.doc_id)

    def document(self, doc_id: str) -> Document:
        try:
            return self.index.entries[doc_id].document
        except KeyError:
            raise DocumentNotFoundError(doc_id) from None

    @staticmethod
    def _selection(index: Index, filters: Filters | None) -> Selection | None:
        if filters is None or filters.is_empty():
            return None
        return Selection(filters.select(index.documents.values()), filters.condition())

    @staticmethod
    def _quote(
        index: Index, quote: ScoredQuote, rank: int, closest: bool, explain: Explanation | None
    ) -> Quote:
        document = index.entries[quote.doc_id].document
        return Quote(
            rank=rank,
            text=document.text[quote.start : quote.end],
            doc_id=document.doc_id,
            title=document.title,
            date=document.date,
            source=document.source,
            url=document.url,
            char_start=quote.start,
            char_end=quote.end,
            section=quote.section,
            passage=quote.candidate.chunk.text,
            passage_start=quote.candidate.chunk.char_start,
            score=round(quote.score, 4),
            closest_match=closest,
            explain=explain,
        )
