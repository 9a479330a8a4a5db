"""The core: index builds, retrieval, quote selection, abstention. Every door calls `Verbatim`."""

from qa.answer import Answer, Passage, Quote
from qa.engine import DocumentNotFoundError, Verbatim
from qa.settings import Settings

__all__ = ["Answer", "DocumentNotFoundError", "Passage", "Quote", "Settings", "Verbatim"]
