"""An ONNX Runtime backend for sentence-transformers folders with mean pooling.

The transformer is exported once from the local weights with `torch.onnx.export` (optimum-onnx
cannot be used beside sentence-transformers 6) and cached; later processes load only
onnxruntime and the fast tokenizer, no torch. BERT-style graphs are exported with the plain
("eager") attention and then fused by onnxruntime's transformer optimizer into its own
Attention, SkipLayerNorm and Gelu kernels: measured on SciFact abstracts, 1.46–1.57× faster
than the export of PyTorch's default SDPA attention, whose pattern nothing fuses (the vectors
are the same to cosine 1.0000). `OnnxSentenceModel` offers the part of
`SentenceTransformer` that `Encoder` uses, so the encoder code is the same for both backends.

The same graph runs on one of two runtimes. OpenVINO (the default where it is installed)
computes in bfloat16 on CPUs with bf16 matrix units (Intel AMX) and in float32 elsewhere; on
this machine's AMX cores it encodes SciFact chunks and sentences 3.6x faster than ONNX Runtime
and single queries 1.4x faster, with vectors equal to cosine 0.99997 (`docs/benchmarks.md`).
ONNX Runtime runs the int8-quantised graph and machines without OpenVINO.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import subprocess
import sys
import tempfile
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

_EXPORTED = "model.onnx"
_QUANTIZED = "model-int8.onnx"
# Part of the cache key: a graph exported by an earlier way of exporting is not reused.
_EXPORT_FORMAT = "eager-attention, fused"
# Architectures whose graphs onnxruntime's "bert" optimizer knows how to fuse.
_FUSABLE = {"bert", "roberta", "xlm-roberta"}
_TOKENIZE_SLICE = 1024  # texts tokenized at once (all of a large build's at once held GBs)
# OpenVINO re-plans the graph when a request's input shape differs from its last one (~0.5 ms
# a call). A lone text (a question) is padded to a multiple of this many tokens, so questions
# share a few shapes. The padding is computed like any token: on bf16 matrix units (AMX) 32
# paid (SciFact's queries, 21 tokens p50: 2.24 -> 1.77 ms each); in float32 without them the
# seed questions (9-30 tokens) cost 10.4 core-ms each padded to 32, 7.7 to 16, 7.6 to 8 and
# 8.2 unpadded (MiniLM; multilingual-e5-small 24.3, 18.9, 18.3, 18.1). Batches are not padded.
_LONE_TEXT_STEP = 16
# A build's batches run on OpenVINO one per core at once (a stream each), which keeps two cores
# busier than one batch on both: 4,685 SciFact texts 7.3 -> 6.7 s, a 1,500-document build 29.2
# -> 27.7 s. The graph compiled for that is made for each long run and dropped after it (its
# buffers per stream held ~300 MB more at the peak), so a run must be long enough to repay
# compiling it: 0.07 s from OpenVINO's cache, 0.4 s the first time.
_PARALLEL_MIN_BATCHES = 64
# A batch of texts of unequal length runs as parts of similar length, one after another, each
# padded only to its own longest text: padding is computed like any other token, and a call
# costs about as much as this many tokens more (fitted on float32 cores without AMX: MiniLM ~26,
# multilingual-e5-small ~43). 16 random seed questions (260 tokens): 447 computed as one call,
# 311 in 2.2 parts on average.
_CALL_COST_TOKENS = 32
# A batch run on a graph with several one-thread streams (`threads=1`: VERBATIM_THREADS=1) is
# split into a part per stream that run at once: a part holds at least this many texts (fewer
# gain too little to pay for the split).
_SPLIT_MIN_TEXTS = 4

Runtime = Literal["onnxruntime", "openvino"]
Int64s = npt.NDArray[np.int64]
TokenIds = npt.NDArray[np.int32]  # one text's token ids, unpadded
_Run = Callable[[Int64s, Int64s], npt.NDArray[np.float32]]  # ids, mask -> last hidden state


class OnnxExportError(RuntimeError):
    pass


class OnnxSentenceModel:
    def __init__(
        self,
        model_dir: Path,
        cache_dir: Path,
        quantized: bool = False,
        threads: int = 0,
        runtime: Runtime = "onnxruntime",
    ) -> None:
        from tokenizers import Tokenizer

        self.model_dir = model_dir
        self.max_seq_length = _max_seq_length(model_dir)
        self.dimension = _mean_pooling_dimension(model_dir)
        self.prompts = _prompts(model_dir)  # as SentenceTransformer.prompts
        self._graph = _cached_export(model_dir, cache_dir, quantized)
        self._cache_dir = cache_dir
        self._threads = threads or (os.cpu_count() or 1)
        self.runtime = runtime
        self._run = (
            _openvino(self._graph, self._threads, self._cache_dir)
            if runtime == "openvino"
            else _onnxruntime(self._graph, self._threads)
        )
        self._tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self._tokenizer.enable_truncation(self.max_seq_length)
        # Batches are padded here, to their longest text, with the model's own pad token
        # (some tokenizer files pad every text to a fixed length).
        self._pad_id = int((self._tokenizer.padding or {}).get("pad_id", 0))
        self._tokenizer.no_padding()

    def get_embedding_dimension(self) -> int:
        return self.dimension

    def token_ids(self, texts: Sequence[str], prompt: str | None = None) -> list[TokenIds]:
        """Each text's token ids as the model reads it: prompt first, truncated, unpadded. A
        build tokenizes its texts once, to order its batches by length and to encode them."""
        ids: list[TokenIds] = []
        for start in range(0, len(texts), _TOKENIZE_SLICE):
            part = [(prompt or "") + text for text in texts[start : start + _TOKENIZE_SLICE]]
            encoded = self._tokenizer.encode_batch_fast(part)  # fast: without character offsets
            ids.extend(np.array(e.ids, dtype=np.int32) for e in encoded)
        return ids

    def encode(
        self,
        texts: list[str],
        prompt: str | None = None,
        batch_size: int = 32,
        normalize_embeddings: bool = True,
        **_: Any,
    ) -> npt.NDArray[np.float32]:
        tokens = self.token_ids(texts, prompt)
        batches = [tokens[i : i + batch_size] for i in range(0, len(tokens), batch_size)]
        parts = list(self.encode_batches(batches, normalize_embeddings))
        return np.vstack(parts) if parts else np.zeros((0, self.dimension), dtype=np.float32)

    def encode_batches(
        self, batches: Sequence[Sequence[TokenIds]], normalize_embeddings: bool = True
    ) -> Iterator[npt.NDArray[np.float32]]:
        """Each batch's vectors, in order. On OpenVINO a long run of batches goes through a
        graph compiled for it with one stream per thread, as many batches at once."""
        parallel = (
            _openvino(self._graph, 1, self._cache_dir, streams=self._threads, split_batches=False)
            if self.runtime == "openvino"
            and self._threads > 1
            and len(batches) >= _PARALLEL_MIN_BATCHES
            else None
        )
        if parallel is None:
            for batch in batches:
                yield self._vectors(batch, self._run, normalize_embeddings)
            return
        with ThreadPoolExecutor(self._threads) as pool:
            pending: deque[Future[npt.NDArray[np.float32]]] = deque()
            for batch in batches:
                pending.append(pool.submit(self._vectors, batch, parallel, normalize_embeddings))
                if len(pending) > self._threads:  # a bounded queue: vectors come back in order
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()

    def _vectors(
        self, batch: Sequence[TokenIds], run: _Run, normalize_embeddings: bool
    ) -> npt.NDArray[np.float32]:
        """One batch's vectors (mean of the token states), padded here to its longest text."""
        width = max(len(tokens) for tokens in batch)
        ids = np.full((len(batch), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, tokens in enumerate(batch):
            ids[row, : len(tokens)] = tokens
            mask[row, : len(tokens)] = 1
        hidden = run(ids, mask)
        weights = mask[..., None].astype(np.float32)
        vectors: npt.NDArray[np.float32] = (
            (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        ).astype(np.float32)
        if normalize_embeddings:
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return vectors


def _onnxruntime(graph: Path, threads: int) -> _Run:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Idle ONNX threads must not spin: FAISS's OpenMP threads run right after each encode,
    # and spinning threads took their cores (SciFact search p50: 17 ms spinning, 9 ms not).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])

    def run(ids: Int64s, mask: Int64s) -> npt.NDArray[np.float32]:
        hidden: npt.NDArray[np.float32] = session.run(
            None, {"input_ids": ids, "attention_mask": mask}
        )[0]
        return hidden

    return _by_similar_length(run)


def _openvino(
    graph: Path, threads: int, cache_dir: Path, streams: int = 0, split_batches: bool = True
) -> _Run:
    """The graph compiled by OpenVINO, `threads` per call and `streams` calls at once (by
    default as many as the cores allow; with `split_batches`, one batch's parts at once). The
    compiled graph is cached beside the export: a later start loads it in 0.1-0.15 s instead of
    compiling for 0.4-1.2 s."""
    import openvino

    streams = streams or max(1, (os.cpu_count() or 1) // threads)
    config = {
        "INFERENCE_NUM_THREADS": streams * threads,
        "NUM_STREAMS": streams,
        # Kernels are kept per input shape; the default 5,000 shapes let a server's heap
        # grow for hours (+250 MB in 2,000 batches of random shapes); 256 stayed flat at
        # no measured cost.
        "CPU_RUNTIME_CACHE_CAPACITY": 256,
        # Threads pinned to cores wait for a core the server's Python threads hold: unpinned,
        # 32 clients got 243 answers/s instead of 226 (encoding 3.3 instead of 3.7 core-ms an
        # answer); a build (1,500 passages in 10.0 s) and a lone question (2.1 ms) unchanged.
        "ENABLE_CPU_PINNING": False,
        # OpenVINO compiles without it where the folder cannot be written (tested).
        "CACHE_DIR": str(cache_dir / "openvino"),
    }
    compiled = openvino.Core().compile_model(str(graph), "CPU", config)
    width_of_state = compiled.output(0).get_partial_shape()[-1].get_length()  # hidden size
    # An infer request serves one call at a time. Idle ones are reused by any thread, so
    # there are never more than the calls that once ran at the same moment.
    idle: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def request() -> Any:
        try:
            return idle.get_nowait()
        except queue.Empty:
            return compiled.create_infer_request()

    def run(ids: Int64s, mask: Int64s) -> npt.NDArray[np.float32]:
        width = ids.shape[1]
        if len(ids) == 1:
            ids, mask = _padded(ids, _LONE_TEXT_STEP), _padded(mask, _LONE_TEXT_STEP)
        infer = request()
        try:
            outputs = infer.infer({"input_ids": ids, "attention_mask": mask})
        finally:
            idle.put(infer)
        hidden: npt.NDArray[np.float32] = outputs[0][:, :width]
        return hidden

    def run_split(ids: Int64s, mask: Int64s) -> npt.NDArray[np.float32]:
        """The batch as one part per stream, of similar lengths, all at once, each padded only
        to its own longest text."""
        if len(ids) < streams * _SPLIT_MIN_TEXTS:
            return run(ids, mask)
        lengths = mask.sum(axis=1)
        hidden = np.zeros((*ids.shape, width_of_state), np.float32)
        started = []
        try:
            for rows in _balanced(lengths, streams):
                width = int(lengths[rows].max())
                infer = request()
                started.append((rows, width, infer))
                infer.start_async(
                    {"input_ids": ids[rows, :width], "attention_mask": mask[rows, :width]}
                )
            for rows, width, infer in started:
                infer.wait()
                hidden[rows, :width] = infer.get_output_tensor(0).data
        finally:  # after a failure too, each request goes back idle only once it has stopped
            for *_, infer in started:
                with contextlib.suppress(Exception):
                    infer.wait()
                idle.put(infer)
        return hidden

    return run_split if split_batches and streams > 1 else _by_similar_length(run)


def _by_similar_length(run: _Run) -> _Run:
    """`run` taking a batch as parts of similar length (`_similar_lengths`), one after another,
    each cut to its own longest text."""

    def run_parts(ids: Int64s, mask: Int64s) -> npt.NDArray[np.float32]:
        lengths = mask.sum(axis=1)
        parts = _similar_lengths(lengths, _CALL_COST_TOKENS)
        if len(parts) == 1:
            return run(ids, mask)
        hidden: npt.NDArray[np.float32] | None = None
        for rows in parts:
            width = int(lengths[rows].max())
            states = run(ids[rows, :width], mask[rows, :width])
            if hidden is None:
                hidden = np.zeros((*ids.shape, states.shape[-1]), np.float32)
            hidden[rows, :width] = states
        assert hidden is not None  # two parts or more ran
        return hidden

    return run_parts


def _similar_lengths(lengths: npt.NDArray[np.int64], call_cost: int) -> list[npt.NDArray[np.intp]]:
    """Rows in runs of similar length, longest first, so that the tokens computed (each run
    padded to its longest) plus `call_cost` tokens a run are as few as they can be."""
    order = np.argsort(-lengths, kind="stable")
    longest = lengths[order].astype(np.int64)
    least = np.zeros(len(order) + 1)  # least[end]: the least cost of the `end` longest rows
    start = np.zeros(len(order) + 1, dtype=np.intp)  # where the last run of that best begins
    for end in range(1, len(order) + 1):
        # the last run holds rows start..end-1, padded to the first (the longest) of them
        costs = least[:end] + call_cost + (end - np.arange(end)) * longest[:end]
        start[end] = int(np.argmin(costs))  # the first least: runs are not cut for nothing
        least[end] = costs[start[end]]
    ends, end = [], len(order)
    while end > 0:
        ends.append(end)
        end = int(start[end])
    return np.split(order, ends[::-1][:-1])


def _balanced(lengths: npt.NDArray[np.int64], parts: int) -> list[npt.NDArray[np.intp]]:
    """Rows in at most `parts` runs of similar length, longest first, the largest run's padded
    size (rows x its longest) as small as it can be: the runs go at once, the largest sets
    the time."""
    order = np.argsort(-lengths, kind="stable")
    longest = lengths[order]

    def cuts(capacity: int) -> list[int]:
        ends, start = [], 0
        while start < len(order):
            start = min(len(order), start + max(1, capacity // int(longest[start])))
            ends.append(start)
        return ends

    low, high = int(longest[0]), int(longest[0]) * len(order)  # capacities that fail, fit
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if len(cuts(middle)) <= parts else (middle, high)
    return np.split(order, cuts(high)[:-1])


def _padded(array: Int64s, step: int) -> Int64s:
    """`array` with zero columns added up to a multiple of `step` (masked out: the padding
    changes no vector)."""
    missing = -array.shape[1] % step
    return np.pad(array, ((0, 0), (0, missing))) if missing else array


SOURCE_FILE = "source.txt"  # in an export's folder: the model folder it was exported from


def _cached_export(model_dir: Path, cache_dir: Path, quantized: bool) -> Path:
    """The exported (and optionally int8-quantised) graph for `model_dir`, made on first use."""
    key = hashlib.sha256(_EXPORT_FORMAT.encode())
    for name in ("config.json", "model.safetensors", "pytorch_model.bin"):
        if (model_dir / name).exists():
            stat = (model_dir / name).stat()
            key.update(f"{model_dir.resolve()}/{name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    folder = cache_dir / key.hexdigest()[:16]
    exported = folder / _EXPORTED
    if not exported.exists():
        folder.mkdir(parents=True, exist_ok=True)
        (folder / SOURCE_FILE).write_text(f"{model_dir.resolve()}\n", encoding="utf-8")
        _atomically(exported, lambda tmp: _export_in_child(model_dir, tmp))
    if not quantized:
        return exported
    quantized_file = folder / _QUANTIZED
    if not quantized_file.exists():
        from onnx import TensorProto
        from onnxruntime.quantization import QuantType, quantize_dynamic

        _atomically(
            quantized_file,
            lambda tmp: quantize_dynamic(
                str(exported),
                str(tmp),
                weight_type=QuantType.QInt8,
                # the fused kernels' outputs carry no inferred type; they are float
                extra_options={"DefaultTensorType": TensorProto.FLOAT},
            ),
        )
    return quantized_file


def _atomically(target: Path, write: Any) -> None:
    """Write through a temporary file and rename: a killed export leaves no half file."""
    handle, name = tempfile.mkstemp(suffix=".onnx", dir=target.parent)
    os.close(handle)
    try:
        write(Path(name))
        os.replace(name, target)
    finally:
        if os.path.exists(name):
            os.unlink(name)


def _export_in_child(model_dir: Path, target: Path) -> None:
    """Make the graph in a child process: torch and the optimizer's copies of the graph (a
    4.7 GB peak for multilingual-e5-small, ~400 MB of it kept by the heap afterwards) go back
    to the system when it ends instead of staying in a server's memory."""
    result = subprocess.run(
        [sys.executable, "-m", "embeddings.onnx", str(model_dir), str(target)],
        stdout=subprocess.DEVNULL,  # stdout belongs to `--json` output
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines() or [f"exit status {result.returncode}"]
        raise OnnxExportError(f"exporting {model_dir} to ONNX failed: {lines[-1]}")
    sys.stderr.write(result.stderr)  # structured warnings, if any


def make_graph(model_dir: Path, target: Path) -> None:
    """Export `model_dir`'s transformer to `target`, fused where that computes the same."""
    _export(model_dir, target)
    _fuse(model_dir, target)


def _export(model_dir: Path, target: Path) -> None:
    import warnings

    import torch
    import transformers

    transformers.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    # A converted folder has no pooler weights; the pooler is not exported, so no report.
    transformers.logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    # Eager attention exports as plain MatMul/Softmax, a pattern `_fuse` can recognise.
    model = transformers.AutoModel.from_pretrained(
        str(model_dir), attn_implementation="eager"
    ).eval()

    class _Hidden(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Any:
            return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    sample = torch.ones((2, 8), dtype=torch.long)
    axes = {0: "batch", 1: "tokens"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter announces its deprecation
        torch.onnx.export(
            _Hidden(),
            (sample, sample),
            str(target),
            input_names=["input_ids", "attention_mask"],
            output_names=["last_hidden_state"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "last_hidden_state": axes},
            opset_version=17,
            dynamo=False,
        )


def _fuse(model_dir: Path, exported: Path) -> None:
    """Replace `exported` by onnxruntime's fused graph when the architecture allows it and the
    fused graph computes the same hidden states; otherwise keep the plain export."""
    config = json.loads((model_dir / "config.json").read_text())
    if config.get("model_type") not in _FUSABLE:
        return
    import logging

    from onnxruntime.transformers import optimizer

    logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
    fused = optimizer.optimize_model(
        str(exported),
        model_type="bert",
        num_heads=int(config["num_attention_heads"]),
        hidden_size=int(config["hidden_size"]),
    )

    def write(tmp: Path) -> None:
        fused.save_model_to_file(str(tmp))
        if not _same_hidden_states(exported, tmp):
            raise OnnxExportError("the fused graph differs from the export")

    try:
        _atomically(exported, write)
    except OnnxExportError as exc:  # the plain export stays: slower, never wrong
        from qa.logs import get_logger

        get_logger(__name__).warning("onnx_fusion_skipped", model=str(model_dir), reason=str(exc))


def _same_hidden_states(plain: Path, fused: Path) -> bool:
    import onnxruntime

    ids = np.array([[101, 7592, 2088, 2003, 1037, 3231, 102, 0]] * 2, dtype=np.int64)
    mask = np.array([[1] * 7 + [0], [1] * 5 + [0] * 3], dtype=np.int64)
    outputs = [
        onnxruntime.InferenceSession(str(graph), providers=["CPUExecutionProvider"]).run(
            None, {"input_ids": ids, "attention_mask": mask}
        )[0]
        for graph in (plain, fused)
    ]
    valid = mask.astype(bool)
    return bool(np.allclose(outputs[0][valid], outputs[1][valid], atol=1e-3))


def _max_seq_length(model_dir: Path) -> int:
    config = model_dir / "sentence_bert_config.json"
    if config.exists():
        return int(json.loads(config.read_text()).get("max_seq_length", 512))
    return 512


def _prompts(model_dir: Path) -> dict[str, str]:
    config = model_dir / "config_sentence_transformers.json"
    if not config.exists():
        return {}
    prompts = json.loads(config.read_text()).get("prompts") or {}
    return {str(name): str(text) for name, text in prompts.items()}


def _mean_pooling_dimension(model_dir: Path) -> int:
    pooling = model_dir / "1_Pooling" / "config.json"
    if not pooling.exists():
        raise OnnxExportError(f"{model_dir} has no 1_Pooling/config.json; use the torch backend")
    config = json.loads(pooling.read_text())
    if not config.get("pooling_mode_mean_tokens"):
        raise OnnxExportError(
            "the ONNX backend supports mean-pooling models only; use the torch backend"
        )
    return int(config["word_embedding_dimension"])


if __name__ == "__main__":  # the child process of `_export_in_child`
    make_graph(Path(sys.argv[1]), Path(sys.argv[2]))
