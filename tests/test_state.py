"""Shared state, embedded and on a real Redis server: the same behaviour behind one interface,
and with Redis, shared by every process that points at it (as replicas do)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from limits import parse as parse_rate
from limits.strategies import MovingWindowRateLimiter

from qa.answer import Answer, Quote
from qa.conversation import Conversation, Turn
from qa.engine import Verbatim
from qa.state import LocalState, RedisState, State, open_state

TTL_S, MAX_TURNS = 3600.0, 2


@pytest.fixture(params=["local", "redis"])
def make_state(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], State]:
    """States as two replicas would open them: the same home, or the same Redis."""
    if request.param == "local":
        return lambda: LocalState(tmp_path / "home", TTL_S, MAX_TURNS)
    url = request.getfixturevalue("redis_url")
    RedisState(url, TTL_S, MAX_TURNS).redis.flushdb()
    return lambda: RedisState(url, TTL_S, MAX_TURNS)


def test_a_key_is_claimed_once(make_state: Callable[[], State]) -> None:
    first, second = make_state(), make_state()  # two processes on one home, or two replicas
    assert first.first_time("event:Ev1", 60)
    assert not first.first_time("event:Ev1", 60)
    assert not second.first_time("event:Ev1", 60)  # a retry reaching the other one
    assert second.first_time("event:Ev2", 60)


def test_conversations_are_kept_capped_and_forgotten(make_state: Callable[[], State]) -> None:
    store = make_state().conversations
    turns = [Turn(f"q{n}", f"q{n} words", ["doc"]) for n in range(3)]
    store.save(Conversation("c1", owner="alpha@default", turns=turns, updated=time.time()))
    kept = make_state().conversations.get("c1")  # read by the other replica
    assert kept is not None and kept.owner == "alpha@default"
    assert [(t.question, t.query, t.quoted) for t in kept.turns] == [
        ("q1", "q1 words", ["doc"]),
        ("q2", "q2 words", ["doc"]),
    ]
    assert store.delete("c1") and store.get("c1") is None and not store.delete("c1")


def test_feedback_is_recorded_and_exported(make_state: Callable[[], State], tmp_path: Path) -> None:
    state = make_state()
    quote = Quote(
        rank=1,
        text="about 100,000",
        doc_id="d",
        title="t",
        date=None,
        source=None,
        url=None,
        char_start=5,
        char_end=18,
        section=None,
        passage="p",
        passage_start=0,
        score=0.9,
    )
    shown = Answer(
        question="How many?",
        status="answered",
        quotes=[quote],
        threshold=0.2,
        index_version="v",
        took_ms=1.0,
    )
    good, bad = state.feedback.remember(shown, "U1", "C1"), state.feedback.remember(shown)
    assert make_state().feedback.answer(good) == shown
    assert state.feedback.record(good, "U1", True)
    assert make_state().feedback.record(bad, "U2", False, "wrong year")
    assert not state.feedback.record("no-such-key", "U1", True)
    out = tmp_path / "feedback.jsonl"
    assert state.feedback.export(out) == (1, 1)
    lines = out.read_text(encoding="utf-8").splitlines()
    assert '"spans": [{"doc_id": "d", "start": 5, "end": 18}]' in lines[0]
    assert lines[1] == '# not helpful (wrong year): "How many?"'


def test_redis_rate_windows_are_shared_by_replicas(redis_url: str) -> None:
    rate = parse_rate("3/minute")
    replicas = [MovingWindowRateLimiter(RedisState(redis_url, TTL_S, 2).limits) for _ in "ab"]
    admitted = [replicas[n % 2].hit(rate, "client-1") for n in range(5)]
    assert admitted == [True, True, True, False, False]  # 3 in all, not 3 per replica


def test_engines_on_one_redis_share_conversations(
    redis_url: str, make_engine: Callable[..., Verbatim], tmp_path: Path
) -> None:
    first = make_engine(home=tmp_path / "one", state_url=redis_url)
    first.build_index()
    second = make_engine(home=tmp_path / "two", state_url=redis_url)  # another machine's home
    second.build_index()
    conversation = first.new_conversation(owner="alpha@default")
    first.converse("Where was the 2+2 meeting held?", conversation)
    continued = second.conversation(conversation.conversation_id, "alpha@default")
    assert continued is not None
    follow_up = second.converse("When was it held?", continued)
    assert follow_up.context is not None and "October 3, 2013" in follow_up.quotes[0].text
    assert isinstance(open_state("", tmp_path / "three", TTL_S, 2), LocalState)
