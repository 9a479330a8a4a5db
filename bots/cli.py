"""The `verbatim` command line: a door onto the core, like the HTTP and Slack adapters.

Exit codes: 0 success, 1 failure (one-line message on stderr), 2 usage error.
With `--json`, stdout holds only the JSON document; progress and logs go to stderr.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
import typer.core
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from embeddings.encoder import ModelLoadError, prepared_models
from embeddings.store import VectorStoreUnavailable
from qa.answer import Answer, Explanation
from qa.collections import Collections
from qa.engine import DocumentNotFoundError, Verbatim
from qa.evaluation.docqa import DocQASlice
from qa.filters import Filters
from qa.index import BuildProgress, BuildReport, VerbatimIndexError
from qa.logs import LogFormat, configure_logging
from qa.quote_scorer import QuoteModelError
from qa.retriever import Mode
from qa.settings import Settings


def _flag_type(self: typer.core.TyperOption, ctx: Any) -> str | None:
    # typer 0.29 labels every flag `<bool>`, its own --help included; a flag takes no value.
    return None if self.is_flag else _option_type(self, ctx)


_option_type = typer.core.TyperOption.display_type_rich
typer.core.TyperOption.display_type_rich = _flag_type  # type: ignore[method-assign]

app = typer.Typer(
    help="Verbatim answers questions from your documents with exact, checkable quotes.\n\n"
    "Settings come from flags or VERBATIM_* environment variables "
    "(VERBATIM_HOME, VERBATIM_INDEX_DIR, VERBATIM_MODEL, VERBATIM_THRESHOLD, ...).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True, soft_wrap=True)
# Never break a quote with inserted newlines; piped output gets room for wide tables.
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)


COLLECTION_OPTION = typer.Option(
    help="Which collection (a named corpus with its own index; created by `verbatim index"
    " --collection NAME PATH`) \\[env: VERBATIM_COLLECTION; default: default, the seeds]."
)


class _State:
    overrides: dict[str, Any] = {}  # noqa: RUF012 - one CLI invocation per process


def _settings(**extra: Any) -> Settings:
    values = {k: v for k, v in {**_State.overrides, **extra}.items() if v is not None}
    try:
        settings = Settings(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        _fail(f"invalid setting {'.'.join(map(str, first['loc']))}: {first['msg']}", code=2)
    configure_logging(settings.log_level, log_format=settings.log_format)
    return settings


def _shard(value: str) -> tuple[int, int]:
    number, _, total = value.partition("/")
    if not (number.isdigit() and total.isdigit() and 1 <= int(number) <= int(total)):
        _fail(f"--shard takes I/N with 1 ≤ I ≤ N, e.g. --shard 2/4; got {value!r}", code=2)
    return int(number), int(total)


def _engine(settings: Settings) -> Verbatim:
    try:
        return Verbatim(settings)
    except QuoteModelError as exc:
        _fail(str(exc))


def _fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    raise typer.Exit(code)


@app.callback()
def _options(
    home: Annotated[
        Path | None, typer.Option(help="Data directory \\[env: VERBATIM_HOME].")
    ] = None,
    index_dir: Annotated[
        Path | None,
        typer.Option(help="Index directory \\[env: VERBATIM_INDEX_DIR; default HOME/index]."),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="Sentence-transformers model name or path \\[env: VERBATIM_MODEL; default:"
            " chosen from the documents' languages, all-MiniLM-L6-v2 for English only,"
            " multilingual-e5-small otherwise]."
        ),
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log progress too, not only problems.")
    ] = False,
    log_format: Annotated[
        LogFormat | None,
        typer.Option(
            help="Logs on stderr: human lines, or JSON objects for scripts"
            " \\[env: VERBATIM_LOG_FORMAT; default human]."
        ),
    ] = None,
) -> None:
    _State.overrides = {
        "home": home,
        "index_dir": index_dir,
        "model": model,
        "log_level": "INFO" if verbose else None,
        "log_format": log_format,
    }


@app.command()
def index(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="Files or folders to index. None: the packaged seed documents."),
    ] = None,
    chunk_size: Annotated[
        int | None, typer.Option(help="Chunk size in characters \\[env: VERBATIM_CHUNK_SIZE].")
    ] = None,
    chunk_overlap: Annotated[
        int | None,
        typer.Option(help="Overlap between chunks in characters \\[env: VERBATIM_CHUNK_OVERLAP]."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the build report as JSON.")
    ] = False,
    collection: Annotated[str | None, COLLECTION_OPTION] = None,
    shard: Annotated[
        str | None,
        typer.Option(
            metavar="I/N",
            help="On machine I of N: only encode this share of the documents into the shared "
            "Milvus staging collection (needs VERBATIM_VECTOR_STORE=milvus); then one run "
            "without --shard builds the index from the staged vectors (docs/scaling.md).",
        ),
    ] = None,
) -> None:
    """Index documents (.txt .md .html .pdf .docx). Re-runs only embed what changed; the index
    then mirrors exactly the PATHs given (files no longer there are removed)."""
    settings = _settings(chunk_size=chunk_size, chunk_overlap=chunk_overlap, collection=collection)
    engine = _engine(settings)
    if shard is not None:
        number, total = _shard(shard)
        staged = _run(lambda progress: engine.prepare_shard(paths, number, total, progress))
        if as_json:
            print(json.dumps(staged.to_dict(), indent=2))
        else:
            err.print(
                f"shard {number}/{total}: {len(staged.added)} documents staged, "
                f"{len(staged.unchanged)} already staged, {len(staged.failed)} skipped · "
                f"{staged.chunks_embedded + staged.sentences_embedded} texts encoded · "
                f"{staged.seconds:.2f} s"
            )
        return
    models_before = _prepared_bytes(settings)
    report = _run(lambda progress: engine.build_index(paths, progress))
    for failure in report.failed:
        err.print(
            f"[yellow]skipped[/yellow] {escape(failure.path)}: {escape(failure.reason)}",
            highlight=False,
        )
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        _print_report(report, settings, engine.unread_languages_note(report))
    if report.chunks_total == 0:
        _fail("no documents could be indexed")
    _prepare_models(engine, settings, models_before)


def _prepared_bytes(settings: Settings) -> int:
    return sum(m.bytes for m in prepared_models(settings.resolved_models_dir))


def _prepare_models(engine: Verbatim, settings: Settings, before: int) -> None:
    """The models a question may need, made ready now (once), so no question waits on them."""
    folder = settings.resolved_models_dir
    with err.status(
        f"preparing the models questions need in {folder} (the first time: about a minute)",
        spinner="dots",
    ):
        try:
            engine.prepare_models()
        except ModelLoadError as exc:
            _fail(str(exc))
    written = _prepared_bytes(settings) - before
    if written > 0:
        err.print(
            f"models ready: {_size(written)} written to {folder} (`verbatim models` lists them)",
            highlight=False,
        )


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB"):
        if size < 1024:
            return f"{size:.0f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question, in quotes.")],
    top_k: Annotated[
        int | None, typer.Option("--top-k", "-k", help="How many quotes, at most.")
    ] = None,
    threshold: Annotated[
        float | None, typer.Option(help="Minimum score to answer \\[env: VERBATIM_THRESHOLD].")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the answer as JSON (shape: docs/design.md).")
    ] = False,
    doc: Annotated[
        list[str] | None, typer.Option(help="Only this document id (repeatable).")
    ] = None,
    source: Annotated[str | None, typer.Option(help="Only documents from this source.")] = None,
    lang: Annotated[
        str | None, typer.Option(help='Only documents in this language ("en", "ja").')
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Only documents dated on or after (ISO).")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Only documents dated on or before (ISO).")
    ] = None,
    mode: Annotated[
        Mode | None,
        typer.Option(help="Retrieval: dense, bm25 or hybrid \\[env: VERBATIM_MODE]."),
    ] = None,
    explain: Annotated[
        bool, typer.Option(help="Show each quote's dense, BM25, fused and rerank scores.")
    ] = False,
    collection: Annotated[str | None, COLLECTION_OPTION] = None,
    conversation: Annotated[
        str | None,
        typer.Option(
            metavar="ID|new",
            help="Ask as the next turn of a conversation: `new` starts one (its id is printed),"
            " an id continues it, so a follow-up such as 'when was it signed?' is read with"
            " the question before it.",
        ),
    ] = None,
) -> None:
    """Answer a question with exact quotes from the indexed documents."""
    if not question.strip():
        _fail("the question is empty", code=2)
    settings = _settings(top_k=top_k, threshold=threshold, collection=collection)
    filters = Filters(doc_ids=doc, source=source, lang=lang, date_from=since, date_to=until)
    engine = _engine(settings)
    built = _run(engine.ensure_index)
    if built is not None:
        err.print("[dim]no index yet: indexed the packaged seed documents[/dim]")
    options: dict[str, Any] = {"filters": filters, "mode": mode, "explain": explain}
    if conversation is None:
        answer = _run(lambda _: engine.ask(question, **options))
    else:
        turn = (
            engine.new_conversation()
            if conversation == "new"
            else engine.conversation(conversation)
        )
        if turn is None:
            _fail(f"no conversation {conversation!r} (unknown or expired): use --conversation new")
        answer = _run(lambda _: engine.converse(question, turn, **options))
    if as_json:
        print(answer.model_dump_json(indent=2))
        return
    if answer.context is not None:
        err.print(f"[dim]read with your earlier question: {escape(answer.context.question)}[/dim]")
    _print_answer(answer)
    if answer.conversation_id is not None:
        err.print(f"[dim]follow up with --conversation {answer.conversation_id}[/dim]")


@app.command()
def models(
    as_json: Annotated[bool, typer.Option("--json", help="Print them as JSON.")] = False,
) -> None:
    """List the prepared models (converted weights, exported graphs, a fine-tuned
    cross-encoder) and their disk use. `verbatim index` prepares what questions need."""
    settings = _settings()
    folder = settings.resolved_models_dir
    prepared = prepared_models(folder)
    if as_json:
        entries = [asdict(m) for m in prepared]
        print(json.dumps({"folder": str(folder), "models": entries}, indent=2))
        return
    if not prepared:
        out.print(f"nothing prepared in {folder} yet: `verbatim index` prepares the models")
        return
    table = Table("in the models folder", "what", "size", title=str(folder))
    for model in prepared:
        table.add_row(model.name, model.what, _size(model.bytes))
    total = _size(sum(m.bytes for m in prepared))
    table.add_row("[bold]total[/bold]", "", f"[bold]{total}[/bold]")
    out.print(table)


@app.command()
def documents(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the documents' metadata as JSON.")
    ] = False,
    collection: Annotated[str | None, COLLECTION_OPTION] = None,
) -> None:
    """List the indexed documents."""
    engine = _engine(_settings(collection=collection))
    docs = _run(lambda _: engine.documents())
    if as_json:
        rows = [
            {k: v for k, v in d.to_dict().items() if k != "text"} | {"chars": len(d.text)}
            for d in docs
        ]
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    index = engine.index
    table = Table(
        "doc_id",
        "title",
        "date",
        "source",
        "lang",
        "chars",
        caption=f"index {index.version} · encoder {index.model} ({index.model_reason()})",
    )
    for d in docs:
        table.add_row(d.doc_id, d.title, d.date or "", d.source or "", d.lang, f"{len(d.text):,}")
    out.print(table)


@app.command()
def collections(
    as_json: Annotated[bool, typer.Option("--json", help="Print them as JSON.")] = False,
) -> None:
    """List the collections: their documents, encoder and index version."""
    settings = _settings()
    registry = Collections(settings, _engine(settings))
    summaries = _run(lambda _: [registry.summary(n) for n in registry.names()])
    if as_json:
        print(json.dumps([asdict(s) for s in summaries], indent=2))
        return
    table = Table("collection", "documents", "encoder", "index version")
    for s in summaries:
        table.add_row(s.name, str(s.documents), f"{s.model} ({s.model_reason})", s.index_version)
    out.print(table)


@app.command("eval")
def evaluate_command(
    source: Annotated[
        Path,
        typer.Argument(
            help="A question set (.jsonl/.yaml), a BEIR folder, or an extractive QA set in"
            " SQuAD's layout (.json or .json.gz: its articles become the documents)."
        ),
    ],
    corpus: Annotated[
        list[Path] | None,
        typer.Option(help="Documents a question set is about (default: the seed documents)."),
    ] = None,
    mode: Annotated[
        list[str] | None,
        typer.Option(
            help="Retrieval mode, one run each: dense, bm25, hybrid (default: configured)."
        ),
    ] = None,
    run: Annotated[
        list[str] | None,
        typer.Option(help="A run as NAME or NAME:setting=value,... (e.g. big:chunk_size=4000)."),
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Write results.json, per_query.csv, report.md, recall.png."),
    ] = None,
    baseline: Annotated[
        Path | None, typer.Option(help="An earlier results.json: per-query wins and losses.")
    ] = None,
    floors: Annotated[
        list[str] | None,
        typer.Option("--min", help="METRIC=VALUE floor; exit 1 when a run falls below."),
    ] = None,
    limit: Annotated[int, typer.Option(help="Only the first N questions (0: all).")] = 0,
    lang: Annotated[
        str | None, typer.Option(help='Only questions in this language ("en", "ja").')
    ] = None,
    calibrate: Annotated[
        bool,
        typer.Option(
            help="Choose the answer threshold: most unanswerable questions abstained while "
            "false abstentions stay within --max-false-abstention."
        ),
    ] = False,
    max_false_abstention: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="False-abstention bound for --calibrate.")
    ] = 0.05,
    part: Annotated[
        str,
        typer.Option(
            help="Extractive QA sets: the article-disjoint part, eval (reported) or train"
            " (what the quote ranker learns from)."
        ),
    ] = "eval",
    articles: Annotated[
        int, typer.Option(min=1, help="Extractive QA sets: articles indexed.")
    ] = DocQASlice.articles,
    withheld: Annotated[
        int,
        typer.Option(
            min=0, help="Extractive QA sets: articles left out; their questions are unanswerable."
        ),
    ] = DocQASlice.withheld,
    paragraphs: Annotated[
        int,
        typer.Option(
            min=0,
            help="Extractive QA sets: index only each article's first N paragraphs (0: all); the"
            " questions of the rest whose answers are nowhere indexed are unanswerable too.",
        ),
    ] = DocQASlice.paragraphs,
    questions: Annotated[
        int, typer.Option(min=1, help="Extractive QA sets: answerable questions sampled.")
    ] = DocQASlice.questions,
    unanswerable: Annotated[
        int, typer.Option(min=0, help="Extractive QA sets: unanswerable questions sampled.")
    ] = DocQASlice.unanswerable,
    as_json: Annotated[bool, typer.Option("--json", help="Print results.json to stdout.")] = False,
) -> None:
    """Measure retrieval and answer quality on a question set, a BEIR benchmark folder or an
    extractive QA set recast as document QA."""
    from qa.evaluation.evaluate import Progress as EvalProgress
    from qa.evaluation.evaluate import evaluate, failed_floors, parse_floor, parse_run
    from qa.evaluation.questions import QuestionSetError
    from qa.evaluation.report import baseline_changes, print_report, results_json, write_reports
    from qa.evaluation.runner import RunConfig

    settings = _settings()
    try:
        configs = (
            [parse_run(r) for r in run]
            if run
            else [RunConfig(m, mode=m) for m in mode or [settings.mode]]
        )
        wanted = [parse_floor(f) for f in floors or []]
        if part not in ("eval", "train"):
            raise ValueError(f"--part must be eval or train, not {part!r}")
    except ValueError as exc:
        _fail(str(exc), code=2)
    docqa = DocQASlice(
        part="eval" if part == "eval" else "train",
        articles=articles,
        withheld=withheld,
        paragraphs=paragraphs,
        questions=questions,
        unanswerable=unanswerable,
    )
    try:
        with _progress_bar() as bar:
            tasks: list[Any] = []

            def start(name: str, total: int) -> None:
                tasks.append(bar.add_task(f"run {name}", total=total))

            evaluation = evaluate(
                source,
                configs,
                settings,
                corpus,
                limit,
                EvalProgress(start, lambda: bar.advance(tasks[-1])),
                calibrate_for=max_false_abstention if calibrate else None,
                lang=lang,
                docqa=docqa,
            )
    except (
        QuestionSetError,
        VerbatimIndexError,
        ModelLoadError,
        VectorStoreUnavailable,
        OSError,
        ValueError,
    ) as exc:
        _fail(str(exc))
    if as_json:
        print(json.dumps(results_json(evaluation), indent=2, ensure_ascii=False))
    else:
        print_report(evaluation, out)
    if out_dir is not None:
        for path in write_reports(evaluation, out_dir):
            err.print(f"wrote {path}", highlight=False)
    if baseline is not None:
        for line in baseline_changes(evaluation, baseline):
            err.print(escape(line), highlight=False)
    if calibrate:
        for run_result in evaluation.runs:
            threshold = run_result.metrics.get("calibrated_threshold")
            if threshold is None:
                err.print(
                    f"{run_result.config.name}: calibration needs answerable and "
                    "unanswerable questions with quotes (a question set, not BEIR)"
                )
            else:
                err.print(
                    f"{run_result.config.name}: VERBATIM_THRESHOLD={threshold}", highlight=False
                )
    failures = failed_floors(evaluation, wanted)
    for failure in failures:
        err.print(f"[red]below floor:[/red] {escape(failure)}", highlight=False)
    if failures:
        raise typer.Exit(1)


feedback_app = typer.Typer(
    help="Feedback people gave on answers (Slack buttons).", no_args_is_help=True
)
app.add_typer(feedback_app, name="feedback")


@feedback_app.command("export")
def feedback_export(
    out_file: Annotated[
        Path, typer.Option("--out", help="Question-set file to write (.jsonl).")
    ] = Path("feedback_questions.jsonl"),
) -> None:
    """Write helpful answers as questions (gold: the quotes shown) for `verbatim eval`; unhelpful
    ones become comment lines to complete by hand."""

    settings = _settings()
    helpful, unhelpful = _engine(settings).state.feedback.export(out_file)
    out.print(
        f"wrote {out_file}: {helpful} helpful answers as questions, {unhelpful} unhelpful to review"
    )


@app.command()
def slack() -> None:
    """Run the Slack bot over Socket Mode (needs SLACK_BOT_TOKEN and SLACK_APP_TOKEN)."""
    from slack_bolt.adapter.socket_mode import SocketModeHandler
    from slack_bolt.error import BoltError
    from slack_sdk.errors import SlackClientError

    from bots.slack.adapter import SlackAdapter
    from bots.slack.settings import SlackSettings

    settings = _settings()
    credentials = SlackSettings()
    if not (credentials.bot_token and credentials.app_token):
        _fail("Socket Mode needs SLACK_BOT_TOKEN (xoxb-…) and SLACK_APP_TOKEN (xapp-…)", code=2)
    engine = _engine(settings)
    _run(engine.prepare)  # every model loaded before the first event, as `serve` does
    try:
        adapter = SlackAdapter(
            Collections(settings, engine),
            settings,
            credentials.model_copy(update={"signing_secret": ""}),
        )
    except (BoltError, SlackClientError, OSError) as exc:
        _fail(f"Slack: {exc}; check SLACK_BOT_TOKEN and SLACK_API_BASE_URL")
    err.print("connected to Slack over Socket Mode; Ctrl-C stops")
    handler = SocketModeHandler(adapter.app, credentials.app_token, web_client=adapter.client)
    handler.start()  # type: ignore[no-untyped-call]


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to listen on \\[env: VERBATIM_HOST].")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port \\[env: VERBATIM_PORT].")] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Server processes on this machine, each with the model and index in memory"
            " \\[env: VERBATIM_WORKERS; default 1]. More than one needs VERBATIM_STATE_URL"
            " (Redis): rate limits, Slack retries and conversations are then shared.",
        ),
    ] = None,
) -> None:
    """Serve the HTTP API and the chat page (indexes the seed documents if there is no index)."""
    import uvicorn
    from slack_bolt.error import BoltError
    from slack_sdk.errors import SlackClientError

    from bots.http.app import configure_server_logging, create_app

    settings = _settings(host=host, port=port, workers=workers)
    configure_server_logging(settings)
    server: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "access_log": False,  # the app writes its own structured access log
        "log_level": "warning",
        # Longer than clients keep idle connections (httpx 5 s, browsers up to 60 s): a server
        # that closes first races the client's next request on that connection (a read error).
        "timeout_keep_alive": 75,
    }
    if settings.workers > 1:
        if not settings.state_url:
            _fail(
                f"--workers {settings.workers} needs state the processes share: set"
                " VERBATIM_STATE_URL=redis://HOST:6379/0 (each process would otherwise keep its"
                " own rate windows and answer a Slack retry again)",
                code=2,
            )
        _engine(settings)  # a quote model that cannot load fails here, not in every process
        _export_settings(settings.workers)
        err.print(
            f"serving on http://{settings.host}:{settings.port}/ with {settings.workers}"
            " processes (each ready when /readyz says so)"
        )
        uvicorn.run(
            "bots.http.app:app_from_environment", factory=True, workers=settings.workers, **server
        )
        return
    try:
        web_app = create_app(settings)
    except QuoteModelError as exc:
        _fail(str(exc))
    except (BoltError, SlackClientError, OSError) as exc:  # Slack set up but not reachable
        _fail(f"Slack: {exc}; check SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET and SLACK_API_BASE_URL")
    err.print(f"serving on http://{settings.host}:{settings.port}/ (ready when /readyz says so)")
    uvicorn.run(web_app, **server)


def _export_settings(workers: int) -> None:
    """This invocation's flags as VERBATIM_* variables, for the server processes it starts."""
    for name, value in {**_State.overrides, "workers": workers}.items():
        if value is not None:
            os.environ[f"VERBATIM_{name.upper()}"] = str(value)


