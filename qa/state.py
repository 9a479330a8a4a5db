"""State that outlives a request, behind one interface: embedded (SQLite and memory, so
`make run` needs no server) or Redis (`VERBATIM_STATE_URL=redis://...`, shared by replicas).

What lives here: Slack's event de-duplication (set-if-absent with expiry), rate-limit windows
(the `limits` package's storage), feedback records, and conversations (which are also Slack's
thread state). No door talks to Redis itself; each goes through `State`.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from limits.storage import MemoryStorage, RedisStorage, Storage

from qa.answer import Answer
from qa.conversation import Conversation, ConversationStore, SQLiteConversationStore, Turn
from qa.feedback import FeedbackStore, SQLiteFeedbackStore, feedback_lines, new_key

if TYPE_CHECKING:
    from redis import Redis


class State(Protocol):
    @property
    def conversations(self) -> ConversationStore: ...

    @property
    def feedback(self) -> FeedbackStore: ...

    @property
    def limits(self) -> Storage:
        """Where rate-limit windows are counted."""
        ...

    def first_time(self, key: str, ttl_s: float) -> bool:
        """True for the first caller to claim `key` within `ttl_s` seconds, on any replica."""
        ...


def open_state(url: str, home: Path, ttl_s: float, max_turns: int) -> State:
    """Redis at `url` ("redis://..."), else the embedded state under `home`."""
    if url.startswith(("redis://", "rediss://")):
        return RedisState(url, ttl_s, max_turns)
    return LocalState(home, ttl_s, max_turns)


class LocalState:
    """One machine's state: SQLite files under `home` (shared by its processes) and the rate
    windows in this process's memory."""

    def __init__(self, home: Path, ttl_s: float, max_turns: int) -> None:
        self.conversations = SQLiteConversationStore(
            home / "conversations.sqlite", ttl_s, max_turns
        )
        self.feedback = SQLiteFeedbackStore(home / "feedback.sqlite")
        self.limits = MemoryStorage()
        home.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(home / "seen.sqlite", check_same_thread=False, timeout=30)
        self._db.execute("CREATE TABLE IF NOT EXISTS seen (key TEXT PRIMARY KEY, expires REAL)")
        self._lock = threading.Lock()

    def first_time(self, key: str, ttl_s: float) -> bool:
        now = time.time()
        with self._lock, self._db:
            self._db.execute("DELETE FROM seen WHERE expires < ?", (now,))
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO seen VALUES (?, ?)", (key, now + ttl_s)
            )
        return cursor.rowcount == 1


_PREFIX = "verbatim:"


class RedisState:
    """State in one Redis server, shared by every replica: keys under `verbatim:`."""

    def __init__(self, url: str, ttl_s: float, max_turns: int) -> None:
        from redis import Redis

        self.redis: Redis = Redis.from_url(url, decode_responses=True)
        self.conversations = RedisConversationStore(self.redis, ttl_s, max_turns)
        self.feedback = RedisFeedbackStore(self.redis)
        self.limits = RedisStorage(url)

    def first_time(self, key: str, ttl_s: float) -> bool:
        claimed = self.redis.set(f"{_PREFIX}seen:{key}", 1, nx=True, px=int(ttl_s * 1000))
        return bool(claimed)


class RedisConversationStore:
    """A conversation as one JSON value that expires `ttl_s` after its last question."""

    def __init__(self, redis: Redis, ttl_s: float, max_turns: int) -> None:
        self.redis, self.ttl_s, self.max_turns = redis, ttl_s, max_turns

    def get(self, conversation_id: str) -> Conversation | None:
        stored = self.redis.get(f"{_PREFIX}conversation:{conversation_id}")
        if stored is None:
            return None
        data = json.loads(str(stored))
        return Conversation(
            conversation_id,
            owner=data["owner"],
            turns=[Turn(**turn) for turn in data["turns"]],
            updated=data["updated"],
        )

    def save(self, conversation: Conversation) -> None:
        data = {
            "owner": conversation.owner,
            "updated": conversation.updated,
            "turns": [asdict(turn) for turn in conversation.turns[-self.max_turns :]],
        }
        self.redis.set(
            f"{_PREFIX}conversation:{conversation.conversation_id}",
            json.dumps(data, ensure_ascii=False),
            px=int(self.ttl_s * 1000),
        )

    def delete(self, conversation_id: str) -> bool:
        return bool(self.redis.delete(f"{_PREFIX}conversation:{conversation_id}"))


class RedisFeedbackStore:
    """Answers shown under their key, and each person's verdict, in the order given."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    def remember(
        self, answer: Answer, asked_by: str | None = None, place: str | None = None
    ) -> str:
        key = new_key()
        self.redis.hset(
            f"{_PREFIX}shown:{key}",
            mapping={"asked_by": asked_by or "", "place": place or "", "created": time.time()},
        )  # who saw it where, as the SQLite store keeps it
        self.redis.set(f"{_PREFIX}answer:{key}", answer.model_dump_json())
        return key

    def answer(self, key: str) -> Answer | None:
        stored = self.redis.get(f"{_PREFIX}answer:{key}")
        return Answer.model_validate_json(str(stored)) if stored is not None else None

    def record(self, key: str, user: str, helpful: bool, reason: str | None = None) -> bool:
        if not self.redis.exists(f"{_PREFIX}answer:{key}"):
            return False
        verdict = json.dumps({"helpful": helpful, "reason": reason})
        pipe = self.redis.pipeline()
        pipe.hset(f"{_PREFIX}feedback:{key}", user, verdict)
        pipe.zadd(f"{_PREFIX}feedback-order", {f"{key}\x00{user}": time.time()}, nx=True)
        pipe.execute()
        return True

    def export(self, path: Path) -> tuple[int, int]:
        verdicts = []
        for member in self.redis.zrange(f"{_PREFIX}feedback-order", 0, -1):
            key, user = str(member).split("\x00", 1)
            answer, verdict = self.answer(key), self.redis.hget(f"{_PREFIX}feedback:{key}", user)
            if answer is not None and verdict is not None:
                given = json.loads(str(verdict))
                verdicts.append((key, answer, bool(given["helpful"]), given["reason"]))
        return feedback_lines(verdicts, path)
