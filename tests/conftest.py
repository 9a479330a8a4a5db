from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.milvus_server import milvus_server
from bench.redis_server import RedisUnavailable, redis_server
from bots.http import create_app
from corpus.loader import default_corpus_dir
from embeddings.encoder import Encoder, EncoderConfig
from qa.engine import Verbatim
from qa.logs import configure_logging
from qa.settings import Settings

from .live_server import LiveServer

os.environ.setdefault("HF_HUB_OFFLINE", "1")
configure_logging("WARNING")


@pytest.fixture(scope="session", autouse=True)
def _shared_models(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every engine home in the tests (and the CLI and server processes they start) shares one
    model folder: each home would otherwise export and convert its own (~1 GB, ~13 s)."""
    before = os.environ.get("VERBATIM_MODELS_DIR")
    os.environ["VERBATIM_MODELS_DIR"] = str(tmp_path_factory.mktemp("models"))
    yield
    if before is None:
        del os.environ["VERBATIM_MODELS_DIR"]
    else:
        os.environ["VERBATIM_MODELS_DIR"] = before


ROOT = Path(__file__).resolve().parent.parent
QUESTION_SET = ROOT / "eval" / "seed_questions.jsonl"
# The answer's fields and its quotes' fields, as docs/design.md shows them.
DESIGN_ANSWER_FIELDS = frozenset("question status quotes threshold index_version took_ms".split())
DESIGN_CONVERSATION_FIELDS = frozenset({"conversation_id", "context"})  # null outside one
DESIGN_QUOTE_FIELDS = frozenset(
    "rank text doc_id title date source url char_start char_end section passage score".split()
)


@pytest.fixture(scope="session")
def encoder() -> Encoder:
    """The real packaged model on torch (the reference the ONNX path is held to), loaded once."""
    model = Encoder(EncoderConfig(backend="torch"))
    model.load()
    return model


@pytest.fixture
def seed_dir(tmp_path: Path) -> Path:
    """A private copy of the seed documents that a test may edit."""
    target = tmp_path / "seeds"
    shutil.copytree(default_corpus_dir(), target)
    return target


@pytest.fixture
def make_engine(tmp_path: Path, encoder: Encoder) -> Callable[..., Verbatim]:
    def make(**settings: Any) -> Verbatim:
        settings.setdefault("home", tmp_path / "home")
        # the engine uses the shared model only where its index or setting names that model
        return Verbatim(Settings(**settings), encoder)

    return make


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, encoder: Encoder) -> Iterator[LiveServer]:
    """A real uvicorn server on 127.0.0.1 over the seed corpus, rate limit off, per module."""
    settings = Settings(home=tmp_path_factory.mktemp("http-home"), rate_limit="")
    with LiveServer(create_app(settings, Verbatim(settings, encoder))) as live:
        live.wait_ready()
        yield live


@pytest.fixture(scope="session")
def seed_engine(tmp_path_factory: pytest.TempPathFactory, encoder: Encoder) -> Verbatim:
    """An engine over the packaged seed corpus, built once."""
    engine = Verbatim(Settings(home=tmp_path_factory.mktemp("seed-home")), encoder)
    engine.build_index()
    return engine


def seeds_with(folder: Path, name: str, text: str) -> Path:
    """`folder` holding the seed documents and one more document, `name`, with `text`."""
    shutil.copytree(default_corpus_dir(), folder, dirs_exist_ok=True)
    (folder / name).write_text(text, encoding="utf-8")
    return folder


def load_question_set() -> list[dict[str, Any]]:
    with QUESTION_SET.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server of its own on 127.0.0.1 (Debian's package, installed by `make test`)."""
    try:
        with redis_server(tmp_path_factory.mktemp("redis")) as url:
            yield url
    except RedisUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def milvus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One Milvus server for the session (the project's `milvus-server`): its modules share it,
    each with its own collections, rather than restart it."""
    with milvus_server(tmp_path_factory.mktemp("milvus")) as uri:
        yield uri
