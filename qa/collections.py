"""Named collections: one deployment, several corpora, each its own index.

A collection is an index of its own (`Settings.collection` picks its folder, or its own Milvus
collections), built, swapped and reloaded independently of the others. `Collections` keeps one
engine per collection; they share the loaded models. The default collection holds the seeds.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

from qa.engine import Verbatim
from qa.index import IndexNotFoundError, current_version_dir
from qa.settings import COLLECTION_NAME, DEFAULT_COLLECTION, Settings


class CollectionNotFoundError(KeyError):
    """No index was ever built for this collection."""


@dataclass(frozen=True)
class CollectionSummary:
    name: str
    documents: int
    model: str
    model_reason: str
    index_version: str


class Collections:
    """The engines of a deployment's collections, made on first use."""

    def __init__(self, settings: Settings, default: Verbatim | None = None) -> None:
        self.settings = settings.model_copy(update={"collection": DEFAULT_COLLECTION})
        self._engines = {DEFAULT_COLLECTION: default or Verbatim(self.settings)}
        self._lock = threading.Lock()

    @property
    def default(self) -> Verbatim:
        return self._engines[DEFAULT_COLLECTION]

    def engine(self, name: str) -> Verbatim:
        """The collection's engine; CollectionNotFoundError when it has no index."""
        with self._lock:
            if name in self._engines:
                return self._engines[name]
            if name not in self.names():
                raise CollectionNotFoundError(name)
            settings = self.settings.model_copy(update={"collection": name})
            # the default engine's encoder is used where a collection has the same model
            engine = Verbatim(settings, self.default.encoder)
            self._engines[name] = engine
            return engine

    def names(self) -> list[str]:
        """The default collection and every other that has an index."""
        folder = self.settings.collections_dir
        others = (
            sorted(
                p.name
                for p in folder.iterdir()
                if re.fullmatch(COLLECTION_NAME, p.name) and current_version_dir(p) is not None
            )
            if folder.is_dir()
            else []
        )
        return [DEFAULT_COLLECTION, *(n for n in others if n != DEFAULT_COLLECTION)]

    def summary(self, name: str) -> CollectionSummary:
        try:
            index = self.engine(name).index
        except IndexNotFoundError:  # the default collection before its first build
            return CollectionSummary(name, 0, "", "not indexed yet", "")
        return CollectionSummary(
            name=name,
            documents=len(index.entries),
            model=index.model,
            model_reason=index.model_reason(),
            index_version=index.version,
        )
