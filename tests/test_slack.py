"""The Slack bot against a fake Slack: signed events to the real `/slack/events` endpoint,
Web API calls recorded by a local server. Every row of slack-contract.md's failure table."""

from __future__ import annotations

import html
import itertools
import json
import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bots.http import create_app
from bots.slack.blocks import MAX_BLOCKS, SECTION_LIMIT, TEXT_BUDGET, answer_message
from bots.slack.settings import SlackSettings
from embeddings.encoder import Encoder
from qa.answer import Answer, Quote
from qa.collections import Collections
from qa.engine import Verbatim
from qa.evaluation.questions import load_questions
from qa.settings import Settings

from .conftest import ROOT, seeds_with
from .fake_slack import BOT_ID, BOT_TOKEN, BOT_USER, SIGNING_SECRET, FakeSlackAPI, SlackDriver
from .live_server import LiveServer

TROOPS = "How many U.S. military personnel are forward deployed in the region?"
HOSTILE = (
    "Channel notes\n\nThe evacuation drill alarm sounds at noon <!channel> and everyone gathers "
    "outside by the flag pole. Details at <https://evil.example|click here> for the drill.\n"
)


class Bot:
    def __init__(
        self, api: FakeSlackAPI, driver: SlackDriver, engine: Verbatim, home: Path
    ) -> None:
        self.api, self.driver, self.engine, self.home = api, driver, engine, home

    # Message timestamps never repeat, as Slack's do not, across every Bot of the module: the
    # state that de-duplicates them is the engine's, shared by them
    _clock = itertools.count(1_700_000_001)

    def ts(self) -> str:
        return f"{next(self._clock)}.000100"

    def replies(self, channel: str) -> list[dict[str, Any]]:
        return self.api.calls_to("chat.postMessage", channel)

    def barrier(self) -> None:
        """Send a DM and wait for its answer: events sent before it have been handled by then."""
        before = len(self.replies("DBARRIER"))
        self.driver.event(
            {
                "type": "message",
                "channel_type": "im",
                "channel": "DBARRIER",
                "user": "U9",
                "text": TROOPS,
                "ts": self.ts(),
            }
        )
        self.api.wait_for("chat.postMessage", before + 1, channel="DBARRIER")


@pytest.fixture(scope="module")
def bot(tmp_path_factory: pytest.TempPathFactory, encoder: Encoder) -> Iterator[Bot]:
    corpus = seeds_with(tmp_path_factory.mktemp("slack-corpus"), "hostile.txt", HOSTILE)
    home = tmp_path_factory.mktemp("slack-home")
    settings = Settings(
        home=home,
        rate_limit="",
        slack_user_rate="",
        slack_channel_rate="",
        public_url=PUBLIC_URL,
        slack_channel_collections={"CHR": "hr", "CFIN": "finance"},
    )
    engine = Verbatim(settings, encoder)
    engine.build_index([corpus])
    hr = tmp_path_factory.mktemp("slack-hr")
    (hr / "leave.md").write_text(HR_DOC, encoding="utf-8")
    Verbatim(settings.model_copy(update={"collection": "hr"}), encoder).build_index([hr])
    api = FakeSlackAPI()
    slack = SlackSettings(bot_token=BOT_TOKEN, signing_secret=SIGNING_SECRET, api_base_url=api.url)
    with LiveServer(create_app(settings, engine, slack)) as server:
        server.wait_ready()
        yield Bot(api, SlackDriver(f"{server.url}/slack/events", api), engine, home)
    api.close()


PUBLIC_URL = "https://verbatim.example.com"
HR_DOC = (
    "# Parental leave policy\n\nEmployees may take up to sixteen weeks of paid parental leave.\n"
)