def _progress_bar() -> Progress:
    """A progress bar on stderr, shown only on a terminal."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    return Progress(*columns, console=err, transient=True, disable=not err.is_terminal)


def _run(action: Any) -> Any:
    """Run `action(progress)` with a progress bar on stderr; known failures become one line."""
    try:
        with _progress_bar() as bar:
            task = bar.add_task("embedding", total=None, visible=False)
            progress = BuildProgress(
                start=lambda total: bar.update(task, total=total, visible=total > 0),
                advance=lambda n: bar.advance(task, n),
            )
            return action(progress)
    except (VerbatimIndexError, ModelLoadError, VectorStoreUnavailable, OSError) as exc:
        _fail(str(exc))
    except DocumentNotFoundError as exc:
        _fail(f"no document {exc.args[0]!r} in the index")


def _print_report(report: BuildReport, settings: Settings, note: str | None) -> None:
    summary = (
        f"{len(report.added)} added, {len(report.updated)} updated, {len(report.removed)} removed, "
        f"{len(report.unchanged)} unchanged, {len(report.failed)} skipped · "
        f"{report.chunks_total} chunks ({report.chunks_embedded} embedded) · {report.seconds:.2f} s"
    )
    state = "written" if report.written else "already up to date"
    why = "configured"
    if report.model_reason != "configured":
        why = "chosen for the documents' languages"
    out.print(
        f"{summary}\nindex {report.index_version} {state} at {settings.resolved_index_dir}"
        f"\nencoder {report.model} ({why}; `--model` or VERBATIM_MODEL sets another)",
        highlight=False,
    )
    if report.replaced_model:
        err.print(
            f"[yellow]note[/yellow] the previous index was encoded with {report.replaced_model}:"
            " every document was encoded again, so no index mixes two models' vectors",
            highlight=False,
        )
    if note is not None:
        err.print(f"[yellow]note[/yellow] {escape(note)}", highlight=False)


def _distinct(score: float, threshold: float) -> tuple[str, str]:
    """Both numbers at the fewest decimals (two or more) that tell them apart."""
    for places in range(2, 6):
        shown = f"{score:.{places}f}", f"{threshold:.{places}f}"
        if shown[0] != shown[1]:
            return shown
    return f"{score:.6f}", f"{threshold:.6f}"


def _print_answer(answer: Answer) -> None:
    if answer.status == "no_answer":
        out.print("[bold]No answer in the documents.[/bold]")
        for quote in answer.quotes:
            score, threshold = _distinct(quote.score, answer.threshold)
            out.print(
                f"[dim]Closest match (score {score}, below the answer threshold {threshold}):[/dim]"
            )
            out.print(
                f"[dim]  “{escape(quote.text)}” — {escape(quote.title)}[/dim]", highlight=False
            )
        return
    for quote in answer.quotes:
        out.print(f"[bold]{quote.rank}.[/bold] “{escape(quote.text)}”", highlight=False)
        details = [
            quote.title,
            quote.date,
            quote.source,
            quote.section and f"§ {quote.section}",
            quote.url,
        ]
        where = (
            f"chars {quote.char_start}–{quote.char_end} of {quote.doc_id} · score {quote.score:.2f}"
        )
        out.print(
            f"   [cyan]— {escape(' · '.join(d for d in details if d))}[/cyan]", highlight=False
        )
        out.print(f"   [dim]{where}[/dim]", highlight=False)
        if quote.explain is not None:
            out.print(f"   [dim]{escape(_explanation(quote.explain))}[/dim]", highlight=False)
        out.print()


def _explanation(explain: Explanation) -> str:
    parts = [
        f"mode {explain.mode}",
        f"dense #{explain.dense_rank or '-'} {explain.dense_score:.3f}",
        f"bm25 #{explain.bm25_rank or '-'} {explain.bm25_score:.2f}",
    ]
    if explain.fused_score is not None:
        parts.append(f"fused {explain.fused_score:.4f}")
    if explain.rerank_score is not None:
        parts.append(f"rerank {explain.rerank_score:.3f}")
    parts.append(f"terms: {', '.join(explain.matched_terms) or 'none'}")
    return " · ".join(parts)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
