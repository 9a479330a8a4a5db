"""`SlackAdapter`: Slack events in, quoted answers out, through the one core call `Verbatim.ask`.

Bolt acknowledges each request before a listener runs (`process_before_response=False`), so
Slack gets its 200 within 3 s and the search happens after. Slack delivers some events more
than once (retries, and a mention arrives as both `app_mention` and `message`): every event is
answered once per `event_id` and once per (channel, message ts).
"""

from __future__ import annotations

import math
import re
import time
from typing import Any

from limits import RateLimitItem
from limits import parse as parse_rate
from limits.storage import Storage
from limits.strategies import MovingWindowRateLimiter
from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from bots.slack.blocks import USAGE, answer_message, escape, share_block, truncate
from bots.slack.settings import SlackSettings
from qa.collections import CollectionNotFoundError, Collections
from qa.engine import Verbatim
from qa.logs import get_logger
from qa.settings import DEFAULT_COLLECTION, Settings

log = get_logger("verbatim.slack")
_MENTION = re.compile(r"<@[A-Z0-9]+(?:\|[^>]*)?>")
_IGNORED_SUBTYPES = {
    "message_changed",
    "message_deleted",
    "message_replied",
    "channel_join",
    "channel_leave",
    "bot_message",
    "thread_broadcast",
}
_BLOCK_ERRORS = {"invalid_blocks", "msg_blocks_too_long", "msg_too_long"}
DEDUPE_SECONDS = 15 * 60
RATE_LIMIT_RETRIES = 2
NO_COLLECTION = "No documents are set up for this channel yet: ask an admin to index them."
# Whose conversations Slack's are: no HTTP client (whose owner is its API key) reaches them
SLACK_OWNER = "slack"


class _Throttle:
    """Questions per user and per channel within moving windows."""

    def __init__(self, per_user: str, per_channel: str, storage: Storage) -> None:
        self._limiter = MovingWindowRateLimiter(storage)
        self._rules: list[tuple[str, RateLimitItem]] = [
            (kind, parse_rate(rate))
            for kind, rate in (("user", per_user), ("channel", per_channel))
            if rate
        ]

    def wait_seconds(self, user: str | None, channel: str) -> int:
        """0 when this question may be answered now (and counted); else seconds to wait."""
        subject = {"user": user or "", "channel": channel}
        keys = [(rule, f"{kind}:{subject[kind]}") for kind, rule in self._rules]
        for rule, key in keys:
            if not self._limiter.test(rule, key):
                reset = self._limiter.get_window_stats(rule, key).reset_time
                return max(1, math.ceil(reset - time.time()))
        for rule, key in keys:
            self._limiter.hit(rule, key)
        return 0


