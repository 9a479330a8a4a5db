"""Answers shown to people and their feedback, kept in SQLite, exported as a question set.

Every answer a door shows is stored under a short key (buttons carry the key, not the answer).
`export` writes the answers people found helpful as questions whose gold spans are the quotes
they saw, and the unhelpful ones as `#` comment lines for a person to complete.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Protocol

from qa.answer import Answer

_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    key TEXT PRIMARY KEY, question TEXT NOT NULL, answer_json TEXT NOT NULL,
    asked_by TEXT, place TEXT, created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS feedback (
    key TEXT NOT NULL REFERENCES answers(key), user TEXT NOT NULL, helpful INTEGER NOT NULL,
    reason TEXT, created REAL NOT NULL, PRIMARY KEY (key, user)
);
"""


class FeedbackStore(Protocol):
    def remember(
        self, answer: Answer, asked_by: str | None = None, place: str | None = None
    ) -> str:
        """Keep an answer shown to someone; the key its buttons carry."""
        ...

    def answer(self, key: str) -> Answer | None: ...

    def record(self, key: str, user: str, helpful: bool, reason: str | None = None) -> bool:
        """Store (or replace) one person's verdict on an answer; False for an unknown key."""
        ...

    def export(self, path: Path) -> tuple[int, int]:
        """Write the question set; returns (helpful questions, unhelpful comment lines)."""
        ...


def new_key() -> str:
    return uuid.uuid4().hex[:16]


class SQLiteFeedbackStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def remember(
        self, answer: Answer, asked_by: str | None = None, place: str | None = None
    ) -> str:
        key = new_key()
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO answers VALUES (?, ?, ?, ?, ?, ?)",
                (key, answer.question, answer.model_dump_json(), asked_by, place, time.time()),
            )
        return key

    def answer(self, key: str) -> Answer | None:
        with self._lock:
            row = self._db.execute(
                "SELECT answer_json FROM answers WHERE key = ?", (key,)
            ).fetchone()
        return Answer.model_validate_json(row[0]) if row else None

    def record(self, key: str, user: str, helpful: bool, reason: str | None = None) -> bool:
        with self._lock, self._db:
            if self._db.execute("SELECT 1 FROM answers WHERE key = ?", (key,)).fetchone() is None:
                return False
            self._db.execute(
                "INSERT OR REPLACE INTO feedback VALUES (?, ?, ?, ?, ?)",
                (key, user, int(helpful), reason, time.time()),
            )
        return True

    def export(self, path: Path) -> tuple[int, int]:
        with self._lock:
            rows = self._db.execute(
                "SELECT a.key, a.answer_json, f.helpful, f.reason FROM feedback f "
                "JOIN answers a ON a.key = f.key ORDER BY f.created"
            ).fetchall()
        verdicts = [
            (key, Answer.model_validate_json(answer_json), bool(helpful), reason)
            for key, answer_json, helpful, reason in rows
        ]
        return feedback_lines(verdicts, path)


def feedback_lines(
    verdicts: list[tuple[str, Answer, bool, str | None]], path: Path
) -> tuple[int, int]:
    """Write verdicts (key, answer, helpful, reason; oldest first, one per answer counted) as a
    question set; returns (helpful questions, unhelpful comment lines)."""
    helpful = unhelpful = 0
    seen: set[str] = set()
    lines = []
    for key, answer, is_helpful, reason in verdicts:
        if key in seen:
            continue
        seen.add(key)
        shown = [q for q in answer.quotes if not q.closest_match]
        if is_helpful and shown:
            helpful += 1
            lines.append(
                json.dumps(
                    {
                        "id": f"feedback-{key}",
                        "question": answer.question,
                        "spans": [
                            {"doc_id": q.doc_id, "start": q.char_start, "end": q.char_end}
                            for q in shown
                        ],
                        "category": "feedback",
                    },
                    ensure_ascii=False,
                )
            )
        elif not is_helpful:
            unhelpful += 1
            asked = json.dumps(answer.question, ensure_ascii=False)
            lines.append(f"# not helpful ({reason or 'no reason given'}): {asked}")
    path.write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")
    return helpful, unhelpful
