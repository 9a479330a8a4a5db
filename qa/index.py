"""The index on disk: incremental builds, atomic swaps, and loading with compatibility checks.

Layout of an index directory:

    CURRENT            name of the version directory in use (replaced atomically)
    v-<version>/       manifest.json, documents.jsonl, chunks/ and sentences/ vector stores,
                       keywords/ (BM25 over chunks); the manifest holds every file's size and
                       SHA-256, checked at load, so a damaged file is never read as an index
    .build-*/          a build in progress (removed by the next build if one was killed)
    .lock              held by the one build allowed at a time

A build writes a complete new version directory, then swaps `CURRENT` with `os.replace`, so a
reader sees either the old index or the new one, never a half-written one.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np

from corpus.chunking import ChunkerSettings, chunk_document
from corpus.errors import DocumentError
from corpus.loader import SourceFile, discover
from corpus.models import Chunk, Document, Span
from corpus.sandbox import ParseLimits, ParserSandbox
from corpus.tokenize import KeywordTokenizer
from embeddings.encoder import Encoder
from embeddings.store import DocFields, FaissStore, Ids, Vectors, VectorStore, chunk_vector_id
from qa.keyword import KeywordIndex, load_tokens
from qa.logs import get_logger
from qa.stores import StoreSettings

FORMAT_VERSION = 1
Verify = Literal["full", "sizes"]
_HASHED_WHEN_SIZES = 64 * 1024 * 1024  # with verify="sizes", smaller files are still hashed
_CURRENT = "CURRENT"
_MANIFEST = "manifest.json"
_DOCUMENTS = "documents.jsonl"

log = get_logger(__name__)


class VerbatimIndexError(Exception):
    """Base for index problems; the message tells the user what to run."""


class IndexNotFoundError(VerbatimIndexError):
    pass


class IndexMismatchError(VerbatimIndexError):
    pass


class IndexBusyError(VerbatimIndexError):
    pass


class IndexCorruptError(VerbatimIndexError):
    """A file of the index in use is missing, truncated or altered."""


class IndexWriteError(VerbatimIndexError):
    """A build could not write its new version (disk full, read-only folder); the previous
    version is untouched."""


@dataclass
class IndexedDocument:
    document: Document
    sentences: list[Span]
    chunks: list[Chunk]
    content_hash: str


@dataclass
class Index:
    """A loaded index: documents, their sentences and chunks, both vector stores and BM25."""

    directory: Path
    manifest: dict[str, Any]
    entries: dict[str, IndexedDocument]
    chunk_store: VectorStore
    sentence_store: VectorStore
    keywords: KeywordIndex
    chunks_by_vector_id: dict[int, Chunk] = field(init=False)
    chunk_of_sentence: dict[int, Chunk] = field(init=False)  # by sentence vector id
    # What later stages derive from a sentence once per loaded index (quote selection's word
    # sets), by sentence vector id: computed on first use, never per question.
    sentence_memo: dict[int, Any] = field(init=False, repr=False)
    chunk_memo: dict[Any, Any] = field(init=False, repr=False)  # ... by chunk (and quote length)
    document_memo: dict[str, Any] = field(init=False, repr=False)  # ... by document id

    def __post_init__(self) -> None:
        self.chunks_by_vector_id = {}
        self.chunk_of_sentence = {}
        self.sentence_memo = {}
        self.chunk_memo = {}
        self.document_memo = {}
        for doc_id, entry in self.entries.items():
            for chunk in entry.chunks:
                self.chunks_by_vector_id[chunk_vector_id(chunk.chunk_id)] = chunk
                for index in chunk.sentences:  # with overlap, the first chunk holding it wins
                    self.chunk_of_sentence.setdefault(sentence_vector_id(doc_id, index), chunk)

    def vector_ids_of(self, doc_ids: set[str]) -> tuple[Ids, Ids]:
        """Chunk and sentence vector ids of the documents in `doc_ids`."""
        entries = [self.entries[d] for d in sorted(doc_ids) if d in self.entries]
        return _chunk_ids(entries), _sentence_ids(entries)

    @property
    def version(self) -> str:
        return str(self.manifest["index_version"])

    @property
    def model(self) -> str:
        return str(self.manifest["model"])

    def model_reason(self) -> str:
        """Why the index has its encoder, in words: configured, or its documents' languages."""
        if self.manifest.get("model_choice") != "languages":
            return "configured"
        counts = ", ".join(f"{lang} {n}" for lang, n in self.manifest["languages"].items())
        return f"chosen for the documents' languages: {counts}"

    @property
    def documents(self) -> dict[str, Document]:
        return {doc_id: entry.document for doc_id, entry in self.entries.items()}