def _quotes(message: dict[str, Any]) -> list[str]:
    """The quoted document text of a posted answer, unescaped."""
    quotes = []
    for block in message.get("blocks", []):
        text = block.get("text", {}).get("text", "")
        if block["type"] == "section" and text.startswith("> "):
            quotes.append(html.unescape("\n".join(line[2:] for line in text.split("\n"))))
    return quotes


def _mention(bot: Bot, text: str, channel: str = "C1", **extra: Any) -> str:
    ts = bot.ts()
    bot.driver.event(
        {
            "type": "app_mention",
            "user": "U1",
            "text": f"<@{BOT_USER}> {text}",
            "ts": ts,
            "channel": channel,
            **extra,
        }
    )
    return ts


def test_mention_answers_in_thread_with_exact_quotes(bot: Bot) -> None:
    ts = _mention(bot, TROOPS, channel="CMENTION")
    (reply,) = bot.api.wait_for("chat.postMessage", channel="CMENTION")
    bot.api.wait_for("reactions.remove", channel="CMENTION")
    assert reply["thread_ts"] == ts and reply["text"]
    quotes = _quotes(reply)
    assert "about 100,000 forward deployed" in quotes[0]
    documents = [d.text for d in bot.engine.documents()]
    assert all(any(q.rstrip("…") in text for text in documents) for q in quotes)
    context = json.dumps(reply["blocks"], ensure_ascii=False)
    assert "Japan-U.S. Joint Declaration on Security" in context and "§ (2) (ii)" in context
    assert any(b["type"] == "actions" for b in reply["blocks"])  # feedback buttons
    # each quote links to the document view at its offsets (VERBATIM_PUBLIC_URL)
    links = re.findall(rf"<{PUBLIC_URL}/documents/([^#|]+)#chars=(\d+)-(\d+)\|", context)
    assert len(links) == len(quotes)
    doc_id, start, end = links[0]
    assert bot.engine.document(doc_id).text[int(start) : int(end)] == quotes[0].rstrip("…")
    reactions = [(m, c["timestamp"]) for m, c in bot.api.calls if m.startswith("reactions.")]
    assert ("reactions.add", ts) in reactions and ("reactions.remove", ts) in reactions


def test_direct_message_and_dm_thread(bot: Bot) -> None:
    ts = bot.ts()
    bot.driver.event(
        {
            "type": "message",
            "channel_type": "im",
            "channel": "DUSER",
            "user": "U2",
            "text": "When was the Japan-U.S. Joint Declaration on Security issued?",
            "ts": ts,
        }
    )
    (reply,) = bot.api.wait_for("chat.postMessage", channel="DUSER")
    assert "thread_ts" not in reply and "April 1996" in _quotes(reply)[0]
    in_thread = bot.ts()
    bot.driver.event(
        {
            "type": "message",
            "channel_type": "im",
            "channel": "DUSER",
            "user": "U2",
            "text": TROOPS,
            "ts": in_thread,
            "thread_ts": ts,
        }
    )
    assert bot.api.wait_for("chat.postMessage", 2, channel="DUSER")[1]["thread_ts"] == ts


def test_follow_up_in_owned_thread_uses_the_thread_question(bot: Bot) -> None:
    parent = _mention(
        bot, "What did the Security Consultative Committee approve?", channel="CFOLLOW"
    )
    bot.api.wait_for("chat.postMessage", channel="CFOLLOW")
    bot.driver.event(
        {
            "type": "message",
            "channel_type": "channel",
            "channel": "CFOLLOW",
            "user": "U1",
            "text": "in which year?",
            "ts": bot.ts(),
            "thread_ts": parent,
        }
    )
    replies = bot.api.wait_for("chat.postMessage", 2, channel="CFOLLOW")
    assert len(replies) == 2 and replies[1]["thread_ts"] == parent
    assert "1997" in _quotes(replies[1])[0]


def _dm(bot: Bot, text: str, channel: str) -> None:
    message = {"type": "message", "channel_type": "im", "channel": channel, "user": "U3"}
    bot.driver.event({**message, "text": text, "ts": bot.ts()})


