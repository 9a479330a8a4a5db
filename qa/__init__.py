"""The core: index builds, retrieval, quote selection, abstention. Every door calls `Verbatim`."""

from qa.answer import Answer, Passage, Quote, SearchResult
from qa.engine import DocumentNotFoundError, Verbatim
from qa.filters import Filters
from qa.settings import Settings

__all__ = [
    "Answer",
    "DocumentNotFoundError",
    "Filters",
    "Passage",
    "Quote",
    "SearchResult",
    "Settings",
    "Verbatim",
]
