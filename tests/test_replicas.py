"""Two replicas on 127.0.0.1 behind a round-robin proxy, sharing nothing but real services:
vectors on a Milvus server, state on a Redis server, the index version on a shared folder."""

from __future__ import annotations

import itertools
import shutil
import threading
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request, Response

from bots.http import create_app
from bots.slack.settings import SlackSettings
from corpus.loader import default_corpus_dir
from embeddings.encoder import Encoder
from qa.engine import Verbatim
from qa.settings import Settings

from .fake_slack import BOT_TOKEN, BOT_USER, SIGNING_SECRET, FakeSlackAPI, SlackDriver
from .live_server import LiveServer

TROOPS = "How many U.S. military personnel are forward deployed in the region?"


def _round_robin(urls: list[str]) -> FastAPI:
    """A proxy sending each request to the next replica in turn."""
    proxy = FastAPI()
    proxy.state.ready = threading.Event()
    proxy.state.ready.set()
    turn = itertools.cycle(urls)

    @proxy.api_route("/{path:path}", methods=["GET", "POST", "DELETE"])
    async def forward(path: str, request: Request) -> Response:
        async with httpx.AsyncClient(timeout=60) as client:
            answer = await client.request(
                request.method,
                f"{next(turn)}/{path}",
                params=request.query_params,
                content=await request.body(),
                headers={k: v for k, v in request.headers.items() if k.lower() != "host"},
            )
        return Response(answer.content, answer.status_code, dict(answer.headers))

    return proxy


def test_two_replicas_answer_as_one(
    milvus: str, redis_url: str, encoder: Encoder, tmp_path: Path
) -> None:
    corpus = tmp_path / "corpus"
    shutil.copytree(default_corpus_dir(), corpus)
    shared: dict[str, Any] = {
        "index_dir": tmp_path / "index",  # the index version every replica loads
        "vector_store": "milvus",
        "milvus_uri": milvus,
        "milvus_collection": "replicas",
        "state_url": redis_url,
        "api_keys": "asker,counter",
        "rate_limit": "4/minute",
    }
    builder = Verbatim(Settings(home=tmp_path / "builder", **shared), encoder)
    builder.build_index([corpus])
    api = FakeSlackAPI()
    slack = SlackSettings(bot_token=BOT_TOKEN, signing_secret=SIGNING_SECRET, api_base_url=api.url)
    replicas = []
    for n in (1, 2):
        settings = Settings(home=tmp_path / f"replica-{n}", **shared)
        replicas.append(LiveServer(create_app(settings, Verbatim(settings, encoder), slack)))
    with replicas[0] as one, replicas[1] as two, LiveServer(_round_robin([one.url, two.url])) as lb:
        one.wait_ready()
        two.wait_ready()

        # a Slack retry that reaches the other replica is answered once
        event = {
            "type": "app_mention",
            "user": "U1",
            "channel": "CREP",
            "ts": "1800000000.000100",
            "text": f"<@{BOT_USER}> Where was the 2+2 meeting held?",
        }
        SlackDriver(f"{one.url}/slack/events", api).event(event, event_id="EvREPLICA1")
        api.wait_for("chat.postMessage", 1, channel="CREP")  # replica one claimed and answered
        SlackDriver(f"{two.url}/slack/events", api).event(event, event_id="EvREPLICA1")
        # ... and a follow-up in its thread, on the other replica, keeps the thread's subject
        follow_up = {
            "type": "message",
            "channel_type": "channel",
            "user": "U1",
            "channel": "CREP",
            "ts": "1800000000.000200",
            "thread_ts": "1800000000.000100",
            "text": "When was it held?",
        }
        SlackDriver(f"{two.url}/slack/events", api).event(follow_up, event_id="EvREPLICA2")
        posted = api.wait_for("chat.postMessage", 2, channel="CREP")
        assert len(api.calls_to("chat.postMessage", "CREP")) == 2  # not 3: the retry was dropped
        assert posted[1]["thread_ts"] == event["ts"]
        thread = builder.conversation(f"slack:CREP:{event['ts']}", "slack")  # as Redis holds it
        assert thread is not None
        assert [t.question for t in thread.turns] == [
            "Where was the 2+2 meeting held?",
            "When was it held?",
        ]
        assert "2+2 meeting" in thread.turns[-1].query  # read with the thread's first question

        # an HTTP conversation continues on whichever replica the proxy picks
        asker = {"X-API-Key": "asker"}
        first = httpx.post(
            f"{lb.url}/v1/ask", json={"question": TROOPS}, headers=asker, timeout=60
        ).json()
        follow = {
            "question": "Does that include Japan?",
            "conversation_id": first["conversation_id"],
        }
        continued = httpx.post(f"{lb.url}/v1/ask", json=follow, headers=asker, timeout=60)
        assert continued.status_code == 200 and continued.json()["context"]["turn"] == 1

        # one client's rate limit holds across both replicas: 4 a minute in all, not 4 each
        counter = {"X-API-Key": "counter"}
        codes = [
            httpx.post(
                f"{lb.url}/v1/ask", json={"question": TROOPS}, headers=counter, timeout=60
            ).status_code
            for _ in range(6)
        ]
        assert codes == [200, 200, 200, 200, 429, 429]

        # a re-index published by the builder is served by both, with no restart
        (corpus / "exercise.txt").write_text(
            "Exercise notes\n\nThe logistics exercise used the code KX-7741 in 2016.\n"
        )
        builder.build_index([corpus])
        for replica in (one, two):
            found = httpx.post(
                f"{replica.url}/v1/ask",
                json={"question": "Which code did the logistics exercise use?"},
                headers=asker,
                timeout=60,
            ).json()
            assert found["quotes"][0]["doc_id"] == "exercise", replica.url