class SlackAdapter:
    def __init__(
        self,
        collections: Collections,
        settings: Settings,
        slack: SlackSettings,
        client: WebClient | None = None,
    ) -> None:
        self.collections = collections
        self.settings = settings
        self.client = client or WebClient(
            token=slack.bot_token,
            base_url=slack.api_base_url,
            retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=RATE_LIMIT_RETRIES)],
        )
        self.state = collections.default.state  # shared by replicas with Redis state
        self.feedback = self.state.feedback
        self._throttle = _Throttle(
            settings.slack_user_rate, settings.slack_channel_rate, self.state.limits
        )
        self.app = App(
            client=self.client,
            signing_secret=slack.signing_secret or None,
            request_verification_enabled=bool(slack.signing_secret),
            process_before_response=False,
            logger=None,
        )
        self._register(self.app)

    # ------------------------------------------------------------ listeners

    def _register(self, app: App) -> None:
        app.event("app_mention")(self._on_mention)
        app.event("message")(self._on_message)
        app.command("/ask")(self._on_command)
        app.action("share_answer")(self._on_share)
        app.action(re.compile(r"^feedback_"))(self._on_feedback)
        # Anything else is acknowledged and dropped: an unhandled event would get a 404, which
        # Slack counts as a failure and retries.
        app.event(re.compile(".*"))(self._ignore)

    def _ignore(self) -> None:
        return None

    def _on_mention(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        if not self._first_time(
            f"event:{body.get('event_id')}", f"ts:{event['channel']}:{event['ts']}"
        ):
            return
        thread = event.get("thread_ts") or event["ts"]
        self._answer(
            event["channel"],
            thread,
            _question(event.get("text", "")),
            event.get("user"),
            event["ts"],
        )

    def _on_message(self, event: dict[str, Any], body: dict[str, Any], context: Any) -> None:
        if event.get("subtype") in _IGNORED_SUBTYPES:
            return  # edits, deletions and joins are acknowledged and ignored
        if event.get("bot_id") and not self.settings.slack_answer_bots:
            return
        channel, ts = event["channel"], event["ts"]
        is_dm = event.get("channel_type") == "im"
        mentioned = f"<@{context.bot_user_id}>" in event.get("text", "")
        if mentioned and not is_dm:
            return  # the same message arrives as app_mention, answered there
        thread = event.get("thread_ts")
        follow_up = (
            thread is not None
            and self.settings.slack_follow_ups
            and self._owns_thread(channel, thread)
        )
        if not (is_dm or follow_up):
            return  # a thread the bot was never called into: stay silent
        if not self._first_time(f"event:{body.get('event_id')}", f"ts:{channel}:{ts}"):
            return
        self._answer(channel, thread, _question(event.get("text", "")), event.get("user"), ts)

    def _on_command(self, ack: Any, command: dict[str, Any], respond: Any) -> None:
        ack()  # within 3 s; the search comes after
        question = command.get("text", "").strip()
        if not question:
            respond(text=USAGE, response_type="ephemeral")
            return
        wait = self._throttle.wait_seconds(command.get("user_id"), command.get("channel_id", ""))
        if wait:
            respond(text=_slow_down(wait), response_type="ephemeral")
            return
        engine = self._engine(command.get("channel_id", ""))
        if engine is None:
            respond(text=NO_COLLECTION, response_type="ephemeral")
            return
        answer = engine.ask(question)
        key = self.feedback.remember(answer, command.get("user_id"), command.get("channel_id"))
        text, blocks = answer_message(
            answer,
            key,
            self.settings.slack_show_closest,
            feedback=False,
            public_url=self.settings.public_url,
            collection=engine.settings.collection,
        )
        respond(text=text, blocks=[*blocks, share_block(key)], response_type="ephemeral")

    def _on_share(
        self, ack: Any, body: dict[str, Any], action: dict[str, Any], respond: Any
    ) -> None:
        ack()
        answer = self.feedback.answer(action["value"])
        if answer is None:
            respond(
                text="That answer has expired; ask again.",
                response_type="ephemeral",
                replace_original=False,
            )
            return
        text, blocks = answer_message(
            answer,
            action["value"],
            self.settings.slack_show_closest,
            public_url=self.settings.public_url,
        )
        user = body["user"]["id"]
        posted = self._post(
            channel=body["channel"]["id"],
            text=f"<@{user}> asked “{escape(truncate(answer.question, 300))}”\n{text}",
            blocks=blocks,
        )
        if posted:
            respond(delete_original=True)

    def _on_feedback(
        self, ack: Any, body: dict[str, Any], action: dict[str, Any], respond: Any
    ) -> None:
        ack()
        if action["action_id"] == "feedback_reason":
            key, _, reason = action["selected_option"]["value"].partition(":")
            helpful, why = False, reason
        else:
            key, helpful, why = action["value"], action["action_id"] == "feedback_helpful", None
        if self.feedback.record(key, body["user"]["id"], helpful, why):
            respond(
                text="Thanks for the feedback.", response_type="ephemeral", replace_original=False
            )

    # ------------------------------------------------------------ answering

    def _answer(
        self, channel: str, thread: str | None, question: str, user: str | None, ts: str
    ) -> None:
        if not question:
            self._post(channel=channel, thread_ts=thread, text=USAGE)
            return
        wait = self._throttle.wait_seconds(user, channel)
        if wait:
            log.info("slack_rate_limited", user=user, channel=channel, wait_s=wait)
            # once, not once per message
            if self.state.first_time(f"slack:told-to-wait:{user}:{channel}", 60):
                self._post(channel=channel, thread_ts=thread or ts, text=_slow_down(wait))
            return
        self._react("reactions_add", channel, ts)
        try:
            # A thread is a conversation; so is a DM, until a pause starts a new one.
            engine = self._engine(channel)
            if engine is None:
                self._post(channel=channel, thread_ts=thread, text=NO_COLLECTION)
                return
            conversation = engine.conversation_for(
                _conversation_key(channel, thread),
                SLACK_OWNER,
                None if thread else self.settings.slack_dm_conversation_gap_s,
            )
            # saved before the answer is posted: a reply to it may come at once
            answer = engine.converse(question, conversation)
            key = self.feedback.remember(answer, user, f"{channel}/{thread or ts}")
            text, blocks = answer_message(
                answer,
                key,
                self.settings.slack_show_closest,
                public_url=self.settings.public_url,
                collection=engine.settings.collection,
            )
            self._post(channel=channel, thread_ts=thread, text=text, blocks=blocks)
        finally:
            self._react("reactions_remove", channel, ts)

    def _post(self, **message: Any) -> bool:
        """Post a message; on a block error, once more as plain text. Errors are logged, never
        raised: a listener that crashes helps nobody."""
        message = {k: v for k, v in message.items() if v is not None}
        try:
            self.client.chat_postMessage(unfurl_links=False, unfurl_media=False, **message)
            return True
        except SlackApiError as error:
            code = error.response.get("error")
            log.warning("slack_post_failed", error=code, channel=message.get("channel"))
            if code in _BLOCK_ERRORS and "blocks" in message:
                return self._post(
                    **{**message, "blocks": None, "text": truncate(message["text"], 2900)}
                )
            return False

    def _react(self, method: str, channel: str, ts: str) -> None:
        try:
            getattr(self.client, method)(channel=channel, timestamp=ts, name="eyes")
        except SlackApiError as error:  # missing scope, already reacted: never worth failing over
            log.info("slack_reaction_failed", error=error.response.get("error"))

    def _first_time(self, *keys: str) -> bool:
        """True if none of `keys` (an event id, a message's timestamp) was seen by any replica
        in the last DEDUPE_SECONDS; all of them count as seen from now on."""
        claimed = [self.state.first_time(f"slack:{key}", DEDUPE_SECONDS) for key in keys]
        return all(claimed)

    def _owns_thread(self, channel: str, thread: str) -> bool:
        engine = self._engine(channel)
        key = _conversation_key(channel, thread)
        return engine is not None and engine.conversation(key, SLACK_OWNER) is not None

    def _engine(self, channel: str) -> Verbatim | None:
        """The engine of the one collection `channel` is mapped to (its own entry in
        VERBATIM_SLACK_CHANNEL_COLLECTIONS, else "*", else the default collection); None when
        that collection has no index. No other collection is ever read for the channel."""
        mapping = self.settings.slack_channel_collections
        name = mapping.get(channel) or mapping.get("*") or DEFAULT_COLLECTION
        try:
            return self.collections.engine(name)
        except CollectionNotFoundError:
            log.warning("slack_collection_missing", channel=channel, collection=name)
            return None


def _conversation_key(channel: str, thread: str | None) -> str:
    return f"slack:{channel}:{thread}" if thread else f"slack:{channel}"


def _slow_down(seconds: int) -> str:
    return (
        f"I'm getting more questions than I can answer well right now. Please wait about "
        f"{seconds} s and ask again."
    )


def _question(text: str) -> str:
    return _MENTION.sub("", text).strip()
