"""Hostile requests against a real server on 127.0.0.1: the API fuzzed from its own OpenAPI
schema, odd question text through the whole pipeline, and the security basics."""

from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bots.http import create_app
from bots.http.schemas import QUESTION_LIMIT
from embeddings.encoder import Encoder
from qa.engine import Verbatim
from qa.logs import configure_logging
from qa.settings import Settings

from .live_server import LiveServer

API_KEY = "k-9f2c1e7d5b3a"


def test_api_fuzzed_from_its_schema(server: LiveServer) -> None:
    """Every operation of the OpenAPI schema, fuzzed (valid and invalid data): no server error,
    and every response (errors included) conforms to the schema."""
    api = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operations = [result.ok() for result in api.get_all_operations()]  # type: ignore[union-attr]
    assert {op.label for op in operations} >= {"POST /v1/ask", "GET /v1/documents/{doc_id}"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case: schemathesis.Case) -> None:  # type: ignore[type-arg]
            case.call_and_validate(base_url=server.url)

        check()


# Text a question may hold: control characters, right-to-left scripts, emoji, CJK, combining
# marks, lone surrogates excluded (JSON cannot carry them).
_QUESTION_TEXT = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8", exclude_categories=["Cs"]),
        st.sampled_from(list("\u202e\u200f\u0627\u05d0\u65e5\u672c🙂👍🏽\u0301\x00\x1b\t\n")),
    ),
    max_size=QUESTION_LIMIT,
)


@given(question=_QUESTION_TEXT)
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_any_question_text_gets_an_answer_or_a_clear_error(
    server: LiveServer, question: str
) -> None:
    response = httpx.post(f"{server.url}/v1/ask", json={"question": question}, timeout=30)
    if not question.strip():
        assert response.status_code == 422
        assert response.json()["error"]["message"].startswith("question: ")
        return
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["question"] == question
    assert answer["status"] in ("answered", "no_answer")
    for quote in answer["quotes"]:
        text = httpx.get(f"{server.url}/v1/documents/{quote['doc_id']}").json()["text"]
        assert text[quote["char_start"] : quote["char_end"]] == quote["text"]


def test_question_length_limit(server: LiveServer) -> None:
    at_limit = httpx.post(f"{server.url}/v1/ask", json={"question": "alliance " * 222 + "ab"})
    assert at_limit.status_code == 200
    over = httpx.post(f"{server.url}/v1/ask", json={"question": "a" * (QUESTION_LIMIT + 1)})
    assert over.status_code == 422
    assert "2000" in over.json()["error"]["message"]


@pytest.mark.parametrize(
    "path",
    [
        "/v1/documents/..%2F..%2F..%2Fetc%2Fpasswd",
        "/v1/documents/%2Fetc%2Fpasswd",
        "/v1/documents/..",
        "/v1/documents/~root",
    ],
)
def test_documents_route_reads_only_the_index(server: LiveServer, path: str) -> None:
    response = httpx.get(f"{server.url}{path}")
    assert response.status_code == 404
    assert "root:" not in response.text


def test_page_forbids_inline_script_and_framing(server: LiveServer) -> None:
    headers = httpx.get(f"{server.url}/").headers
    policy = headers["content-security-policy"]
    assert "default-src 'self'" in policy and "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy and "object-src 'none'" in policy
    assert headers["x-content-type-options"] == "nosniff"


def test_api_keys_are_compared_in_constant_time_and_never_logged(
    tmp_path: Path, encoder: Encoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hmac

    compared: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        compared.append((a, b))
        return bool(real(a, b))

    monkeypatch.setattr(hmac, "compare_digest", spy)  # the module the server's check calls
    settings = Settings(home=tmp_path, rate_limit="", api_keys=API_KEY)
    stream = io.StringIO()
    configure_logging("DEBUG", stream)
    try:
        with LiveServer(create_app(settings, Verbatim(settings, encoder))) as server:
            server.wait_ready()
            ok = httpx.post(
                f"{server.url}/v1/ask",
                json={"question": "Who reaffirmed the alliance?"},
                headers={"Authorization": f"Bearer {API_KEY}"},
            )
            wrong = httpx.get(f"{server.url}/v1/documents", headers={"X-API-Key": API_KEY[:-1]})
    finally:
        configure_logging("WARNING")
    assert ok.status_code == 200 and wrong.status_code == 401
    assert (API_KEY, API_KEY) in compared and (API_KEY[:-1], API_KEY) in compared
    log = stream.getvalue()
    assert log and API_KEY[:-1] not in log  # neither the key nor the wrong guess
    assert all(json.loads(line) for line in log.splitlines())