def test_a_dm_is_a_conversation_until_a_pause_starts_a_new_one(bot: Bot) -> None:
    _dm(bot, "When was the Japan-U.S. Joint Declaration on Security issued?", "DCONV")
    bot.api.wait_for("chat.postMessage", channel="DCONV")
    _dm(bot, "What did it reaffirm?", "DCONV")  # "it": the declaration, from the DM before
    followed = bot.api.wait_for("chat.postMessage", 2, channel="DCONV")[1]
    assert "reaffirmed the importance of the Japan-U.S. security arrangements" in " ".join(
        _quotes(followed)
    )
    stored = bot.engine.conversation("slack:DCONV", "slack")
    assert stored is not None and [t.question for t in stored.turns][-1] == "What did it reaffirm?"
    assert bot.engine.conversation("slack:DCONV") is None  # not an HTTP client's to read

    stored.updated -= bot.engine.settings.slack_dm_conversation_gap_s + 1  # a long pause
    bot.engine.conversations.save(stored)
    _dm(bot, "What did it reaffirm?", "DCONV")
    bot.api.wait_for("chat.postMessage", 3, channel="DCONV")
    restarted = bot.engine.conversation("slack:DCONV", "slack")
    assert restarted is not None and [t.question for t in restarted.turns] == [
        "What did it reaffirm?"
    ]


def test_silent_in_threads_it_was_never_called_into(bot: Bot) -> None:
    message = {"type": "message", "channel_type": "channel", "channel": "CFOREIGN", "user": "U1"}
    bot.driver.event({**message, "text": TROOPS, "ts": bot.ts(), "thread_ts": "1600000000.000001"})
    bot.driver.event({**message, "text": TROOPS, "ts": bot.ts()})  # a plain channel message
    bot.barrier()
    assert bot.replies("CFOREIGN") == []


def test_retried_event_is_answered_once(bot: Bot) -> None:
    ts = bot.ts()
    event = {
        "type": "app_mention",
        "user": "U1",
        "text": f"<@{BOT_USER}> {TROOPS}",
        "ts": ts,
        "channel": "CRETRY",
    }
    responses = bot.driver.event(event, event_id="EvRETRY1", retries=3)
    assert [r.status_code for r in responses] == [200, 200, 200, 200]
    bot.api.wait_for("chat.postMessage", channel="CRETRY")
    bot.barrier()
    assert len(bot.replies("CRETRY")) == 1


def test_mention_delivered_as_app_mention_and_message_is_answered_once(bot: Bot) -> None:
    ts = bot.ts()
    text = f"<@{BOT_USER}> {TROOPS}"
    bot.driver.event(
        {"type": "app_mention", "user": "U1", "text": text, "ts": ts, "channel": "CBOTH"}
    )
    bot.driver.event(
        {
            "type": "message",
            "channel_type": "channel",
            "user": "U1",
            "text": text,
            "ts": ts,
            "channel": "CBOTH",
        }
    )
    bot.api.wait_for("chat.postMessage", channel="CBOTH")
    bot.barrier()
    assert len(bot.replies("CBOTH")) == 1


def test_bots_edits_and_unknown_events_are_ignored(bot: Bot) -> None:
    own = bot.driver.event(
        {
            "type": "message",
            "channel_type": "im",
            "channel": "DBOTS",
            "bot_id": BOT_ID,
            "user": BOT_USER,
            "text": TROOPS,
            "ts": bot.ts(),
        }
    )
    other = bot.driver.event(
        {
            "type": "message",
            "channel_type": "im",
            "channel": "DBOTS",
            "bot_id": "BOTHER",
            "text": TROOPS,
            "ts": bot.ts(),
        }
    )
    edit = bot.driver.event(
        {
            "type": "message",
            "subtype": "message_changed",
            "channel": "DBOTS",
            "channel_type": "im",
            "message": {"text": TROOPS},
            "ts": bot.ts(),
        }
    )
    unknown = bot.driver.event({"type": "emoji_changed", "subtype": "add", "name": "party"})
    assert all(r[0].status_code == 200 for r in (own, other, edit, unknown))
    bot.barrier()
    assert bot.replies("DBOTS") == []


