"""Load on a real server on 127.0.0.1: 50 clients while a re-index swaps the index underneath,
and load shedding once the workers and the queue are full."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.load import drive, metric_samples, quote_key
from bots.http import create_app
from embeddings.encoder import Encoder
from qa.engine import Verbatim
from qa.settings import Settings

from .conftest import load_question_set
from .live_server import LiveServer

TROOPS = "How many U.S. military personnel are forward deployed in the region?"
VERBATIM = str(Path(sys.executable).with_name("verbatim"))


def _expected(engine: Verbatim, questions: list[str]) -> dict[str, Any]:
    return {q: quote_key(engine.ask(q).model_dump(mode="json")) for q in questions}


def test_fifty_clients_during_a_reindex_each_get_their_own_answer(
    seed_dir: Path, tmp_path: Path, encoder: Encoder
) -> None:
    questions = [item["question"] for item in load_question_set()]
    settings = Settings(home=tmp_path / "home", rate_limit="")
    engine = Verbatim(settings, encoder)
    before = engine.build_index([seed_dir]).index_version
    expected = {before: _expected(engine, questions)}
    seed = seed_dir / "001_dd8c4ca6def8021f.txt"
    seed.write_text(seed.read_text().replace("about 100,000", "about 80,000"))
    (seed_dir / "exercises.md").write_text("# Exercises\n\nJoint exercises were held in 2016.")

    with LiveServer(create_app(settings, engine)) as live:
        live.wait_ready()
        reindex = subprocess.Popen(
            [VERBATIM, "index", str(seed_dir)],
            env={**os.environ, "VERBATIM_HOME": str(settings.home)},
            stdout=subprocess.DEVNULL,
        )

        async def load() -> Any:
            indexing = asyncio.Event()
            indexing.set()

            async def watch() -> None:
                await asyncio.to_thread(reindex.wait)
                indexing.clear()

            watcher = asyncio.create_task(watch())
            run = await drive(live.url, questions, clients=50, seconds=3, keep_going=indexing)
            await watcher
            return run

        run = asyncio.run(load())
        assert reindex.returncode == 0
        after = engine.index.version
        scraped = metric_samples(httpx.get(f"{live.url}/metrics").text)
        expected[after] = _expected(engine, questions)

    assert after != before
    assert run.failures == {}
    assert {reply.status for reply in run.replies} == {200}, run.summary()
    assert len(run.replies) >= 50
    for reply in run.replies:
        assert reply.body["question"] == reply.question
        version = reply.body["index_version"]
        assert version in expected, version
        assert quote_key(reply.body) == expected[version][reply.question], reply.question
    assert "about 80,000" in engine.ask(TROOPS).quotes[0].text
    # 50 clients at once: their questions were read in batches, and /metrics shows it
    batches = scraped["verbatim_question_batches_total"]
    assert scraped["verbatim_batched_questions_total"] > batches > 0


def test_overload_is_shed_with_503_and_retry_after(
    tmp_path: Path, encoder: Encoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(home=tmp_path / "home", rate_limit="", query_workers=1, max_queued=2)
    engine = Verbatim(settings, encoder)
    engine.build_index()
    with LiveServer(create_app(settings, engine)) as live:
        live.wait_ready()
        # Hold every question inside the engine until released: workers and queue fill up.
        release, entered = threading.Event(), threading.Semaphore(0)
        answer: Callable[..., Any] = engine.ask

        def held(*args: Any, **options: Any) -> Any:
            entered.release()
            assert release.wait(60)
            return answer(*args, **options)

        monkeypatch.setattr(engine, "ask", held)
        question = {"question": "Who reaffirmed the alliance?"}
        results: list[httpx.Response] = []

        def ask() -> None:
            results.append(httpx.post(f"{live.url}/v1/ask", json=question, timeout=60))

        admitted = [threading.Thread(target=ask) for _ in range(3)]  # 1 worker + 2 queued
        admitted[0].start()
        assert entered.acquire(timeout=30)  # the worker holds the first question
        for thread in admitted[1:]:
            thread.start()
        for _ in range(10_000):  # until the metrics show the queue full
            if "verbatim_questions_in_flight 3.0" in httpx.get(f"{live.url}/metrics").text:
                break
        else:
            pytest.fail("the queued questions never arrived")

        shed = httpx.post(f"{live.url}/v1/ask", json=question, timeout=10)
        assert shed.status_code == 503
        assert shed.json()["error"]["code"] == "busy"
        assert shed.headers["retry-after"] == "1"
        assert httpx.get(f"{live.url}/readyz").status_code == 200  # busy is not unready

        release.set()
        for thread in admitted:
            thread.join(timeout=60)
        assert [r.status_code for r in results] == [200, 200, 200]
        assert httpx.post(f"{live.url}/v1/ask", json=question).status_code == 200
