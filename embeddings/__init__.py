"""Vectors: the sentence encoder and the vector stores behind one small interface."""

from embeddings.encoder import DEFAULT_MODEL, Encoder, EncoderConfig, ModelLoadError
from embeddings.store import FaissStore, VectorStore, chunk_vector_id

__all__ = [
    "DEFAULT_MODEL",
    "Encoder",
    "EncoderConfig",
    "FaissStore",
    "ModelLoadError",
    "VectorStore",
    "chunk_vector_id",
]