def test_file_share_with_text_is_answered(bot: Bot) -> None:
    bot.driver.event(
        {
            "type": "message",
            "subtype": "file_share",
            "channel_type": "im",
            "channel": "DFILE",
            "user": "U3",
            "text": TROOPS,
            "files": [{"id": "F1"}],
            "ts": bot.ts(),
        }
    )
    (reply,) = bot.api.wait_for("chat.postMessage", channel="DFILE")
    assert "about 100,000" in _quotes(reply)[0]


def test_empty_mention_gets_a_usage_hint_without_searching(bot: Bot) -> None:
    ts = bot.ts()
    bot.driver.event(
        {
            "type": "app_mention",
            "user": "U1",
            "text": f"<@{BOT_USER}>",
            "ts": ts,
            "channel": "CEMPTY",
        }
    )
    (reply,) = bot.api.wait_for("chat.postMessage", channel="CEMPTY")
    assert "Ask me a question" in reply["text"] and "blocks" not in reply
    assert ts not in [c["timestamp"] for m, c in bot.api.calls if m == "reactions.add"]


def test_rate_limited_post_waits_and_retries(bot: Bot) -> None:
    bot.api.rate_limit_next("chat.postMessage", channel="CRATE", times=1, retry_after=1)
    _mention(bot, TROOPS, channel="CRATE")
    attempts = bot.api.wait_for("chat.postMessage", 2, channel="CRATE")  # after Retry-After
    assert len(attempts) == 2 and attempts[0] == attempts[1]  # the 429, then the same message again


def test_rate_limit_that_persists_is_given_up_without_crashing(bot: Bot) -> None:
    bot.api.rate_limit_next("chat.postMessage", channel="CRATE2", times=3, retry_after=1)
    _mention(bot, TROOPS, channel="CRATE2")
    bot.api.wait_for("chat.postMessage", 3, channel="CRATE2")
    _mention(bot, TROOPS, channel="CRATE2")  # the bot still answers afterwards
    bot.api.wait_for("chat.postMessage", 4, channel="CRATE2")
    assert len(bot.replies("CRATE2")) == 4  # three tries (one and two bounded retries), then one


def test_not_in_channel_is_logged_not_retried(bot: Bot) -> None:
    bot.api.fail_next("chat.postMessage", "not_in_channel", channel="CNOTIN")
    _mention(bot, TROOPS, channel="CNOTIN")
    bot.api.wait_for("chat.postMessage", channel="CNOTIN")
    bot.barrier()
    assert len(bot.replies("CNOTIN")) == 1


def test_block_errors_fall_back_to_plain_text(bot: Bot) -> None:
    bot.api.fail_next("chat.postMessage", "invalid_blocks", channel="CBLOCKS")
    _mention(bot, TROOPS, channel="CBLOCKS")
    first, second = bot.api.wait_for("chat.postMessage", 2, channel="CBLOCKS")
    assert "blocks" in first and "blocks" not in second and "100,000" in second["text"]


def test_document_markup_is_escaped_never_a_ping_or_link(bot: Bot) -> None:
    _mention(bot, "When does the evacuation drill alarm sound?", channel="CESCAPE")
    (reply,) = bot.api.wait_for("chat.postMessage", channel="CESCAPE")
    posted = json.dumps(reply, ensure_ascii=False)
    assert "&lt;!channel&gt;" in posted and "<!channel>" not in posted
    assert "<https://evil.example|click here>" not in posted
    assert "&lt;https://evil.example|click here&gt;" in posted or "evil.example" not in posted


