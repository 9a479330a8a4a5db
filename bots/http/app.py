"""The FastAPI app: `/v1` JSON API, health and metrics, and the chat page at `/`.

No retrieval logic lives here: every route is one call into `qa.Verbatim`, run in a worker
thread so encoding and search never block the event loop.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import asdict
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import anyio
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from limits import parse as parse_rate
from limits.strategies import MovingWindowRateLimiter
from slack_bolt.request import BoltRequest
from starlette.exceptions import HTTPException

from bots.http.guard import RequestGuard
from bots.http.metrics import Metrics
from bots.http.schemas import (
    AskRequest,
    CollectionBody,
    CollectionQuery,
    ConversationBody,
    DocumentFull,
    DocumentSummary,
    ErrorBody,
    Examples,
    TurnBody,
)
from bots.slack.adapter import SlackAdapter
from bots.slack.settings import SlackSettings
from corpus.models import Document
from embeddings.store import VectorStoreUnavailable
from qa.answer import Answer, SearchResult
from qa.collections import CollectionNotFoundError, Collections, CollectionSummary
from qa.conversation import Conversation
from qa.engine import DocumentNotFoundError, Verbatim
from qa.logs import configure_logging, get_logger
from qa.settings import DEFAULT_COLLECTION, Settings
from qa.state import State

log = get_logger("verbatim.http")
T = TypeVar("T")

_ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    422: "invalid_request",
    429: "rate_limited",
    503: "not_ready",
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 401, 403, 404, 413, 422, 429, 503)
}


def configure_server_logging(settings: Settings) -> None:
    """A server logs JSON for collectors, and keeps its access log (INFO)."""
    level = min(logging.getLevelNamesMapping()[settings.log_level], logging.INFO)
    configure_logging(logging.getLevelName(level), log_format="json")


def app_from_environment() -> FastAPI:
    """The app as each process of `verbatim serve --workers N` builds it: its settings come
    from the VERBATIM_* variables, which is how `serve` hands its flags to the processes."""
    settings = Settings()
    configure_server_logging(settings)
    return create_app(settings)


def create_app(
    settings: Settings | None = None,
    engine: Verbatim | None = None,
    slack: SlackSettings | None = None,
) -> FastAPI:
    """The app; Slack's `/slack/events` is mounted when `slack` (default: from the
    environment) has a bot token and a signing secret."""
    settings = settings or Settings()
    engine = engine or Verbatim(settings.for_server())
    slack = slack if slack is not None else SlackSettings()
    collections = Collections(settings, engine)
    metrics = Metrics(engine.batcher)
    ready = threading.Event()
    startup_error: list[str] = []
    workers: list[anyio.CapacityLimiter] = []

    def load() -> None:
        """Models and index, once, off the event loop: /readyz answers 503 until this is done."""
        try:
            engine.prepare()
            metrics.observe_index(engine.index)
        except Exception as exc:
            log.error("startup_failed", error=str(exc))
            startup_error.append(str(exc))  # /readyz and /v1 say why, instead of "loading"
            return
        metrics.ready.set(1)
        ready.set()
        log.info("ready", index_version=engine.index.version, pid=os.getpid())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        workers.append(anyio.CapacityLimiter(settings.query_workers))
        threading.Thread(target=load, name="verbatim-load", daemon=True).start()
        yield

    capacity = settings.query_workers + settings.max_queued
    in_flight = [0]  # touched only on the event loop: no lock

    async def in_worker(function: Callable[..., T], *args: Any) -> T:
        """Run `function` on a query worker; shed load with 503 rather than queue unboundedly."""
        if in_flight[0] >= capacity:
            raise ServerBusy(in_flight[0])
        in_flight[0] += 1
        metrics.in_flight.set(in_flight[0])
        try:
            return await anyio.to_thread.run_sync(partial(function, *args), limiter=workers[0])
        finally:
            in_flight[0] -= 1
            metrics.in_flight.set(in_flight[0])

    app = FastAPI(
        title="Verbatim",
        summary="Answers questions from your documents with exact, checkable quotes.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.ready = ready
    app.state.engine = engine

    v1 = APIRouter(
        prefix="/v1",
        dependencies=[Depends(_access_check(settings, engine.state, ready, startup_error))],
        responses=_ERRORS,
    )

    async def reader(request: Request, collection: str) -> Verbatim:
        """The engine of `collection`, if the request's API key may read it."""
        scope = request.state.scope
        if scope is not None and collection not in scope:
            raise HTTPException(403, f"this API key may not read the collection {collection!r}")
        try:
            return await in_worker(collections.engine, collection)
        except CollectionNotFoundError:
            raise HTTPException(404, f"no collection {collection!r}") from None

    async def owned(
        request: Request, collection: str, conversation_id: str
    ) -> tuple[Verbatim, Conversation]:
        """The collection's engine and the conversation of the request's key in it (404 for
        an unknown, expired or another key's conversation: the same answer for all three)."""
        chosen = await reader(request, collection)
        found = await in_worker(chosen.conversation, conversation_id, _owner(request, collection))
        if found is None:
            raise HTTPException(404, _conversation_gone(conversation_id))
        return chosen, found

    @v1.post("/ask", response_model=Answer, summary="Answer a question with exact quotes")
    async def ask(body: AskRequest, request: Request) -> Answer:
        if settings.log_questions:
            request.state.question = body.question
        if body.conversation_id is None:
            chosen = await reader(request, body.collection)
            conversation = chosen.new_conversation(_owner(request, body.collection))
        else:
            chosen, conversation = await owned(request, body.collection, body.conversation_id)
        answer = await in_worker(
            partial(
                chosen.converse,
                body.question,
                conversation,
                top_k=body.top_k,
                filters=body.filters,
                mode=body.mode,
                explain=body.explain,
            )
        )
        metrics.answers.labels(answer.status).inc()
        metrics.observe_index(engine.index)
        return answer

    @v1.post("/search", response_model=SearchResult, summary="Ranked passages, no quote selection")
    async def search(body: AskRequest, request: Request) -> SearchResult:
        if settings.log_questions:
            request.state.question = body.question
        chosen = await reader(request, body.collection)
        return await in_worker(
            chosen.search, body.question, body.top_k, body.filters, body.mode, body.explain
        )

    @v1.get(
        "/collections",
        response_model=list[CollectionBody],
        summary="The collections this API key may read",
    )
    async def list_collections(request: Request) -> list[CollectionBody]:
        scope = request.state.scope

        def readable() -> list[CollectionSummary]:  # reads the collections folder: a worker's job
            names = collections.names()
            return [collections.summary(n) for n in names if scope is None or n in scope]

        found = await in_worker(readable)
        return [CollectionBody(**asdict(summary)) for summary in found]

    @v1.get(
        "/conversations/{conversation_id}",
        response_model=ConversationBody,
        responses={404: {"model": ErrorBody}},
        summary="A conversation's turns",
    )
    async def conversation(
        conversation_id: str, request: Request, collection: CollectionQuery = DEFAULT_COLLECTION
    ) -> ConversationBody:
        _, found = await owned(request, collection, conversation_id)
        return ConversationBody(
            conversation_id=found.conversation_id,
            turns=[
                TurnBody(question=t.question, query=t.query, quoted=t.quoted) for t in found.turns
            ],
            updated=found.updated,
        )

    @v1.delete(
        "/conversations/{conversation_id}",
        status_code=204,
        responses={404: {"model": ErrorBody}},
        summary="Forget a conversation",
    )
    async def forget(
        conversation_id: str, request: Request, collection: CollectionQuery = DEFAULT_COLLECTION
    ) -> None:
        chosen, _ = await owned(request, collection, conversation_id)
        await in_worker(chosen.conversations.delete, conversation_id)

    @v1.get("/documents", response_model=list[DocumentSummary], summary="Indexed documents")
    async def documents(
        request: Request, collection: CollectionQuery = DEFAULT_COLLECTION
    ) -> list[DocumentSummary]:
        chosen = await reader(request, collection)
        return [DocumentSummary(**_summary(d)) for d in await in_worker(chosen.documents)]

    @v1.get("/examples", response_model=Examples, summary="Questions to offer a new user")
    async def examples(
        request: Request, collection: CollectionQuery = DEFAULT_COLLECTION
    ) -> Examples:
        chosen = await reader(request, collection)
        return Examples(questions=await in_worker(chosen.example_questions))

    @v1.get(
        "/documents/{doc_id}",
        response_model=DocumentFull,
        responses={404: {"model": ErrorBody}},
        summary="One document with its full text, to check quotes against",
    )
    async def document(
        doc_id: str, request: Request, collection: CollectionQuery = DEFAULT_COLLECTION
    ) -> DocumentFull:
        chosen = await reader(request, collection)
        try:
            found = await in_worker(chosen.document, doc_id)
        except DocumentNotFoundError:
            raise HTTPException(404, f"no document {doc_id!r}") from None
        return DocumentFull(**_summary(found), text=found.text)

    app.include_router(v1)
    if slack.http_enabled:
        _mount_slack(app, SlackAdapter(collections, settings, slack))

    @app.get("/healthz", summary="The process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz", summary="The model and index are loaded", responses={503: {"model": ErrorBody}}
    )
    async def readyz() -> dict[str, str]:
        if not ready.is_set():
            raise HTTPException(
                503,
                _not_ready_message(startup_error, "loading the model and index"),
                headers={"Retry-After": "1"},
            )
        try:
            await anyio.to_thread.run_sync(engine.check_ready)
        except VectorStoreUnavailable as exc:
            raise HTTPException(503, str(exc), headers={"Retry-After": "5"}) from exc
        return {"status": "ready", "index_version": engine.index.version}

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    static = Path(str(resources.files("bots.http") / "static"))

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(static / "index.html", headers=_PAGE_HEADERS)

    @app.get("/documents/{doc_id}", include_in_schema=False)
    async def document_page(doc_id: str) -> FileResponse:
        """A document, whole, with the quote of `#chars=START-END` highlighted (the page
        reads the text from /v1/documents/{doc_id}, under the same access rules)."""
        return FileResponse(static / "document.html", headers=_PAGE_HEADERS)

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> FileResponse:  # browsers ask for it whatever the page links
        return FileResponse(static / "favicon.svg", media_type="image/svg+xml")

    app.mount("/static", StaticFiles(directory=static), name="static")
    _add_error_handlers(app)
    if settings.cors_origin_list:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origin_list,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type"],
        )
    app.add_middleware(RequestGuard, metrics=metrics, max_body_bytes=settings.max_body_bytes)
    return app


