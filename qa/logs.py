"""Structured logs on stderr, so stdout stays clean for `--json`: one JSON object per line
(servers, scripts: `VERBATIM_LOG_FORMAT=json`), or one plain line per event for a person at a
terminal (`human`, the CLI's default)."""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal, TextIO, cast

import structlog

LogFormat = Literal["human", "json"]


def configure_logging(
    level: str = "WARNING", stream: TextIO | None = None, log_format: LogFormat = "json"
) -> None:
    renderer: list[Any] = (
        [structlog.processors.TimeStamper(fmt="iso", utc=True), structlog.processors.JSONRenderer()]
        if log_format == "json"
        else [structlog.dev.ConsoleRenderer(colors=False, pad_event_to=0)]
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            *renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level]),
        # One write per line, its newline included (print's two writes interleave with other
        # processes' lines on a shared unbuffered stderr: `serve --workers`, PYTHONUNBUFFERED)
        logger_factory=structlog.WriteLoggerFactory(file=stream or cast(TextIO, _Stderr())),
        cache_logger_on_first_use=False,
    )


class _Stderr:
    """Whatever `sys.stderr` is when a line is written, not when logging was configured: a
    stream swapped in for a while (a test runner's capture, a CLI runner) and closed after
    must not take the logs down with it."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def get_logger(name: str) -> Any:
    """A logger that, until a door configures logging, writes warnings and errors as JSON to
    stderr (structlog's own default would print everything to stdout)."""
    if not structlog.is_configured():
        configure_logging()
    return structlog.get_logger(name)
