"""Documents in: reading files, metadata, normalisation, sentence splitting and chunking."""

from corpus.chunking import ChunkerSettings, chunk_document
from corpus.errors import DocumentError
from corpus.loader import LoadResult, load_documents
from corpus.models import Chunk, Document, Span
from corpus.normalize import normalize_text
from corpus.sentences import split_sentences

__all__ = [
    "Chunk",
    "ChunkerSettings",
    "Document",
    "DocumentError",
    "LoadResult",
    "Span",
    "chunk_document",
    "load_documents",
    "normalize_text",
    "split_sentences",
]