@dataclass
class BuildReport:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: list[DocumentError] = field(default_factory=list)
    kept_after_failure: list[str] = field(default_factory=list)
    chunks_total: int = 0
    chunks_embedded: int = 0
    sentences_embedded: int = 0
    seconds: float = 0.0
    index_version: str = ""
    written: bool = False
    # Documents in languages the index's model cannot read, by language: questions about them
    # go to the cross-lingual reader, which reads their passages at question time.
    unread_languages: dict[str, int] = field(default_factory=dict)
    # The encoder the index was built with, why ("configured", or "languages": chosen from the
    # documents' languages), and the one it replaced when that change re-encoded everything.
    model: str = ""
    model_reason: str = ""
    replaced_model: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["failed"] = [{"path": e.path, "reason": e.reason} for e in self.failed]
        return data


def sentence_vector_id(doc_id: str, index: int) -> int:
    return chunk_vector_id(f"{doc_id}\x00sentence\x00{index}")


# ---------------------------------------------------------------- loading


def current_version_dir(index_dir: Path) -> Path | None:
    """The version directory `CURRENT` names. Asked on every question (so a server picks up
    re-indexes): the file is read again only when its inode or mtime changed (a build
    replaces it with `os.replace`, which changes the inode)."""
    path = index_dir / _CURRENT
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    key = (str(path), stat.st_ino, stat.st_mtime_ns, stat.st_size)
    cached = _current_cache.get(key[0])
    if cached is not None and cached[0] == key:
        return cached[1]
    try:
        name = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    found = index_dir / name if name else None
    _current_cache[key[0]] = (key, found)
    return found


_current_cache: dict[str, tuple[tuple[str, int, int, int], Path | None]] = {}


def built_model(index_dir: Path) -> str | None:
    """The encoder the index in use was built with, from its manifest alone (no vector store
    is opened: questions can be read while Milvus is down); None before the first build."""
    directory = current_version_dir(index_dir)
    if directory is None:
        return None
    if directory not in _model_cache:
        try:
            manifest = json.loads((directory / _MANIFEST).read_text(encoding="utf-8"))
            _model_cache[directory] = str(manifest["model"])
        except (OSError, ValueError, KeyError):
            return None  # loading the index says what is wrong with it
    return _model_cache[directory]


_model_cache: dict[Path, str] = {}


def load_index(
    index_dir: Path,
    model_id: str | None = None,
    store: StoreSettings | None = None,
    verify: Verify = "full",
) -> Index:
    """Load the index in use; with `model_id`, refuse one built with another model.

    `verify="full"` checks every file's SHA-256 (reads the whole index once: ~1 s per GB here);
    `"sizes"` checks every size but hashes only files under 64 MB, for very large indexes
    that must start fast."""
    directory = current_version_dir(index_dir)
    if directory is None or not (directory / _MANIFEST).exists():
        raise IndexNotFoundError(
            f"no index at {index_dir}: run `verbatim index [PATH...]` to build one"
        )
    manifest = _read_manifest(directory)
    check_compatible(manifest, model_id, index_dir)
    _verify_files(directory, manifest, verify)
    dimension = int(manifest["dimension"])
    entries = {}
    with (directory / _DOCUMENTS).open(encoding="utf-8") as lines:
        for line in lines:
            entry = _entry_from_json(json.loads(line))
            entries[entry.document.doc_id] = entry
    stores = store or StoreSettings()
    return Index(
        directory=directory,
        manifest=manifest,
        entries=entries,
        chunk_store=stores.open_store(directory, "chunks", dimension),
        sentence_store=stores.open_store(directory, "sentences", dimension),
        keywords=_load_keywords(directory, entries),
    )