def test_slash_command_is_private_then_shared(bot: Bot, monkeypatch: pytest.MonkeyPatch) -> None:
    # Hold the search until the command's HTTP reply is back: the ack must not wait for it.
    gate = threading.Event()
    search = bot.engine.ask
    monkeypatch.setattr(bot.engine, "ask", lambda *args: gate.wait(60) and search(*args))
    replies_before = len(bot.api.calls_to("response_url"))
    response = bot.driver.command(TROOPS, user="U5", channel="CSLASH")
    assert response.status_code == 200 and not response.content  # acked, nothing answered yet
    assert len(bot.api.calls_to("response_url")) == replies_before
    gate.set()
    ephemeral = bot.api.wait_for("response_url", replies_before + 1)[-1]
    assert ephemeral["response_type"] == "ephemeral" and "about 100,000" in _quotes(ephemeral)[0]
    share = next(
        e
        for b in ephemeral["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
        if e["action_id"] == "share_answer"
    )
    calls_before = len(bot.api.calls_to("response_url"))
    bot.driver.click(
        {
            "action_id": "share_answer",
            "block_id": "share",
            "value": share["value"],
            "type": "button",
        },
        user="U5",
        channel="CSLASH",
    )
    bot.api.wait_for("response_url", calls_before + 1)
    public = bot.replies("CSLASH")
    assert (
        len(public) == 1
        and "about 100,000" in _quotes(public[0])[0]
        and "<@U5>" in public[0]["text"]
    )
    assert bot.api.calls_to("response_url")[-1]["delete_original"] is True


def test_feedback_is_recorded_and_exported_as_a_question_set(bot: Bot, tmp_path: Path) -> None:
    keys = []
    for channel, asked in (("CFEED", TROOPS), ("CFEED2", "Who won the 2018 World Cup?")):
        _mention(bot, asked, channel=channel)
        (reply,) = bot.api.wait_for("chat.postMessage", channel=channel)
        keys.append(
            next(b for b in reply["blocks"] if b["type"] == "actions")["elements"][0]["value"]
        )
    done = len(bot.api.calls_to("response_url"))
    bot.driver.click(
        {"action_id": "feedback_helpful", "value": keys[0], "type": "button"}, user="U7"
    )
    reason = {"value": f"{keys[1]}:missing"}
    bot.driver.click(
        {"action_id": "feedback_reason", "type": "static_select", "selected_option": reason}
    )
    bot.api.wait_for("response_url", done + 2)

    export = tmp_path / "feedback.jsonl"
    result = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "verbatim"), "feedback", "export", "--out", str(export)],
        env={**os.environ, "VERBATIM_HOME": str(bot.home)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (
        result.returncode == 0 and "1 helpful" in result.stdout and "1 unhelpful" in result.stdout
    )
    (question,) = load_questions(export)  # the evaluation reads it as it is
    assert question.id == f"feedback-{keys[0]}" and question.question == TROOPS
    assert question.spans[0].doc_id == "001_dd8c4ca6def8021f"
    assert '# not helpful (missing): "Who won the 2018 World Cup?"' in export.read_text()


def test_forged_and_stale_requests_get_401_and_no_api_call(bot: Bot) -> None:
    body = json.dumps(
        {
            "type": "event_callback",
            "event_id": "EvFORGED",
            "event": {
                "type": "app_mention",
                "user": "U1",
                "text": f"<@{BOT_USER}> {TROOPS}",
                "ts": bot.ts(),
                "channel": "CFORGE",
            },
        }
    )
    assert bot.driver.post(body, signature="v0=" + "0" * 64).status_code == 401
    assert bot.driver.post(body, timestamp=int(time.time()) - 301).status_code == 401
    assert bot.driver.post(body, timestamp=int(time.time()) + 400).status_code == 401
    bot.barrier()
    assert [c for _, c in bot.api.calls if c.get("channel") == "CFORGE"] == []
    control = bot.driver.post(body)  # the same body signed correctly is accepted
    assert control.status_code == 200
    bot.api.wait_for("chat.postMessage", channel="CFORGE")


def test_url_verification_echoes_the_challenge(bot: Bot) -> None:
    response = bot.driver.post(json.dumps({"type": "url_verification", "challenge": "abc123"}))
    assert response.status_code == 200 and response.json() == {"challenge": "abc123"}


def test_twenty_quotes_fit_slack_budgets() -> None:
    sentence = "The alliance remains the cornerstone of peace & stability <in> the region. "
    quotes = [
        Quote(
            rank=i,
            text=sentence * 60,
            doc_id="d",
            title="T" * 300,
            date="2020-01-01",
            source="S",
            url="https://example.org/x",
            char_start=0,
            char_end=10,
            section="(1)",
            passage="p",
            passage_start=0,
            score=0.9,
        )
        for i in range(1, 21)
    ]
    answer = Answer(
        question="q",
        status="answered",
        quotes=quotes,
        threshold=0.5,
        index_version="v",
        took_ms=1.0,
    )
    text, blocks = answer_message(answer, "key")
    sections = [b["text"]["text"] for b in blocks if b["type"] == "section"]
    assert len(blocks) <= MAX_BLOCKS and all(len(s) <= SECTION_LIMIT for s in sections)
    total = sum(len(s) for s in sections) + sum(
        len(e.get("text", "")) for b in blocks if b["type"] == "context" for e in b["elements"]
    )
    assert total <= TEXT_BUDGET and len(text) <= 3000
    assert (
        sections[0].endswith("region.…") and "&amp;" in sections[0] and "&lt;in&gt;" in sections[0]
    )
    assert "more quotes not shown" in json.dumps(blocks)


def test_socket_mode_answers_acks_and_reconnects(tmp_path: Path, encoder: Encoder) -> None:
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    from bots.slack.adapter import SlackAdapter

    from .fake_slack import APP_TOKEN, FakeSocketMode

    api = FakeSlackAPI()
    socket_mode = FakeSocketMode(api)
    settings = Settings(home=tmp_path / "home")
    engine = Verbatim(settings, encoder)
    engine.build_index()
    adapter = SlackAdapter(
        Collections(settings, engine),
        settings,
        SlackSettings(bot_token=BOT_TOKEN, api_base_url=api.url),
    )
    handler = SocketModeHandler(adapter.app, APP_TOKEN, web_client=adapter.client)
    try:
        handler.connect()  # type: ignore[no-untyped-call]
        first = socket_mode.connections.get(timeout=30)
        envelope = {
            "type": "event_callback",
            "team_id": "T1",
            "api_app_id": "A1",
            "event_id": "EvSOCK1",
            "event": {
                "type": "app_mention",
                "user": "U1",
                "text": f"<@{BOT_USER}> {TROOPS}",
                "ts": "1700000500.000100",
                "channel": "CSOCKET",
            },
        }
        socket_mode.send(
            first,
            {
                "envelope_id": "env-1",
                "type": "events_api",
                "payload": envelope,
                "accepts_response_payload": False,
                "retry_attempt": 0,
                "retry_reason": "",
            },
        )
        assert socket_mode.received.get(timeout=30)["envelope_id"] == "env-1"  # the ack
        (reply,) = api.wait_for("chat.postMessage", channel="CSOCKET")
        assert reply["thread_ts"] == "1700000500.000100" and "about 100,000" in _quotes(reply)[0]

        socket_mode.send(first, {"type": "disconnect", "reason": "refresh_requested"})
        api.wait_for("apps.connections.open", 2)  # it asked for a fresh connection
        second = socket_mode.connections.get(timeout=30)
        retry = {
            "envelope_id": "env-2",
            "type": "events_api",
            "payload": envelope,
            "accepts_response_payload": False,
            "retry_attempt": 1,
            "retry_reason": "timeout",
        }
        socket_mode.send(second, retry)
        assert socket_mode.received.get(timeout=30)["envelope_id"] == "env-2"
    finally:
        handler.close()  # type: ignore[no-untyped-call]
        socket_mode.close()
        api.close()
    assert len(api.calls_to("chat.postMessage", "CSOCKET")) == 1  # the retried envelope: once


def test_mention_storm_is_rate_limited_per_user_and_channel_politely(bot: Bot) -> None:
    settings = Settings(
        home=bot.home, rate_limit="", slack_user_rate="3/minute", slack_channel_rate="6/minute"
    )
    slack = SlackSettings(
        bot_token=BOT_TOKEN, signing_secret=SIGNING_SECRET, api_base_url=bot.api.url
    )
    with LiveServer(create_app(settings, bot.engine, slack)) as server:
        server.wait_ready()
        storm = Bot(
            bot.api, SlackDriver(f"{server.url}/slack/events", bot.api), bot.engine, bot.home
        )
        for _ in range(6):  # one user, six questions in a burst: three answered
            storm.driver.event(_mention_event(storm, "U50", "CSTORM"))
        for user in ("U51", "U52", "U53", "U54"):  # others still get answers, up to the channel's
            storm.driver.event(_mention_event(storm, user, "CSTORM"))
        storm.barrier()
        bot.api.wait_for("chat.postMessage", 8, channel="CSTORM")
        storm.barrier()
        posted = bot.replies("CSTORM")

    answers = [m for m in posted if "Please wait" not in m["text"]]
    polite = [m for m in posted if "Please wait" in m["text"]]
    assert len(answers) == 6  # 3 for U50, then U51–U53 until the channel's 6
    assert len(polite) == 2  # U50 once (not once per extra message), and U54 at the channel cap
    assert all(m.get("thread_ts") for m in polite)  # in the asker's thread, not the channel


def _mention_event(bot: Bot, user: str, channel: str) -> dict[str, Any]:
    return {
        "type": "app_mention",
        "user": user,
        "text": f"<@{BOT_USER}> {TROOPS}",
        "ts": bot.ts(),
        "channel": channel,
    }


def test_oversized_payload_is_refused_before_it_is_read(bot: Bot) -> None:
    event = _mention_event(bot, "U60", "CHUGE")
    event["text"] += " padding" * 20_000  # ~160 kB, over the 64 kB body limit
    body = json.dumps({"type": "event_callback", "event_id": "EvHUGE", "event": event})
    response = bot.driver.post(body)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"
    bot.barrier()
    assert bot.replies("CHUGE") == []


def test_a_channel_reads_only_the_collection_it_is_mapped_to(bot: Bot) -> None:
    _mention(bot, "How many weeks of parental leave may employees take?", channel="CHR")
    (leave,) = bot.api.wait_for("chat.postMessage", channel="CHR")
    assert "sixteen weeks" in _quotes(leave)[0]
    assert f"{PUBLIC_URL}/documents/leave?collection=hr#chars=" in json.dumps(leave)
    _mention(bot, TROOPS, channel="CHR")  # answered in the seeds, which CHR may not read
    troops = bot.api.wait_for("chat.postMessage", 2, channel="CHR")[1]
    assert all("100,000" not in quote for quote in _quotes(troops))
    assert "leave" in json.dumps(troops) or "No answer" in troops["text"]
    _mention(bot, TROOPS, channel="CFIN")  # mapped to a collection with no index
    (unset,) = bot.api.wait_for("chat.postMessage", channel="CFIN")
    assert "No documents are set up for this channel" in unset["text"]
    _mention(bot, TROOPS, channel="COTHER")  # unmapped: the default collection
    (other,) = bot.api.wait_for("chat.postMessage", channel="COTHER")
    assert "about 100,000" in _quotes(other)[0]
