"""The HTTP API over a real uvicorn server on 127.0.0.1, with the real model and index."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TextIO, cast

import httpx
import pytest

from bots.http import create_app
from embeddings.encoder import Encoder
from qa.engine import Verbatim
from qa.logs import configure_logging, get_logger
from qa.settings import Settings

from .conftest import DESIGN_ANSWER_FIELDS, DESIGN_CONVERSATION_FIELDS, DESIGN_QUOTE_FIELDS
from .live_server import LiveServer

TROOPS = "How many U.S. military personnel are forward deployed in the region?"


@pytest.fixture
def start(tmp_path: Path, encoder: Encoder) -> Iterator[Callable[..., LiveServer]]:
    """Starts a server with its own settings; stopped after the test."""
    running: list[LiveServer] = []

    def make(**options: Any) -> LiveServer:
        options.setdefault("home", tmp_path / "home")
        settings = Settings(**options)
        live = LiveServer(create_app(settings, Verbatim(settings, encoder))).__enter__()
        running.append(live)
        return live

    yield make
    for live in running:
        live.__exit__(None, None, None)


def _error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]
    assert "Traceback" not in response.text


def test_health_ready_and_metrics(server: LiveServer) -> None:
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{server.url}/readyz").json()
    assert ready["status"] == "ready" and ready["index_version"]
    httpx.post(f"{server.url}/v1/ask", json={"question": TROOPS})
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'verbatim_requests_total{method="POST",route="/v1/ask",status="200"}' in metrics
    assert "verbatim_request_seconds_bucket" in metrics
    assert 'verbatim_answers_total{status="answered"}' in metrics
    assert "verbatim_index_documents 2.0" in metrics
    # micro-batching's counts (tests/test_load.py sees them grow under load)
    assert "verbatim_question_batches_total " in metrics
    assert "verbatim_batched_questions_total " in metrics


@pytest.mark.parametrize(
    "question", [TROOPS, "When was the Joint Declaration issued?", "Who is the Secretary of State?"]
)
def test_every_quote_checks_out_against_the_document(server: LiveServer, question: str) -> None:
    response = httpx.post(f"{server.url}/v1/ask", json={"question": question, "top_k": 3})
    assert response.status_code == 200
    answer = response.json()
    assert answer["status"] == "answered" and answer["quotes"]
    for quote in answer["quotes"]:
        document = httpx.get(f"{server.url}/v1/documents/{quote['doc_id']}").json()
        assert document["text"][quote["char_start"] : quote["char_end"]] == quote["text"]
        assert document["title"] == quote["title"]


def test_unanswerable_question(server: LiveServer) -> None:
    answer = httpx.post(f"{server.url}/v1/ask", json={"question": "What is the capital of France?"})
    assert answer.json()["status"] == "no_answer"


def test_curl_style_form_body_is_read_as_json(server: LiveServer) -> None:
    response = httpx.post(
        f"{server.url}/v1/ask",
        content=json.dumps({"question": TROOPS}),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200 and "about 100,000" in response.json()["quotes"][0]["text"]


def test_search_and_documents(server: LiveServer) -> None:
    found = httpx.post(f"{server.url}/v1/search", json={"question": TROOPS, "top_k": 4}).json()
    scores = [p["score"] for p in found["passages"]]
    assert len(scores) == 4 and scores == sorted(scores, reverse=True)
    assert "about 100,000" in found["passages"][0]["text"]
    listing = httpx.get(f"{server.url}/v1/documents").json()
    assert [d["doc_id"] for d in listing] == ["000_ca5c4864f6c7d21a", "001_dd8c4ca6def8021f"]
    assert "text" not in listing[0] and listing[0]["date"] == "2014-12-19"
    _error(httpx.get(f"{server.url}/v1/documents/nope"), 404, "not_found")


@pytest.mark.parametrize("mode", ["dense", "bm25", "hybrid"])
def test_mode_and_explain_fields(server: LiveServer, mode: str) -> None:
    body = {"question": TROOPS, "mode": mode, "explain": True}
    answer = httpx.post(f"{server.url}/v1/ask", json=body).json()
    explain = answer["quotes"][0]["explain"]
    assert explain["mode"] == mode and "deployed" in explain["matched_terms"]
    assert (explain["bm25_rank"] is not None) == (mode != "dense")
    found = httpx.post(f"{server.url}/v1/search", json=body).json()
    assert found["passages"][0]["explain"]["mode"] == mode
    plain = httpx.post(f"{server.url}/v1/ask", json={"question": TROOPS}).json()
    assert plain["quotes"][0]["explain"] is None


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"question": ""}, 422, "invalid_request"),
        ({"question": "   \n\t"}, 422, "invalid_request"),
        ({"question": "x" * 2001}, 422, "invalid_request"),
        ({"question": "ok?", "top_k": 0}, 422, "invalid_request"),
        ({"question": "ok?", "top_k": 21}, 422, "invalid_request"),
        ({"question": 123}, 422, "invalid_request"),
        ({"question": "ok?", "filters": {"color": "red"}}, 422, "invalid_request"),
        ({"question": "ok?", "mode": "semantic"}, 422, "invalid_request"),
        ({"question": "ok?", "explain": "maybe"}, 422, "invalid_request"),
        ({}, 422, "invalid_request"),
        ([1, 2], 422, "invalid_request"),
    ],
)
def test_bad_requests_get_clear_errors(
    server: LiveServer, body: Any, status: int, code: str
) -> None:
    for route in ("/v1/ask", "/v1/search"):
        _error(httpx.post(f"{server.url}{route}", json=body), status, code)


def test_malformed_and_oversized_bodies(server: LiveServer) -> None:
    _error(httpx.post(f"{server.url}/v1/ask", content=b"{not json"), 400, "invalid_json")
    huge = json.dumps({"question": "x" * 100_000}).encode()
    _error(httpx.post(f"{server.url}/v1/ask", content=huge), 413, "body_too_large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"question": "'
        for _ in range(100):
            yield b"x" * 1000
        yield b'"}'

    _error(httpx.post(f"{server.url}/v1/ask", content=chunks()), 413, "body_too_large")
    _error(httpx.get(f"{server.url}/v1/ask"), 405, "method_not_allowed")


def test_api_keys_guard_v1_but_not_health(start: Callable[..., LiveServer]) -> None:
    live = start(api_keys="alpha, beta", rate_limit="")
    live.wait_ready()
    _error(httpx.post(f"{live.url}/v1/ask", json={"question": TROOPS}), 401, "unauthorized")
    wrong = httpx.get(f"{live.url}/v1/documents", headers={"Authorization": "Bearer gamma"})
    _error(wrong, 401, "unauthorized")
    assert wrong.headers["www-authenticate"] == "Bearer"
    bearer = httpx.post(
        f"{live.url}/v1/ask", json={"question": TROOPS}, headers={"Authorization": "Bearer beta"}
    )
    assert bearer.status_code == 200
    assert httpx.get(f"{live.url}/v1/documents", headers={"X-API-Key": "alpha"}).status_code == 200
    assert httpx.get(f"{live.url}/healthz").status_code == 200
    assert httpx.get(f"{live.url}/metrics").status_code == 200


def test_rate_limit_answers_429_with_retry_after(start: Callable[..., LiveServer]) -> None:
    live = start(rate_limit="3/minute")
    live.wait_ready()
    statuses = [httpx.get(f"{live.url}/v1/documents").status_code for _ in range(3)]
    assert statuses == [200, 200, 200]
    limited = httpx.get(f"{live.url}/v1/documents")
    _error(limited, 429, "rate_limited")
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert httpx.get(f"{live.url}/healthz").status_code == 200


def test_not_ready_until_model_and_index_load(
    start: Callable[..., LiveServer], encoder: Encoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = threading.Event()
    monkeypatch.setattr(encoder, "load", lambda: gate.wait(60))
    live = start()
    not_ready = httpx.get(f"{live.url}/readyz")
    _error(not_ready, 503, "not_ready")
    assert not_ready.headers["retry-after"] == "1"
    _error(httpx.post(f"{live.url}/v1/ask", json={"question": TROOPS}), 503, "not_ready")
    assert httpx.get(f"{live.url}/healthz").status_code == 200
    gate.set()
    live.wait_ready()
    assert httpx.get(f"{live.url}/readyz").status_code == 200


def test_reindex_swaps_in_without_restart(
    start: Callable[..., LiveServer], seed_dir: Path, tmp_path: Path, encoder: Encoder
) -> None:
    settings = Settings(home=tmp_path / "home")
    indexer = Verbatim(settings, encoder)
    indexer.build_index([seed_dir])
    live = start(home=settings.home, rate_limit="")
    live.wait_ready()
    before = httpx.post(f"{live.url}/v1/ask", json={"question": TROOPS}).json()
    assert "about 100,000" in before["quotes"][0]["text"]
    seed = seed_dir / "001_dd8c4ca6def8021f.txt"
    seed.write_text(seed.read_text().replace("about 100,000", "about 70,000"))
    indexer.build_index([seed_dir])
    after = httpx.post(f"{live.url}/v1/ask", json={"question": TROOPS}).json()
    assert "about 70,000" in after["quotes"][0]["text"]
    assert after["index_version"] != before["index_version"]


def test_concurrent_questions_each_get_their_own_answer(server: LiveServer) -> None:
    questions = [
        TROOPS,
        "When was the Joint Declaration issued?",
        "What is the capital of France?",
    ] * 6

    def ask(question: str) -> dict[str, Any]:
        response = httpx.post(f"{server.url}/v1/ask", json={"question": question}, timeout=60)
        assert response.status_code == 200
        return dict(response.json())

    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(ask, questions))
    for question, answer in zip(questions, answers, strict=True):
        assert answer["question"] == question
    assert {a["status"] for a in answers} == {"answered", "no_answer"}


def test_access_log_is_structured_and_keeps_questions_out(
    start: Callable[..., LiveServer], server: LiveServer
) -> None:
    stream = io.StringIO()
    configure_logging("INFO", stream)
    try:
        httpx.post(
            f"{server.url}/v1/ask", json={"question": TROOPS}, headers={"X-Request-ID": "req-1"}
        )
        private = [json.loads(line) for line in stream.getvalue().splitlines()]
        entry = next(e for e in private if e.get("request_id") == "req-1")
        assert entry["route"] == "/v1/ask" and entry["status"] == 200 and entry["latency_ms"] > 0
        assert "question" not in entry and TROOPS not in stream.getvalue()

        verbose = start(log_questions=True, rate_limit="")
        verbose.wait_ready()
        httpx.post(
            f"{verbose.url}/v1/ask", json={"question": TROOPS}, headers={"X-Request-ID": "req-2"}
        )
        logged = [json.loads(line) for line in stream.getvalue().splitlines()]
        assert next(e for e in logged if e.get("request_id") == "req-2")["question"] == TROOPS
    finally:
        configure_logging("WARNING")


class _Writes:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def write(self, text: str) -> int:
        self.calls.append(text)
        return len(text)

    def flush(self) -> None:
        pass


def test_each_log_line_is_one_write_so_processes_sharing_stderr_never_mix_lines() -> None:
    # `serve --workers` processes share one stderr; unbuffered, a line written in two parts
    # let two processes' "ready" events run together into one unparseable line
    stream = _Writes()
    configure_logging("INFO", cast(TextIO, stream))
    try:
        get_logger("test").info("ready", pid=1)
        get_logger("test").info("ready", pid=2)
    finally:
        configure_logging("WARNING")
    assert len(stream.calls) == 2 and all(call.endswith("}\n") for call in stream.calls)
    assert [json.loads(call)["pid"] for call in stream.calls] == [1, 2]


def test_openapi_answer_schema_matches_the_design(server: LiveServer) -> None:
    schema = httpx.get(f"{server.url}/openapi.json").json()
    components = schema["components"]["schemas"]
    answer = components["Answer"]
    assert set(answer["required"]) == DESIGN_ANSWER_FIELDS
    assert set(answer["properties"]) == DESIGN_ANSWER_FIELDS | DESIGN_CONVERSATION_FIELDS
    assert answer["properties"]["status"]["enum"] == ["answered", "no_answer"]
    quote = components["Quote"]
    assert set(quote["properties"]) >= DESIGN_QUOTE_FIELDS
    assert set(quote["required"]) >= DESIGN_QUOTE_FIELDS
    ask = schema["paths"]["/v1/ask"]["post"]
    assert ask["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/Answer"
    )
    assert "/v1/search" in schema["paths"] and "/v1/documents/{doc_id}" in schema["paths"]
    assert httpx.get(f"{server.url}/docs").status_code == 200


def test_cors_allows_only_configured_origins(start: Callable[..., LiveServer]) -> None:
    live = start(cors_origins="https://intranet.example", rate_limit="")
    live.wait_ready()
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    allowed = httpx.options(
        f"{live.url}/v1/ask", headers={"Origin": "https://intranet.example", **preflight}
    )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://intranet.example"
    refused = httpx.options(
        f"{live.url}/v1/ask", headers={"Origin": "https://evil.example", **preflight}
    )
    assert "access-control-allow-origin" not in refused.headers


def test_examples_offered_over_the_seeds_are_answered(server: LiveServer) -> None:
    questions = httpx.get(f"{server.url}/v1/examples").json()["questions"]
    assert len(questions) >= 2 and any(not q.isascii() for q in questions)  # English and Japanese
    for question in questions:
        answer = httpx.post(f"{server.url}/v1/ask", json={"question": question}).json()
        assert answer["status"] == "answered", question


def test_configured_examples_replace_the_seed_ones(start: Callable[..., LiveServer]) -> None:
    live = start(example_questions=["When is the budget review?"], rate_limit="")
    live.wait_ready()
    examples = httpx.get(f"{live.url}/v1/examples").json()
    assert examples == {"questions": ["When is the budget review?"]}


def test_examples_for_other_documents_come_from_titles_and_are_answered(
    tmp_path: Path, make_engine: Callable[..., Verbatim]
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "leave.md").write_text(
        "# Parental leave policy\n\nEmployees may take up to sixteen weeks of paid parental"
        " leave. Leave must be requested from HR at least four weeks in advance.\n"
    )
    (docs / "budget.md").write_text(
        "# Budget review 2026\n\nThe budget review of 2026 takes place in March. Travel"
        " spending is capped at 5,000 euros per person.\n"
    )
    (docs / "note.md").write_text("# Note\n\nRemember to water the plants.\n")
    engine = make_engine()
    engine.build_index([docs])
    examples = engine.example_questions()
    assert any("Parental leave policy" in q for q in examples), examples
    assert not any("Note" in q for q in examples), examples  # nothing answers "What does Note say?"
    titles = {d.doc_id: d.title for d in engine.documents()}
    for question in examples:
        top = engine.ask(question).quotes[0]
        assert top.closest_match is False and titles[top.doc_id] in question


def test_a_follow_up_continues_the_conversation_the_server_issued(server: LiveServer) -> None:
    first = httpx.post(
        f"{server.url}/v1/ask",
        json={"question": "When was the Japan-U.S. Joint Declaration on Security issued?"},
    ).json()
    conversation_id = first["conversation_id"]
    assert conversation_id and first["context"] is None
    follow_up = {"question": "What did it reaffirm?", "conversation_id": conversation_id}
    answer = httpx.post(f"{server.url}/v1/ask", json=follow_up).json()
    assert (
        answer["conversation_id"] == conversation_id
        and answer["question"] == "What did it reaffirm?"
    )
    assert answer["context"]["turn"] == 1
    assert answer["context"]["question"] == first["question"]
    assert "Declaration" in answer["context"]["query"]  # retrieval read the earlier subject
    top = answer["quotes"][0]
    assert "reaffirmed the importance of the Japan-U.S. security arrangements" in top["text"]
    text = httpx.get(f"{server.url}/v1/documents/{top['doc_id']}").json()["text"]
    assert text[top["char_start"] : top["char_end"]] == top["text"]  # still an exact quote
    alone = httpx.post(f"{server.url}/v1/ask", json={"question": "What did it reaffirm?"}).json()
    assert alone["context"] is None and alone["conversation_id"] != conversation_id

    stored = httpx.get(f"{server.url}/v1/conversations/{conversation_id}").json()
    assert [t["question"] for t in stored["turns"]] == [first["question"], follow_up["question"]]
    assert httpx.delete(f"{server.url}/v1/conversations/{conversation_id}").status_code == 204
    assert httpx.get(f"{server.url}/v1/conversations/{conversation_id}").status_code == 404
    gone = httpx.post(f"{server.url}/v1/ask", json=follow_up)
    assert (
        gone.status_code == 404 and "leave conversation_id out" in gone.json()["error"]["message"]
    )


def test_a_conversation_belongs_to_the_key_that_started_it(
    start: Callable[..., LiveServer],
) -> None:
    live = start(api_keys="alpha,beta", rate_limit="")
    live.wait_ready()
    alpha, beta = {"X-API-Key": "alpha"}, {"Authorization": "Bearer beta"}
    asked = httpx.post(
        f"{live.url}/v1/ask", json={"question": "Where was the 2+2 meeting held?"}, headers=alpha
    ).json()
    conversation_id = asked["conversation_id"]
    url = f"{live.url}/v1/conversations/{conversation_id}"
    assert httpx.get(url, headers=alpha).status_code == 200
    for method in (httpx.get, httpx.delete):
        assert method(url, headers=beta).status_code == 404  # not there, for another key
    continued = httpx.post(
        f"{live.url}/v1/ask",
        json={"question": "When was it?", "conversation_id": conversation_id},
        headers=beta,
    )
    assert continued.status_code == 404
    assert httpx.get(url, headers=alpha).json()["turns"][0]["question"] == asked["question"]


HR_DOC = (
    "# Parental leave policy\n\nEmployees may take up to sixteen weeks of paid parental leave."
    " Leave must be requested from HR at least four weeks in advance.\n"
)
SEED_DOC = "001_dd8c4ca6def8021f"


def test_api_keys_are_scoped_to_collections_and_no_door_leaks_another(
    tmp_path: Path, start: Callable[..., LiveServer], encoder: Encoder
) -> None:
    home = tmp_path / "home"
    (tmp_path / "hr").mkdir()
    (tmp_path / "hr" / "leave.md").write_text(HR_DOC, encoding="utf-8")
    Verbatim(Settings(home=home, collection="hr"), encoder).build_index([tmp_path / "hr"])
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"hr-key": ["hr"], "admin": "*"}), encoding="utf-8")
    live = start(home=home, api_keys="seed-key:default", api_keys_file=keys, rate_limit="")
    live.wait_ready()
    hr, seeds, admin = ({"X-API-Key": k} for k in ("hr-key", "seed-key", "admin"))

    def ask(headers: dict[str, str], **body: Any) -> httpx.Response:
        return httpx.post(f"{live.url}/v1/ask", json=body, headers=headers)

    leave = ask(hr, question="How many weeks of parental leave?", collection="hr")
    assert leave.status_code == 200 and leave.json()["quotes"][0]["doc_id"] == "leave"
    troops = "How many U.S. military personnel are forward deployed in the region?"
    assert ask(seeds, question=troops).json()["quotes"][0]["doc_id"] == SEED_DOC
    # every way for the hr key to reach the seeds' text
    assert ask(hr, question=troops).status_code == 403  # the default collection
    assert ask(hr, question=troops, collection="default").status_code == 403
    filtered = ask(hr, question=troops, collection="hr", filters={"doc_ids": [SEED_DOC]})
    assert all(q["doc_id"] != SEED_DOC for q in filtered.json()["quotes"])
    for path in (f"/v1/documents/{SEED_DOC}", "/v1/documents", "/v1/examples"):
        assert httpx.get(f"{live.url}{path}", headers=hr).status_code == 403
    hr_view = httpx.get(f"{live.url}/v1/documents/{SEED_DOC}?collection=hr", headers=hr)
    assert hr_view.status_code == 404
    listed = httpx.get(f"{live.url}/v1/documents?collection=hr", headers=hr).json()
    assert [d["doc_id"] for d in listed] == ["leave"]
    seed_conversation = ask(seeds, question=troops).json()["conversation_id"]
    for collection in ("hr", "default"):
        reused = ask(
            hr, question="And where?", collection=collection, conversation_id=seed_conversation
        )
        assert reused.status_code in (403, 404)
    url = f"{live.url}/v1/conversations/{seed_conversation}"
    assert httpx.get(f"{url}?collection=hr", headers=hr).status_code == 404
    assert httpx.get(url, headers=admin).status_code == 404  # another key's, even for admin
    assert httpx.get(url, headers=seeds).status_code == 200

    names = {
        k: [c["name"] for c in httpx.get(f"{live.url}/v1/collections", headers=h).json()]
        for k, h in (("hr", hr), ("seeds", seeds), ("admin", admin))
    }
    assert names == {"hr": ["hr"], "seeds": ["default"], "admin": ["default", "hr"]}
    assert ask(admin, question=troops, collection="nope").status_code == 404
    assert ask(hr, question=troops, collection="nope").status_code == 403
    assert ask(admin, question=troops, collection="../etc").status_code == 422