def _read_manifest(directory: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((directory / _MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise _damaged(directory, f"{_MANIFEST} cannot be read ({exc})") from exc
    if not isinstance(manifest, dict):
        raise _damaged(directory, f"{_MANIFEST} does not hold an object")
    return manifest


def _verify_files(directory: Path, manifest: dict[str, Any], verify: Verify) -> None:
    """Every file the manifest lists has its recorded size and SHA-256 (an index written
    before checksums existed lists none and is trusted as before)."""
    for name, expected in manifest.get("files", {}).items():
        path = directory / name
        try:
            size = path.stat().st_size
        except OSError:
            raise _damaged(directory, f"{name} is missing") from None
        if size != expected["bytes"]:
            raise _damaged(directory, f"{name} has {size:,} bytes, {expected['bytes']:,} written")
        hashed = verify == "full" or size < _HASHED_WHEN_SIZES
        if hashed and _sha256(path) != expected["sha256"]:
            raise _damaged(directory, f"{name} does not match its checksum")


def _damaged(directory: Path, reason: str) -> IndexCorruptError:
    return IndexCorruptError(
        f"the index at {directory.parent} is damaged: {reason}. Run `verbatim index` to rebuild "
        "it (your documents are not affected)"
    )


def _checksums(directory: Path) -> dict[str, dict[str, Any]]:
    return {
        path.relative_to(directory).as_posix(): {
            "bytes": path.stat().st_size,
            "sha256": _sha256(path),
        }
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.name != _MANIFEST
    }


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _load_keywords(directory: Path, entries: dict[str, IndexedDocument]) -> KeywordIndex:
    """The BM25 index; an index written before BM25 existed gets one built on the fly."""
    if (directory / "keywords").exists():
        return KeywordIndex.load(directory / "keywords")
    chunks = [c for e in entries.values() for c in e.chunks]
    tokenizer = KeywordTokenizer()
    return KeywordIndex.build(
        _chunk_ids(list(entries.values())),
        [tokenizer.tokenize(_keyword_text(entries[c.doc_id], c)) for c in chunks],
    )


def _keyword_text(entry: IndexedDocument, chunk: Chunk) -> str:
    """What BM25 sees of a chunk: its text, and its document's title when the chunk lacks it."""
    title = entry.document.title
    return chunk.text if not title or title in chunk.text else f"{title}\n{chunk.text}"


def check_compatible(manifest: dict[str, Any], model_id: str | None, index_dir: Path) -> None:
    if manifest.get("format_version") != FORMAT_VERSION:
        raise IndexMismatchError(
            f"the index at {index_dir} has format {manifest.get('format_version')}, this version "
            f"of verbatim reads format {FORMAT_VERSION}: re-index with `verbatim index`"
        )
    if model_id is not None and manifest.get("model") != model_id:
        raise IndexMismatchError(
            f"the index at {index_dir} was built with model {manifest.get('model')!r} but the "
            f"configured model is {model_id!r}: re-index with `verbatim index`, or set "
            f"VERBATIM_MODEL={manifest.get('model')}"
        )


def _entry_from_json(data: dict[str, Any]) -> IndexedDocument:
    document = Document.from_dict(data["document"])
    sentences = [Span(start, end, section) for start, end, section in data["sentences"]]
    chunks = [
        Chunk(
            chunk_id=chunk_id,
            doc_id=document.doc_id,
            text=document.text[start:end],
            char_start=start,
            char_end=end,
            section=section,
            sentences=tuple(sentence_indexes),
        )
        for chunk_id, start, end, section, sentence_indexes in data["chunks"]
    ]
    return IndexedDocument(document, sentences, chunks, data["content_hash"])


def _entry_to_json(entry: IndexedDocument) -> dict[str, Any]:
    return {
        "document": entry.document.to_dict(),
        "content_hash": entry.content_hash,
        "sentences": [[s.start, s.end, s.section] for s in entry.sentences],
        "chunks": [
            [c.chunk_id, c.char_start, c.char_end, c.section, list(c.sentences)]
            for c in entry.chunks
        ],
    }


# ---------------------------------------------------------------- building


@dataclass(frozen=True)
class BuildProgress:
    """Callbacks for a progress display: `start(total)` then `advance(n)` per encoded text."""

    start: Callable[[int], None]
    advance: Callable[[int], None]


class IndexBuilder:
    """Builds an index from source paths, re-embedding only documents whose bytes changed."""

    def __init__(
        self,
        index_dir: Path,
        encoder: Encoder,
        chunker: ChunkerSettings,
        tokenizer: KeywordTokenizer | None = None,
        store: StoreSettings | None = None,
        max_file_bytes: int = 50 * 1024 * 1024,
        parse_limits: ParseLimits | None = None,
        choose_encoder: Callable[[Counter[str]], Encoder] | None = None,
    ) -> None:
        """`choose_encoder`, when given, picks the encoder from the documents' languages once
        they are read (`encoder` is then only the one `prepare` encodes shards with)."""
        self.index_dir = index_dir
        self.encoder = encoder
        self.choose_encoder = choose_encoder
        self.chunker = chunker
        self.tokenizer = tokenizer or KeywordTokenizer()
        self.store = store or StoreSettings()
        self.max_file_bytes = max_file_bytes
        self.parse_limits = parse_limits or ParseLimits()

    def build(self, paths: Sequence[Path], progress: BuildProgress | None = None) -> BuildReport:
        started = time.perf_counter()
        report = BuildReport()
        try:
            self.index_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._write_error(exc) from exc
        with self._lock():
            self._check_writable()  # before minutes of encoding, not after
            _remove_stale_builds(self.index_dir)
            previous = self._previous_index()
            sources, report.failed = discover(paths, self.max_file_bytes)
            old = previous.entries if previous else {}
            entries: dict[str, IndexedDocument] = {}
            fresh: list[IndexedDocument] = []
            with ParserSandbox(self.parse_limits) as sandbox:
                for source in sources:
                    entry = old.get(source.doc_id)
                    if entry is not None and entry.content_hash == source.content_hash:
                        entries[source.doc_id] = entry
                        report.unchanged.append(source.doc_id)
                        continue
                    new_entry = self._read(sandbox, source, report)
                    if new_entry is None:
                        if entry is not None:  # keep the last good version rather than lose it
                            entries[source.doc_id] = entry
                            report.kept_after_failure.append(source.doc_id)
                        continue
                    entries[source.doc_id] = new_entry
                    fresh.append(new_entry)
                    (report.updated if entry is not None else report.added).append(source.doc_id)
            report.removed = sorted(set(old) - set(entries))
            report.chunks_total = sum(len(e.chunks) for e in entries.values())
            self._choose_encoder(entries, report)
            version = self._version(entries)
            report.index_version = version
            if previous is not None and previous.version == version:
                report.seconds = time.perf_counter() - started
                return report
            vectors_from: Index | None = previous
            if previous is not None and previous.manifest.get("model") != self.encoder.model_id:
                # never a mix of two models' vector spaces: every document is encoded anew
                report.replaced_model = str(previous.manifest.get("model"))
                log.info(
                    "rebuilding_everything",
                    reason="model changed",
                    model=report.model,
                    replaced_model=report.replaced_model,
                )
                vectors_from, fresh = None, list(entries.values())
            chunk_store, sentence_store, staged = self._stores(
                vectors_from, entries, fresh, report, progress
            )
            keyword_ids, keyword_tokens = self._keyword_tokens(previous, entries)
            self._write(
                version,
                entries,
                chunk_store,
                sentence_store,
                (KeywordIndex.build(keyword_ids, keyword_tokens), keyword_tokens),
                [str(p) for p in paths],
            )
            report.written = True
            staging = self.store.staging(self.encoder.dimension)
            if staging is not None and staged:
                staging.discard(staged)  # the new version holds them now
        report.seconds = time.perf_counter() - started
        log.info("index_built", **{k: v for k, v in report.to_dict().items() if k != "failed"})
        return report

    def _previous_index(self) -> Index | None:
        try:
            previous = load_index(self.index_dir, None, self.store)
        except IndexNotFoundError:
            return None
        except (IndexMismatchError, IndexCorruptError, OSError, ValueError, KeyError) as exc:
            log.warning("previous_index_unusable", reason=str(exc))
            return None
        if previous.manifest.get("chunker") != asdict(self.chunker):
            log.info("rebuilding_everything", reason="chunker settings changed")
            return None
        return previous

    def _choose_encoder(self, entries: dict[str, IndexedDocument], report: BuildReport) -> None:
        languages = Counter(entry.document.lang for entry in entries.values())
        if self.choose_encoder is not None:
            self.encoder = self.choose_encoder(languages)
        report.model = self.encoder.model_id
        report.model_reason = "configured" if self.choose_encoder is None else "languages"

    def _read(
        self, sandbox: ParserSandbox, source: SourceFile, report: BuildReport
    ) -> IndexedDocument | None:
        try:
            document = sandbox.read(source)
        except DocumentError as error:
            report.failed.append(error)
            # at INFO: the report lists it, and the door tells its user once
            log.info("document_skipped", path=error.path, reason=error.reason)
            return None
        sentences, chunks = chunk_document(document, self.chunker)
        return IndexedDocument(document, sentences, chunks, source.content_hash)

    def _version(self, entries: dict[str, IndexedDocument]) -> str:
        digest = hashlib.sha256()
        digest.update(
            json.dumps(
                [
                    FORMAT_VERSION,
                    self.encoder.model_id,
                    asdict(self.chunker),
                    asdict(self.tokenizer.settings),
                    self.store.backend,
                ]
            ).encode()
        )
        for doc_id in sorted(entries):
            digest.update(f"{doc_id}\x00{entries[doc_id].content_hash}\n".encode())
        return digest.hexdigest()[:16]

    def _stores(
        self,
        previous: Index | None,
        entries: dict[str, IndexedDocument],
        fresh: list[IndexedDocument],
        report: BuildReport,
        progress: BuildProgress | None,
    ) -> tuple[VectorStore, VectorStore, list[str]]:
        """The stores holding every entry's vectors, and the documents whose vectors came from
        `--shard` workers' staging rather than the encoder."""
        if previous is not None and self.store.holds(previous.chunk_store):
            chunk_store, sentence_store = previous.chunk_store, previous.sentence_store
            for store in (chunk_store, sentence_store):
                if isinstance(store, FaissStore):
                    store.config = self.store.faiss  # the index kind may have been changed
            stale = [
                previous.entries[doc_id]
                for doc_id in previous.entries
                if doc_id not in entries or entries[doc_id] is not previous.entries[doc_id]
            ]
            chunk_store.remove(_chunk_ids(stale))
            sentence_store.remove(_sentence_ids(stale))
        else:
            chunk_store = self.store.new_store("chunks", self.encoder.dimension)
            sentence_store = self.store.new_store("sentences", self.encoder.dimension)
            if previous is not None:  # another vector store: move the vectors, encode nothing
                kept = [e for d, e in entries.items() if previous.entries.get(d) is e]
                _move(previous.chunk_store, chunk_store, _chunk_ids(kept), _chunk_docs(kept))
                _move(
                    previous.sentence_store,
                    sentence_store,
                    _sentence_ids(kept),
                    _sentence_docs(kept),
                )
        staged = self._staged(fresh)
        to_encode = [entry for entry in fresh if entry.document.doc_id not in staged]
        chunk_vectors, sentence_vectors = self._encode(to_encode, progress)
        report.chunks_embedded = len(chunk_vectors)
        report.sentences_embedded = len(sentence_vectors)
        if staged:  # in document order, the staged vectors between the encoded ones
            encoded = dict(
                zip(
                    [e.document.doc_id for e in to_encode],
                    _per_entry(to_encode, chunk_vectors, sentence_vectors),
                    strict=True,
                )
            )
            ordered = [staged.get(e.document.doc_id) or encoded[e.document.doc_id] for e in fresh]
            chunk_vectors = _stacked([v[0] for v in ordered], self.encoder.dimension)
            sentence_vectors = _stacked([v[1] for v in ordered], self.encoder.dimension)
        chunk_store.add(_chunk_ids(fresh), chunk_vectors, _chunk_docs(fresh))
        sentence_store.add(_sentence_ids(fresh), sentence_vectors, _sentence_docs(fresh))
        return chunk_store, sentence_store, sorted(staged)

    def _encode(
        self, entries: list[IndexedDocument], progress: BuildProgress | None
    ) -> tuple[Vectors, Vectors]:
        """Chunk and sentence vectors of `entries`, in order. Each distinct text is encoded
        once: a one-sentence chunk (a title, a short paragraph) is also a sentence, which was
        a tenth of SciFact's sentences."""
        chunk_texts = [chunk.text for entry in entries for chunk in entry.chunks]
        sentence_texts = [
            entry.document.text[s.start : s.end] for entry in entries for s in entry.sentences
        ]
        distinct = list(dict.fromkeys(chunk_texts + sentence_texts))
        if progress is not None:
            progress.start(len(distinct))
        vectors = self.encoder.encode_passages(
            distinct, progress.advance if progress is not None else None
        )
        row = {text: i for i, text in enumerate(distinct)}
        return (
            vectors[[row[text] for text in chunk_texts]],
            vectors[[row[text] for text in sentence_texts]],
        )

    def _staged(self, fresh: list[IndexedDocument]) -> dict[str, tuple[Vectors, Vectors]]:
        """Vectors that `--shard` workers encoded for these documents, where they match."""
        staging = self.store.staging(self.encoder.dimension)
        if staging is None or not fresh:
            return {}
        keys = staging.staged_keys([e.document.doc_id for e in fresh])
        staged = {}
        for entry in fresh:
            doc_id, key = entry.document.doc_id, self._staging_key(entry)
            if keys.get(doc_id) != key:
                continue
            vectors = staging.take(doc_id, key, len(entry.chunks), len(entry.sentences))
            if vectors is not None:
                staged[doc_id] = vectors
        return staged

    def _staging_key(self, entry: IndexedDocument) -> str:
        """Names what a document's vectors depend on: its bytes, the model, the chunking."""
        digest = hashlib.sha256(
            json.dumps([entry.content_hash, self.encoder.model_id, asdict(self.chunker)]).encode()
        )
        return digest.hexdigest()[:32]

    def prepare(
        self,
        paths: Sequence[Path],
        shard: int,
        shards: int,
        progress: BuildProgress | None = None,
    ) -> BuildReport:
        """Encode this worker's share (`shard` of `shards`) of the documents under `paths` into
        the shared staging collection, for a later `build` on any machine to take."""
        started = time.perf_counter()
        report = BuildReport()
        staging = self.store.staging(self.encoder.dimension)
        if staging is None:
            raise VerbatimIndexError(
                "`verbatim index --shard` needs a vector store shared by the machines: set "
                "VERBATIM_VECTOR_STORE=milvus and VERBATIM_MILVUS_URI"
            )
        staging.ensure()
        sources, report.failed = discover(paths, self.max_file_bytes)
        mine = [s for s in sources if _shard_of(s.doc_id, shards) == shard]
        known = staging.staged_keys([s.doc_id for s in mine])
        entries = []
        with ParserSandbox(self.parse_limits) as sandbox:
            for source in mine:
                entry = self._read(sandbox, source, report)
                if entry is None:
                    continue
                if known.get(source.doc_id) == self._staging_key(entry):
                    report.unchanged.append(source.doc_id)  # staged by an earlier run
                    continue
                entries.append(entry)
        chunk_vectors, sentence_vectors = self._encode(entries, progress)
        for entry, (chunks, sentences) in zip(
            entries, _per_entry(entries, chunk_vectors, sentence_vectors), strict=True
        ):
            staging.put(entry.document.doc_id, self._staging_key(entry), chunks, sentences)
            report.added.append(entry.document.doc_id)
        report.chunks_total = sum(len(e.chunks) for e in entries)
        report.chunks_embedded = len(chunk_vectors)
        report.sentences_embedded = len(sentence_vectors)
        report.seconds = time.perf_counter() - started
        log.info("shard_prepared", shard=shard, shards=shards, documents=len(entries))
        return report

    def _keyword_tokens(
        self, previous: Index | None, entries: dict[str, IndexedDocument]
    ) -> tuple[Ids, list[list[str]]]:
        """BM25 tokens of every chunk: the previous build's for unchanged documents (tokenised
        with the same settings), freshly tokenised for the rest."""
        reusable: dict[int, list[str]] = {}
        keywords_dir = previous.directory / "keywords" if previous else None
        same_rules = previous is not None and previous.manifest.get("keywords") == asdict(
            self.tokenizer.settings
        )
        if keywords_dir is not None and same_rules and keywords_dir.exists():
            reusable = load_tokens(keywords_dir)
        ids = _chunk_ids(list(entries.values()))
        tokens = []
        for vector_id, chunk in zip(
            ids.tolist(), [c for e in entries.values() for c in e.chunks], strict=True
        ):
            known = reusable.get(vector_id)
            unchanged = previous is not None and previous.entries.get(chunk.doc_id) is entries.get(
                chunk.doc_id
            )
            if known is None or not unchanged:
                known = self.tokenizer.tokenize(_keyword_text(entries[chunk.doc_id], chunk))
            tokens.append(known)
        return ids, tokens

    def _write(
        self,
        version: str,
        entries: dict[str, IndexedDocument],
        chunk_store: VectorStore,
        sentence_store: VectorStore,
        keywords: tuple[KeywordIndex, list[list[str]]],
        sources: list[str],
    ) -> None:
        """Write the new version beside the old one, then swap `CURRENT`; when writing fails
        (disk full, read-only folder) the half-written version is removed and nothing swaps."""
        try:
            building = Path(tempfile.mkdtemp(prefix=".build-", dir=self.index_dir))
        except OSError as exc:
            raise self._write_error(exc) from exc
        try:
            self._write_version(
                building, version, entries, chunk_store, sentence_store, keywords, sources
            )
        except (OSError, RuntimeError) as exc:  # FAISS reports failed writes as RuntimeError
            shutil.rmtree(building, ignore_errors=True)
            raise self._write_error(exc) from exc
        target = self.index_dir / f"v-{version}"
        previous = current_version_dir(self.index_dir)
        if target.exists():
            shutil.rmtree(target)
        try:
            os.replace(building, target)
            _atomic_write(self.index_dir / _CURRENT, target.name)
        except OSError as exc:  # CURRENT still names the previous version
            shutil.rmtree(building, ignore_errors=True)
            shutil.rmtree(target, ignore_errors=True)
            raise self._write_error(exc) from exc
        # The version just replaced stays one build longer, for readers still opening it.
        for old in self.index_dir.glob("v-*"):
            if old not in (target, previous):
                shutil.rmtree(old, ignore_errors=True)

    def _check_writable(self) -> None:
        try:
            with tempfile.TemporaryFile(dir=self.index_dir):
                pass
        except OSError as exc:
            raise self._write_error(exc) from exc

    def _write_error(self, exc: Exception) -> IndexWriteError:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return IndexWriteError(
            f"cannot write the index at {self.index_dir}: {reason}. The previous index is "
            "unchanged and still answers; free disk space or make the folder writable (or set "
            "VERBATIM_INDEX_DIR), then run `verbatim index` again"
        )

    def _write_version(
        self,
        building: Path,
        version: str,
        entries: dict[str, IndexedDocument],
        chunk_store: VectorStore,
        sentence_store: VectorStore,
        keywords: tuple[KeywordIndex, list[list[str]]],
        sources: list[str],
    ) -> None:
        with (building / _DOCUMENTS).open("w", encoding="utf-8") as out:
            for doc_id in sorted(entries):
                out.write(json.dumps(_entry_to_json(entries[doc_id]), ensure_ascii=False) + "\n")
        chunk_store.save(building / "chunks")
        sentence_store.save(building / "sentences")
        keywords[0].save(building / "keywords", keywords[1])
        manifest = {
            "format_version": FORMAT_VERSION,
            "index_version": version,
            "model": self.encoder.model_id,
            # how the model was picked: "configured", or "languages" (of the documents below)
            "model_choice": "configured" if self.choose_encoder is None else "languages",
            "languages": dict(sorted(Counter(e.document.lang for e in entries.values()).items())),
            "dimension": chunk_store.dimension,
            "chunker": asdict(self.chunker),
            "keywords": asdict(self.tokenizer.settings),
            "vector_store": {
                "kind": chunk_store.kind,
                "chunks": len(chunk_store),
                "sentences": len(sentence_store),
            },
            "sources": sources,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "documents": {
                doc_id: {
                    "content_hash": e.content_hash,
                    "path": e.document.path,
                    "chunks": len(e.chunks),
                    "sentences": len(e.sentences),
                }
                for doc_id, e in sorted(entries.items())
            },
            "files": _checksums(building),
        }
        (building / _MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
        _fsync_tree(building)

    @contextmanager
    def _lock(self) -> Iterator[None]:
        try:
            handle = (self.index_dir / ".lock").open("w")
        except OSError as exc:
            raise self._write_error(exc) from exc
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise IndexBusyError(
                    f"another `verbatim index` is building {self.index_dir}; wait for it to finish"
                ) from exc
            yield


def _shard_of(doc_id: str, shards: int) -> int:
    """The 1-based shard a document belongs to: stable across machines and runs."""
    return int(hashlib.sha1(doc_id.encode()).hexdigest()[:8], 16) % shards + 1


def _per_entry(
    entries: list[IndexedDocument], chunks: Vectors, sentences: Vectors
) -> list[tuple[Vectors, Vectors]]:
    """Split vectors encoded for `entries` back into each entry's (chunks, sentences)."""
    split = []
    chunk_at = sentence_at = 0
    for entry in entries:
        chunk_end, sentence_end = chunk_at + len(entry.chunks), sentence_at + len(entry.sentences)
        split.append((chunks[chunk_at:chunk_end], sentences[sentence_at:sentence_end]))
        chunk_at, sentence_at = chunk_end, sentence_end
    return split


def _stacked(parts: list[Vectors], dimension: int) -> Vectors:
    if not parts:
        return np.zeros((0, dimension), dtype=np.float32)
    return np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)


def _chunk_ids(entries: list[IndexedDocument]) -> Ids:
    return np.array(
        [chunk_vector_id(c.chunk_id) for e in entries for c in e.chunks], dtype=np.int64
    )


def _sentence_ids(entries: list[IndexedDocument]) -> Ids:
    return np.array(
        [
            sentence_vector_id(e.document.doc_id, i)
            for e in entries
            for i in range(len(e.sentences))
        ],
        dtype=np.int64,
    )


def _chunk_docs(entries: list[IndexedDocument]) -> list[DocFields]:
    return [_fields(e.document) for e in entries for _ in e.chunks]


def _sentence_docs(entries: list[IndexedDocument]) -> list[DocFields]:
    return [_fields(e.document) for e in entries for _ in e.sentences]


def _fields(document: Document) -> DocFields:
    return DocFields(document.doc_id, document.source or "", document.lang, document.date or "")


def _move(source: VectorStore, target: VectorStore, ids: Ids, docs: list[DocFields]) -> None:
    """Copy vectors between stores in bounded batches (switching FAISS and Milvus)."""
    for start in range(0, len(ids), 10_000):
        batch = ids[start : start + 10_000]
        target.add(batch, source.vectors(batch), docs[start : start + 10_000])


def _remove_stale_builds(index_dir: Path) -> None:
    """A build killed halfway leaves its directory behind; the lock says none is running now."""
    for stale in index_dir.glob(".build-*"):
        shutil.rmtree(stale, ignore_errors=True)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def _fsync_tree(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
    _fsync_dir(root)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