class ServerBusy(Exception):
    """More questions in progress than workers plus queue: answered 503 with Retry-After."""

    def __init__(self, in_flight: int) -> None:
        super().__init__(f"the server is busy ({in_flight} questions in progress); retry shortly")


def _mount_slack(app: FastAPI, adapter: SlackAdapter) -> None:
    @app.post("/slack/events", include_in_schema=False)
    async def slack_events(request: Request) -> Response:
        bolt_request = BoltRequest(
            body=(await request.body()).decode("utf-8"),
            query=request.url.query,
            headers=dict(request.headers),
        )
        # Bolt acks before its listeners run; dispatch itself still must not block the loop.
        bolt_response = await anyio.to_thread.run_sync(adapter.app.dispatch, bolt_request)
        return Response(
            content=bolt_response.body,
            status_code=bolt_response.status,
            headers=bolt_response.first_headers_without_set_cookie(),
        )


# The page runs only its own script: a document that contains <script> cannot execute.
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}


def _not_ready_message(startup_error: list[str], loading: str) -> str:
    if startup_error:
        return f"cannot answer: {startup_error[-1]}"
    return loading


def _owner(request: Request, collection: str) -> str:
    """Whose conversations a request reaches: its API key's (a digest, never the key), or
    everyone's on a server without keys; in one collection."""
    presented = _presented_key(request)
    key = hashlib.sha256(presented.encode()).hexdigest()[:16] if presented else ""
    return f"{key}@{collection}"


