"""Answers as Slack messages: Block Kit within Slack's budgets, document text escaped.

Every piece of document text is truncated first (on a sentence boundary where one is near),
then escaped for mrkdwn (`&`, `<`, `>` only), then quoted: a document that contains
`<!channel>` or `<https://evil|click>` shows it as text and can neither ping nor link.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial
from typing import Any
from urllib.parse import quote as url_quoted

from qa.answer import Answer, Quote
from qa.settings import DEFAULT_COLLECTION

SECTION_LIMIT = 3000
MAX_BLOCKS = 50
TEXT_BUDGET = 10_000  # Slack refuses messages near 13k characters of block text
FALLBACK_LIMIT = 2900
_NOTE_RESERVE = 100  # for "…and N more quotes not shown"
_SENTENCE_END = re.compile(r"[.!?。](?=\s|$)")
USAGE = "Ask me a question about the documents, e.g. `@Verbatim how many troops are in the region?`"


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def truncate(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters (with "…"), at a sentence end if one is in the
    last third, else at a word."""
    if len(text) <= limit:
        return text
    window = text[: limit - 1]
    ends = [m.end() for m in _SENTENCE_END.finditer(window) if m.end() > limit * 2 // 3]
    cut = (
        ends[-1] if ends else (window.rfind(" ") if window.rfind(" ") > limit // 2 else len(window))
    )
    return window[:cut].rstrip() + "…"


def answer_message(
    answer: Answer,
    key: str,
    show_closest: bool = False,
    feedback: bool = True,
    public_url: str = "",
    collection: str = DEFAULT_COLLECTION,
) -> tuple[str, list[dict[str, Any]]]:
    """The fallback `text` and the `blocks` of an answer; with the deployment's `public_url`,
    each quote links to its document view (in `collection`), highlighted at its offsets."""
    link = partial(quote_link, public_url=public_url, collection=collection) if public_url else None
    if answer.status == "no_answer":
        text = "No answer in the documents."
        blocks: list[dict[str, Any]] = [_section(f"*{text}*")]
        if show_closest and answer.quotes:
            blocks.append(_context("Closest match, below the answer threshold:"))
            blocks += _quote_blocks(answer.quotes[0], SECTION_LIMIT, link)
        return text, _with_feedback(blocks, key, feedback)
    blocks = []
    used = 0
    shown = 0
    for quote in answer.quotes:
        room = TEXT_BUDGET - used - _NOTE_RESERVE
        # Two blocks per quote, and room left for the note and the feedback block.
        if len(blocks) + 4 > MAX_BLOCKS or room < 300:
            break
        quote_blocks = _quote_blocks(quote, room, link)
        blocks += quote_blocks
        used += sum(_block_chars(b) for b in quote_blocks)
        shown += 1
    if shown < len(answer.quotes):
        blocks.append(_context(f"…and {len(answer.quotes) - shown} more quotes not shown"))
    top = answer.quotes[0]
    title = _escaped_within(top.title, 200)
    text = f"“{_escaped_within(top.text, FALLBACK_LIMIT - len(title) - 5)}” — {title}"
    return text, _with_feedback(blocks, key, feedback)


def _quote_blocks(
    quote: Quote, budget: int, link: Callable[[Quote], str] | None
) -> list[dict[str, Any]]:
    """The quote's section and its source line, together at most `budget` characters."""
    source = _source_line(quote)
    if link is not None:
        source += f" · <{escape(link(quote))}|open at the quote>"
    body = _escaped_within(quote.text, min(SECTION_LIMIT, budget - len(source)), _as_quote)
    return [_section(body), _context(source)]


def quote_link(quote: Quote, public_url: str, collection: str = DEFAULT_COLLECTION) -> str:
    """The document view of `quote` (of `collection`) on the deployment at `public_url`."""
    base, document = public_url.rstrip("/"), url_quoted(quote.doc_id, safe="")
    where = "" if collection == DEFAULT_COLLECTION else f"?collection={url_quoted(collection)}"
    return f"{base}/documents/{document}{where}#chars={quote.char_start}-{quote.char_end}"


def _as_quote(text: str) -> str:
    return "\n".join("> " + line for line in text.split("\n"))


def _escaped_within(raw: str, limit: int, shape: Callable[[str], str] = str) -> str:
    """`shape(escape(truncate(raw, n)))` for the largest n that fits in `limit`: escaping and
    quote marks lengthen the text, so the raw text is truncated first and shortened until the
    result fits. Never cut after escaping, which could split an `&amp;`."""
    n = limit
    while True:
        result = shape(escape(truncate(raw, n)))
        if len(result) <= limit or n <= 1:
            return result if len(result) <= limit else "…"
        n -= max(1, len(result) - limit)


def _source_line(quote: Quote) -> str:
    title = _escaped_within(quote.title, 200)
    url = quote.url if quote.url and re.match(r"^https?://[^\s<>|]+$", quote.url) else None
    parts = [f"<{escape(url)}|{title}>" if url else f"*{title}*"]
    parts += [escape(p) for p in (quote.date, quote.source) if p]
    if quote.section:
        parts.append(f"§ {escape(truncate(quote.section, 100))}")
    return " · ".join(parts)


def _with_feedback(blocks: list[dict[str, Any]], key: str, feedback: bool) -> list[dict[str, Any]]:
    if not feedback:
        return blocks
    return [*blocks, feedback_block(key)]


def feedback_block(key: str) -> dict[str, Any]:
    reasons = [
        ("wrong_quote", "Wrong quote"),
        ("incomplete", "Incomplete"),
        ("missing", "The answer is in the documents"),
        ("other", "Something else"),
    ]
    return {
        "type": "actions",
        "block_id": f"feedback:{key}",
        "elements": [
            {
                "type": "button",
                "action_id": "feedback_helpful",
                "value": key,
                "text": {"type": "plain_text", "text": "👍 Helpful"},
            },
            {
                "type": "button",
                "action_id": "feedback_not_helpful",
                "value": key,
                "text": {"type": "plain_text", "text": "👎 Not helpful"},
            },
            {
                "type": "static_select",
                "action_id": "feedback_reason",
                "placeholder": {"type": "plain_text", "text": "Not helpful because…"},
                "options": [
                    {"text": {"type": "plain_text", "text": label}, "value": f"{key}:{value}"}
                    for value, label in reasons
                ],
            },
        ],
    }


def share_block(key: str) -> dict[str, Any]:
    return {
        "type": "actions",
        "block_id": f"share:{key}",
        "elements": [
            {
                "type": "button",
                "action_id": "share_answer",
                "value": key,
                "style": "primary",
                "text": {"type": "plain_text", "text": "Share in channel"},
            }
        ],
    }


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}


def _block_chars(block: dict[str, Any]) -> int:
    if block["type"] == "section":
        return len(block["text"]["text"])
    return sum(len(e.get("text", "")) for e in block.get("elements", []))
