"""Two replicas on 127.0.0.1 behind a round-robin proxy, sharing nothing but real services:
vectors on a Milvus server, state on a Redis server, the index version on a shared folder."""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
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


class _Replica:
    """`verbatim serve` in a process of its own (and its workers', in its process group), its
    JSON log read as it comes: each server process logs `ready` once it can answer."""

    def __init__(self, env: dict[str, str], *flags: str) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        command = [str(Path(sys.executable).parent / "verbatim"), "serve", "--port", str(port)]
        self.process = subprocess.Popen(
            [*command, *flags],
            env={**os.environ, **env},
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group: killed with its workers
        )
        self.log: list[str] = []
        self._ready = threading.Semaphore(0)
        threading.Thread(target=self._read_log, daemon=True).start()

    def _read_log(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.log.append(line)
            if '"event": "ready"' in line:
                self._ready.release()
        self._ready.release()  # the log closed: the process is gone, wake the waiter

    def wait_ready(self, processes: int = 1) -> None:
        for _ in range(processes):
            assert self._ready.acquire(timeout=300), "".join(self.log[-20:])
            assert self.process.poll() is None, "".join(self.log[-20:])

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(60)


def _failover(urls: list[str], outcomes: list[tuple[str, int]]) -> FastAPI:
    """Round robin, moving on to the next replica when one refuses the connection (it never
    took the request), as nginx's `proxy_next_upstream error` does; a replica that dies with
    a request in hand costs that request (502). Each forwarded request's (replica, status) is
    recorded in `outcomes`."""
    proxy = FastAPI()
    proxy.state.ready = threading.Event()
    proxy.state.ready.set()
    turn = itertools.cycle(range(len(urls)))

    @proxy.post("/v1/ask")
    async def forward(request: Request) -> Response:
        first = next(turn)
        body = await request.body()
        async with httpx.AsyncClient(timeout=120) as client:
            for url in urls[first:] + urls[:first]:
                try:
                    answer = await client.post(f"{url}/v1/ask", content=body, headers=_JSON)
                except httpx.ConnectError:
                    continue
                except httpx.HTTPError:
                    outcomes.append((url, 502))
                    return Response(status_code=502)
                outcomes.append((url, answer.status_code))
                return Response(answer.content, answer.status_code, _JSON)
        return Response(status_code=502)

    return proxy


_JSON = {"content-type": "application/json"}
QUESTIONS = [
    TROOPS,
    "Where was the 2+2 meeting held?",
    "What does Article 5 of the Treaty commit the United States to?",
    "Which islands does the Treaty cover?",
]


def test_a_killed_replica_loses_no_request_the_other_accepted(
    milvus: str, redis_url: str, encoder: Encoder, tmp_path: Path
) -> None:
    """Two `verbatim serve` processes, one of them with two workers (`--workers 2` over
    Milvus and Redis), under a counting load; one is killed mid-load."""
    env = {
        "VERBATIM_INDEX_DIR": str(tmp_path / "index"),
        "VERBATIM_VECTOR_STORE": "milvus",
        "VERBATIM_MILVUS_URI": milvus,
        "VERBATIM_MILVUS_COLLECTION": "killed",
        "VERBATIM_STATE_URL": redis_url,
        "VERBATIM_RATE_LIMIT": "",
    }
    builder = Verbatim(
        Settings(
            home=tmp_path / "builder",
            index_dir=tmp_path / "index",
            vector_store="milvus",
            milvus_uri=milvus,
            milvus_collection="killed",
        ),
        encoder,
    )
    builder.build_index(None)
    survivor = _Replica({**env, "VERBATIM_HOME": str(tmp_path / "survivor")}, "--workers", "2")
    victim = _Replica({**env, "VERBATIM_HOME": str(tmp_path / "victim")})
    outcomes: list[tuple[str, int]] = []
    try:
        survivor.wait_ready(processes=2)  # both of its workers loaded model and index
        victim.wait_ready()
        with LiveServer(_failover([survivor.url, victim.url], outcomes)) as lb:
            sent: list[tuple[bool, int]] = []  # (sent after the kill, status) per request
            answered = threading.Condition()  # notified by a load driver after each answer
            killed = threading.Event()
            stop = threading.Event()

            def drive(n: int) -> None:
                with httpx.Client(timeout=120) as client:
                    while not stop.is_set():
                        after = killed.is_set()
                        question = {"question": QUESTIONS[n % len(QUESTIONS)]}
                        status = client.post(f"{lb.url}/v1/ask", json=question).status_code
                        with answered:
                            sent.append((after, status))
                            answered.notify_all()
                        n += 1

            drivers = [threading.Thread(target=drive, args=(n,)) for n in range(4)]
            for driver in drivers:
                driver.start()
            try:
                with answered:  # the proxy records a request before the driver hears back
                    took = answered.wait_for(
                        lambda: sum(url == victim.url for url, _ in outcomes) >= 6, timeout=300
                    )
                    assert took, "the victim answered too few requests"
                victim.kill()
                killed.set()
                with answered:
                    assert answered.wait_for(lambda: sum(a for a, _ in sent) >= 12, timeout=300)
            finally:
                stop.set()
                for driver in drivers:
                    driver.join(120)
    finally:
        survivor.stop()
        victim.stop()
    by_survivor = [status for url, status in outcomes if url == survivor.url]
    lost = [status for url, status in outcomes if url == victim.url and status != 200]
    assert by_survivor and set(by_survivor) == {200}  # every request it took was answered
    assert [status for after, status in sent if after] == [200] * sum(a for a, _ in sent)
    assert len(lost) <= 4  # at most the requests the victim held when it died
    assert len(sent) == len(outcomes)  # the load driver saw every request the proxy forwarded
