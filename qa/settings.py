"""All settings in one place: flags override `VERBATIM_*` environment variables, which override
these defaults."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from corpus.chunking import ChunkerSettings
from corpus.sandbox import ParseLimits
from corpus.tokenize import JapaneseAnalyzer, TokenizerSettings
from embeddings.e5 import MODEL_NAME as E5_MODEL_NAME
from embeddings.encoder import DEFAULT_MODEL, EncoderConfig
from embeddings.store import DEFAULT_HNSW_THRESHOLD, StoreConfig
from qa.logs import LogFormat
from qa.quote_scorer import ScorerKind
from qa.rerank import RerankerKind, RerankSettings
from qa.retriever import Fusion, Mode
from qa.stores import StoreSettings

DEFAULT_COLLECTION = "default"
COLLECTION_NAME = r"^[a-z0-9][a-z0-9_-]{0,39}$"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VERBATIM_", env_file=".env", extra="ignore")

    home: Path = Field(default_factory=lambda: platformdirs.user_data_path("verbatim"))
    # Which named corpus: each collection is its own index, built and reloaded on its own
    # ("default": $VERBATIM_HOME/index, holding the seeds; others $VERBATIM_HOME/collections/NAME)
    collection: str = Field(DEFAULT_COLLECTION, pattern=COLLECTION_NAME)
    index_dir: Path | None = None  # the default collection's; default: $VERBATIM_HOME/index
    # Exported and converted models (ONNX graphs, multilingual-e5-small's folder, ~1 GB);
    # default $VERBATIM_HOME/models. Homes can share one.
    models_dir: Path | None = None
    # None: chosen per index from its documents' languages (embeddings.encoder.model_for_languages)
    model: str | None = None
    batch_size: int = Field(32, ge=1, le=1024)
    encoder_backend: Literal["auto", "torch", "openvino", "onnx", "onnx-int8"] = "auto"
    # Languages the model understands, comma-separated (e.g. "en"); empty: known models' own,
    # else any. Questions in other languages are answered from keywords (BM25) alone.
    model_languages: str = ""
    query_prompt: str | None = None
    passage_prompt: str | None = None
    chunk_size: int = Field(800, ge=50, le=20_000)
    chunk_overlap: int = Field(150, ge=0)
    # None: the quote scorer's own for the encoder (the learned ranker's was calibrated on
    # public unanswerable questions)
    threshold: float | None = Field(None, ge=-1.0, le=1.0)
    top_k: int = Field(3, ge=1, le=50)
    candidates: int = Field(20, ge=1, le=1000)  # chunks retrieved before quoting
    # Dense retrieval also takes the chunks of this many nearest sentences (for a chunk whose one
    # answering sentence its neighbours dilute). Off: it gained nothing significant on SciFact
    # (nDCG@10 dense 0.684 vs 0.681, default 0.718 vs 0.716), JaQuAD or our questions, and cost
    # 0.7 (dense) to 1.2 ms (default) of a SciFact question's 4-6 ms.
    sentence_recall: int = Field(0, ge=0, le=1000)
    mode: Mode = "hybrid"  # retrieval: dense, bm25 (keywords) or hybrid (both, fused)
    fusion: Fusion = "rrf"  # hybrid: reciprocal rank fusion, or weighted normalised scores
    fusion_weight: float = Field(0.5, ge=0.0, le=1.0)  # dense share with fusion=weighted
    rrf_k: int = Field(60, ge=1)
    japanese_analyzer: JapaneseAnalyzer = "fugashi"  # BM25 tokens of Japanese text
    reranker: RerankerKind = "sentences"
    reranker_model: str | None = None  # bi-encoder or cross-encoder name or local path
    rerank_depth: int = Field(30, ge=1, le=1000)
    # Reads questions in a language the model does not (qa/crosslingual.py); "none": off.
    cross_lingual_model: str = E5_MODEL_NAME
    # Quotes are scored by the learned ranker (qa/quote_scorer.py), that ranker with the
    # fine-tuned cross-encoder (built by `python -m qa.training --cross-encoder`), or the
    # hand-weighted mix
    quote_scorer: ScorerKind = "learned"
    quote_model: Path | None = None  # a ranker file of one's own (`python -m qa.training --out`)
    # What the chat page offers to ask before the first question (a JSON list in the
    # environment); empty: the seed set's, when the seed documents are what is indexed
    example_questions: list[str] = Field(default_factory=list)
    # Where state shared by doors and replicas lives: "" for the embedded default (SQLite files
    # under home, rate windows in memory), or a Redis URL ("redis://host:6379/0") that every
    # replica shares (qa/state.py)
    state_url: str = ""
    # Conversations: follow-ups read with the earlier turn (qa/conversation.py); kept this
    # long after their last question, at most this many turns
    follow_ups: bool = True
    # a follow-up's candidates from the documents the earlier answer quoted move up this many
    # places (0: off)
    follow_up_lift: int = Field(3, ge=0, le=100)
    conversation_ttl_s: float = Field(24 * 3600, gt=0)
    conversation_max_turns: int = Field(20, ge=1, le=1000)
    quote_keyword_weight: float = Field(0.3, ge=0.0, le=1.0)  # the hand mix's keyword share
    vector_store: Literal["faiss", "milvus"] = "faiss"
    milvus_uri: str = "http://127.0.0.1:19530"
    milvus_token: str = ""  # "user:password" or an API key, where the server wants one
    milvus_collection: str = "verbatim"  # prefix: <prefix>_chunks and <prefix>_sentences
    faiss_index: Literal["auto", "flat", "hnsw", "ivfpq"] = "auto"  # auto: flat, then HNSW
    hnsw_threshold: int = Field(DEFAULT_HNSW_THRESHOLD, ge=1)  # vectors from which "auto" uses HNSW
    ivf_nprobe: int = Field(128, ge=1)
    max_file_mb: float = Field(50, gt=0)
    # Loading checks each index file against its manifest checksum ("full"); "sizes" hashes
    # only files under 64 MB, for indexes of millions of chunks that must start fast.
    verify_index: Literal["full", "sizes"] = "full"
    parse_timeout_s: float = Field(60, gt=0)  # per document; a longer parse is stopped
    parse_memory_mb: int = Field(2048, ge=256)  # address space of the parsing process
    log_level: str = "WARNING"
    # human: a plain line per event (a person at a terminal); json: one object per line (log
    # collectors, scripts). The server always logs JSON.
    log_format: LogFormat = "human"
    # HTTP door
    # Where people reach this deployment's pages (e.g. https://verbatim.example.com): Slack
    # answers then link each quote to its document view there
    public_url: str = Field("", pattern=r"^(https?://[^\s<>|]+)?$")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    # Server processes on this machine (`verbatim serve --workers`), each with its own model and
    # index in memory; more than one needs `state_url`, the state they then share
    workers: int = Field(1, ge=1, le=64)
    # comma-separated; when set, every /v1 route needs one. `KEY` reads every collection,
    # `KEY:hr+default` only those named
    api_keys: str = ""
    api_keys_file: Path | None = None  # JSON {"KEY": ["hr", "default"] or "*"}, beside api_keys
    rate_limit: str = "120/minute"  # per client (API key or address); "" turns it off
    cors_origins: str = ""  # comma-separated origins allowed to call the API from a browser
    max_body_bytes: int = Field(64 * 1024, ge=1024)
    log_questions: bool = False  # question text in access logs
    # Questions taken in at once (with micro-batching they wait for their batch without a
    # core: more of them make larger batches); more wait in the queue.
    query_workers: int = Field(32, ge=1, le=256)
    max_queued: int = Field(64, ge=0)  # questions waiting beyond these get 503 + Retry-After
    # Micro-batching (qa.batching): questions that arrive together are read in one encoder call
    # of at most `query_batch` and answered in one thread (1 turns it off), waiting at most
    # `query_batch_wait_ms` for company.
    query_batch: int = Field(32, ge=1, le=1024)
    query_batch_wait_ms: float = Field(1.0, ge=0, le=100)
    # Intra-op threads of the encoder. 0: one per core, used by one batch at a time (without
    # micro-batching in the server: the cores shared among query workers). 1 on OpenVINO: a
    # stream per core, a batch of 8 or more split into a part per core (more answers/s under
    # sustained heavy load, slower lone questions: docs/reliability.md). FAISS searches one
    # question at a time single-threaded (faster: 15.5 vs 18.1 ms p50, SciFact).
    threads: int = Field(0, ge=0, le=256)
    # Slack door
    slack_follow_ups: bool = True  # answer follow-ups in threads the bot answered, unmentioned
    # Which collection each channel (or DM) reads, by channel id; "*" for the others (JSON in
    # the environment, e.g. {"C0HR": "hr", "*": "default"}); unmapped: the default collection
    slack_channel_collections: dict[str, str] = Field(default_factory=dict)
    # A DM's questions are one conversation until a pause this long starts a new one
    slack_dm_conversation_gap_s: float = Field(30 * 60, gt=0)
    slack_show_closest: bool = False  # with no answer, offer the closest passage
    slack_answer_bots: bool = False  # answer messages from other apps' bots
    # Mention storms: questions answered per user and per channel ("" turns a limit off);
    # over a limit the asker gets one polite "wait N s" per window, then silence.
    slack_user_rate: str = "10/minute"
    slack_channel_rate: str = "30/minute"

    @field_validator("log_level")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()

    @property
    def api_key_scopes(self) -> dict[str, frozenset[str] | None]:
        """Each API key and the collections it may read (None: every one), from `api_keys`
        and `api_keys_file`; a file that cannot be read raises ValueError saying why."""
        scopes: dict[str, frozenset[str] | None] = {}
        for entry in (e.strip() for e in self.api_keys.split(",")):
            key, _, named = entry.partition(":")
            if key.strip():
                scopes[key.strip()] = frozenset(named.split("+")) if named else None
        if self.api_keys_file is not None:
            scopes.update(_keys_file(self.api_keys_file))
        return scopes

    @property
    def cors_origin_list(self) -> list[str]:
        return [origin.strip() for origin in self.cors_origins.split(",") if origin.strip()]

    @property
    def resolved_index_dir(self) -> Path:
        if self.collection != DEFAULT_COLLECTION:
            return self.collections_dir / self.collection
        return self.index_dir or self.home / "index"

    @property
    def collections_dir(self) -> Path:
        return self.home / "collections"

    @property
    def resolved_models_dir(self) -> Path:
        return self.models_dir or self.home / "models"

    @property
    def parse_limits(self) -> ParseLimits:
        return ParseLimits(timeout_s=self.parse_timeout_s, memory_mb=self.parse_memory_mb)

    @property
    def chunker(self) -> ChunkerSettings:
        return ChunkerSettings(max_chars=self.chunk_size, overlap_chars=self.chunk_overlap)

    @property
    def model_language_set(self) -> frozenset[str] | None:
        languages = frozenset(x.strip() for x in self.model_languages.split(",") if x.strip())
        return languages or None

    @property
    def store(self) -> StoreSettings:
        return StoreSettings(
            backend=self.vector_store,
            faiss=StoreConfig(
                kind=self.faiss_index,
                hnsw_threshold=self.hnsw_threshold,
                ivf_nprobe=self.ivf_nprobe,
            ),
            milvus_uri=self.milvus_uri,
            milvus_token=self.milvus_token,
            milvus_collection=(
                self.milvus_collection
                if self.collection == DEFAULT_COLLECTION
                else f"{self.milvus_collection}_{self.collection}"
            ),
            search_sentences=self.sentence_recall > 0,
        )

    @property
    def tokenizer(self) -> TokenizerSettings:
        return TokenizerSettings(japanese=self.japanese_analyzer)

    @property
    def rerank(self) -> RerankSettings:
        return RerankSettings(self.reranker, self.reranker_model, self.rerank_depth)

    @property
    def encoder(self) -> EncoderConfig:
        return EncoderConfig(
            model=self.model or DEFAULT_MODEL,
            batch_size=self.batch_size,
            query_prompt=self.query_prompt,
            passage_prompt=self.passage_prompt,
            backend=self.encoder_backend,
            cache_dir=self.resolved_models_dir,
            threads=self.threads,
        )

    def for_server(self) -> Settings:
        """These settings with `threads` resolved for `query_workers` concurrent questions in
        each of `workers` processes: with micro-batching, one batch at a time on the process's
        share of the cores; without it, that share split among the query workers, so
        concurrent questions never oversubscribe the cores."""
        if self.threads:
            return self
        cores = max(1, (os.cpu_count() or 1) // self.workers)  # this process's share
        if self.query_batch > 1:
            return self if self.workers == 1 else self.model_copy(update={"threads": cores})
        return self.model_copy(update={"threads": max(1, cores // self.query_workers)})


def _keys_file(path: Path) -> dict[str, frozenset[str] | None]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read the API keys file {path}: {exc}") from exc
    if not isinstance(data, dict) or not all(
        (isinstance(v, list) and all(isinstance(c, str) for c in v)) or v == "*"
        for v in data.values()
    ):
        raise ValueError(
            f'the API keys file {path} must be a JSON object {{"KEY": ["collection", ...] or "*"}}'
        )
    return {str(k): None if v == "*" else frozenset(v) for k, v in data.items()}
