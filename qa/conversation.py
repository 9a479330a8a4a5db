"""Conversations: follow-up questions read against the earlier turns, with no generated text.

A follow-up ("And when was it signed?", "それはいつ？", "what about the U.S. side?") is
retrieved with the question's words plus the earlier turn's, as typed, so a pronoun or an
ellipsis keeps the subject; a question naming a subject of its own starts fresh. Passages of
the documents the earlier answer quoted move up the candidate list (`VERBATIM_FOLLOW_UP_LIFT`).
The quotes stay exact: only retrieval reads the earlier words, and the answer says which turn
it used.

Conversations live in a `ConversationStore` (SQLite by default, beside the feedback store) with
a time to live and a turn cap.
"""

from __future__ import annotations

import functools
import re
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from corpus.tokenize import KeywordTokenizer
from qa.answer import Context
from qa.retriever import Candidate

# Words that point back ("it", "they", "その"), or openings that continue ("and", "what about",
# "では"): with them, a question is read with the earlier turn's subject.
_POINTS_BACK_EN = re.compile(
    r"^\s*(and|but|also|so|then|what about|how about)\b"
    r"|\b(it|its|they|them|their|this|that|these|those|he|she|his|her|there|the same)\b",
    re.IGNORECASE,
)
_POINTS_BACK_JA = re.compile(
    r"^\s*(では|じゃあ|それでは|そして|また|なお)|それ|その|そこ|これ|この|あれ|あの|同[条国会]|彼"
    r"|[はも][?？]?\s*$"  # ellipsis: "日本側は？"
)
# Words that ask or point rather than name a subject: neither new subjects nor worth carrying
# into a follow-up (tokenised by the collection's own rules, so their stems and lemmas match)
_ASKING_WORDS = (
    "what when where who whom whose which why how did does do is are was were can could would"
    " should it its they them their this that these those there about same"
    " 何 いつ どこ 誰 どの どう なぜ どれ どちら どのくらい 何人 何年 いくら"
    " それ その そこ これ この あれ あの 彼 ます です"
)
# A question with this many words of its own that the conversation never used names a new
# subject, pointing words or not ("What about the Guidelines for Japan-U.S. Defense Cooperation?")
NEW_SUBJECT_WORDS = 3


@dataclass
class Turn:
    question: str
    query: str  # what retrieval read (carries the subject along a chain of follow-ups)
    quoted: list[str]  # doc ids of the quotes shown (none when it did not answer)


@dataclass
class Conversation:
    conversation_id: str
    owner: str = ""  # who may continue it: "KEYDIGEST@collection" over HTTP, "slack"; "" anyone
    turns: list[Turn] = field(default_factory=list)
    updated: float = 0.0


@dataclass(frozen=True)
class Resolution:
    """How a question is read in its conversation."""

    query: str
    context: Context | None = None
    preferred: frozenset[str] = frozenset()  # doc ids whose candidates move up


def resolve(question: str, conversation: Conversation, tokenizer: KeywordTokenizer) -> Resolution:
    """The retrieval text for `question` in `conversation`: its own words when it stands alone
    or names a new subject; with the last turn's words when it points back or leaves its
    subject out."""
    if not conversation.turns:
        return Resolution(question)
    last = conversation.turns[-1]
    asking = _asking_terms(tokenizer)
    own = set(tokenizer.tokenize(question)) - asking
    used = {t for turn in conversation.turns for t in tokenizer.tokenize(turn.query)}
    points_back = bool(_POINTS_BACK_EN.search(question) or _POINTS_BACK_JA.search(question))
    elliptic = len(own) <= 1
    if not (points_back or elliptic) or len(own - used) >= NEW_SUBJECT_WORDS:
        return Resolution(question)
    earlier = [w for t, w in tokenizer.terms(last.query) if t not in own and t not in asking]
    typed = {word for _, word in tokenizer.terms(question)}
    added = list(dict.fromkeys(w for w in earlier if w not in typed))
    query = f"{question} {' '.join(added)}" if added else question
    turn = len(conversation.turns)
    return Resolution(
        query, Context(turn=turn, question=last.question, query=query), frozenset(last.quoted)
    )


@functools.cache
def _asking_terms(tokenizer: KeywordTokenizer) -> frozenset[str]:
    """`_ASKING_WORDS` as the tokenizer's terms: once per tokenizer, not per question."""
    return frozenset(tokenizer.tokenize(_ASKING_WORDS))


def lifted(candidates: list[Candidate], preferred: frozenset[str], lift: int) -> list[Candidate]:
    """`candidates` with those of `preferred` documents moved up `lift` places."""

    def place(i: int) -> float:
        return i - (lift + 0.5 if lift and candidates[i].chunk.doc_id in preferred else 0)

    return [candidates[i] for i in sorted(range(len(candidates)), key=place)]


class ConversationStore(Protocol):
    def get(self, conversation_id: str) -> Conversation | None:
        """The conversation, or None when unknown or expired."""
        ...

    def save(self, conversation: Conversation) -> None: ...

    def delete(self, conversation_id: str) -> bool: ...


def new_conversation_id() -> str:
    return uuid.uuid4().hex


_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL, updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS turns (
    id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE, n INTEGER NOT NULL,
    question TEXT NOT NULL, query TEXT NOT NULL, quoted TEXT NOT NULL, PRIMARY KEY (id, n)
);
"""


class SQLiteConversationStore:
    """Conversations in one SQLite file: those idle longer than `ttl_s` are gone, and only the
    last `max_turns` turns of each are kept."""

    def __init__(self, path: Path, ttl_s: float, max_turns: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.execute("PRAGMA foreign_keys = ON")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self.ttl_s = ttl_s
        self.max_turns = max_turns

    def get(self, conversation_id: str) -> Conversation | None:
        with self._lock:
            row = self._db.execute(
                "SELECT owner, updated FROM conversations WHERE id = ? AND updated >= ?",
                (conversation_id, time.time() - self.ttl_s),
            ).fetchone()
            if row is None:
                return None
            turns = self._db.execute(
                "SELECT question, query, quoted FROM turns WHERE id = ? ORDER BY n",
                (conversation_id,),
            ).fetchall()
        return Conversation(
            conversation_id,
            owner=row[0],
            turns=[
                Turn(q, query, [d for d in quoted.split("\n") if d]) for q, query, quoted in turns
            ],
            updated=row[1],
        )

    def save(self, conversation: Conversation) -> None:
        kept = conversation.turns[-self.max_turns :]
        with self._lock, self._db:
            self._db.execute(
                "DELETE FROM conversations WHERE updated < ?", (time.time() - self.ttl_s,)
            )
            self._db.execute(
                "INSERT OR REPLACE INTO conversations VALUES (?, ?, ?)",
                (conversation.conversation_id, conversation.owner, conversation.updated),
            )
            self._db.execute("DELETE FROM turns WHERE id = ?", (conversation.conversation_id,))
            self._db.executemany(
                "INSERT INTO turns VALUES (?, ?, ?, ?, ?)",
                [
                    (conversation.conversation_id, n, t.question, t.query, "\n".join(t.quoted))
                    for n, t in enumerate(kept)
                ],
            )

    def delete(self, conversation_id: str) -> bool:
        with self._lock, self._db:
            cursor = self._db.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))
        return cursor.rowcount > 0
