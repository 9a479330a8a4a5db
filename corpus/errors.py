"""The one error a document can raise: it names the file and says what to do."""

from __future__ import annotations

from pathlib import Path


class DocumentError(Exception):
    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason

    def __reduce__(self) -> tuple[type[DocumentError], tuple[str, str]]:
        # Raised in the parsing process and pickled back to the indexer.
        return (type(self), (self.path, self.reason))