def _conversation_gone(conversation_id: str) -> str:
    return (
        f"no conversation {conversation_id!r} (unknown, expired or another key's): leave"
        " conversation_id out to start a new one"
    )


def _access_check(
    settings: Settings, state: State, ready: threading.Event, startup_error: list[str]
) -> Callable[[Request], None]:
    """API key (when keys are set), readiness and the per-client rate limit, in that order."""
    keys = settings.api_key_scopes
    rate = parse_rate(settings.rate_limit) if settings.rate_limit else None
    limiter = MovingWindowRateLimiter(state.limits)  # shared by replicas with Redis state

    def check(request: Request) -> None:
        presented = _presented_key(request)
        matched = [key for key in keys if hmac.compare_digest(presented or "", key)]
        request.state.scope = keys[matched[0]] if matched else None  # None: every collection
        if keys and not matched:
            raise HTTPException(
                401,
                "an API key is required: send `Authorization: Bearer KEY` or `X-API-Key: KEY`",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not ready.is_set():
            raise HTTPException(
                503,
                _not_ready_message(startup_error, "still loading the model and index"),
                headers={"Retry-After": "1"},
            )
        client = presented or (request.client.host if request.client else "unknown")
        if rate is not None and not limiter.hit(rate, client):
            reset = limiter.get_window_stats(rate, client).reset_time
            retry = max(1, math.ceil(reset - time.time()))
            raise HTTPException(
                429,
                f"rate limit of {settings.rate_limit} reached",
                headers={"Retry-After": str(retry)},
            )

    return check


def _presented_key(request: Request) -> str | None:
    authorization = request.headers.get("authorization", "")
    if authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return request.headers.get("x-api-key")


def _summary(document: Document) -> dict[str, Any]:
    return {
        "doc_id": document.doc_id,
        "title": document.title,
        "date": document.date,
        "source": document.source,
        "url": document.url,
        "lang": document.lang,
        "chars": len(document.text),
        "metadata": document.metadata,
    }


def _error(
    status: int, message: str, headers: Mapping[str, str] | None = None, code: str | None = None
) -> JSONResponse:
    code = code or _ERROR_CODES.get(status, "error" if status < 500 else "internal")
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(error.get("type") == "json_invalid" for error in errors):
            return _error(400, "the request body is not valid JSON", code="invalid_json")
        first = errors[0]
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
        message = str(first.get("msg", "invalid request")).removeprefix("Value error, ")
        return _error(422, f"{where}: {message}" if where else message)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail), exc.headers)

    @app.exception_handler(ServerBusy)
    async def busy(request: Request, exc: ServerBusy) -> JSONResponse:
        return _error(503, str(exc), {"Retry-After": "1"}, code="busy")

    @app.exception_handler(VectorStoreUnavailable)
    async def store_down(request: Request, exc: VectorStoreUnavailable) -> JSONResponse:
        log.error("vector_store_unavailable", error=str(exc), route=request.url.path)
        return _error(503, str(exc), {"Retry-After": "5"})

    @app.exception_handler(Exception)
    async def crash(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled_error", error=repr(exc), route=request.url.path)
        return _error(500, "internal error; the server log has the details")
