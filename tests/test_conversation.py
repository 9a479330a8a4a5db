"""Conversations in the core: follow-ups read with the earlier turn, stored with a TTL and a cap."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from qa.conversation import Conversation, SQLiteConversationStore, Turn
from qa.engine import Verbatim

DECLARATION = "001_dd8c4ca6def8021f"
STATEMENT = "000_ca5c4864f6c7d21a"


def test_a_follow_up_keeps_the_subject_and_says_which_turn_it_used(
    seed_engine: Verbatim,
) -> None:
    conversation = seed_engine.new_conversation()
    first = seed_engine.ask("Where was the 2+2 meeting held?", conversation=conversation)
    assert first.context is None and first.quotes[0].doc_id == STATEMENT
    follow_up = seed_engine.ask("When was it held?", conversation=conversation)
    assert follow_up.context is not None and follow_up.context.turn == 1
    assert follow_up.context.question == "Where was the 2+2 meeting held?"
    assert "2+2" in follow_up.context.query and "meeting" in follow_up.context.query
    assert follow_up.question == "When was it held?"  # the answer names the question as asked
    assert "October 3, 2013" in follow_up.quotes[0].text
    assert [t.question for t in conversation.turns] == [first.question, follow_up.question]
    assert conversation.turns[0].quoted[0] == STATEMENT

    # without the conversation the same words find nothing to point at
    alone = seed_engine.ask("When was it held?")
    assert alone.context is None and "October 3, 2013" not in alone.quotes[0].text


def test_a_question_naming_its_own_subject_starts_fresh(seed_engine: Verbatim) -> None:
    conversation = seed_engine.new_conversation()
    seed_engine.ask("Where was the 2+2 meeting held?", conversation=conversation)
    fresh = seed_engine.ask(
        "What about the cabinet decision on seamless security legislation, when was it made?",
        conversation=conversation,
    )
    assert fresh.context is None  # "what about" and "it", but a subject of its own
    assert "July 1, 2014" in fresh.quotes[0].text


def test_a_japanese_follow_up_points_back_with_sore(seed_engine: Verbatim) -> None:
    conversation = seed_engine.new_conversation()
    seed_engine.ask("2+2会合はどこで開催されましたか?", conversation=conversation)
    follow_up = seed_engine.ask("それはいつですか?", conversation=conversation)
    assert follow_up.context is not None and follow_up.context.turn == 1
    assert "October 3, 2013" in follow_up.quotes[0].text


def test_follow_ups_can_be_turned_off(make_engine: Callable[..., Verbatim]) -> None:
    engine = make_engine(follow_ups=False)
    engine.build_index()
    conversation = engine.new_conversation()
    engine.ask("Where was the 2+2 meeting held?", conversation=conversation)
    assert engine.ask("When was it held?", conversation=conversation).context is None
    assert len(conversation.turns) == 2  # still a conversation, read turn by turn


def test_the_store_keeps_recent_turns_of_live_conversations(tmp_path: Path) -> None:
    store = SQLiteConversationStore(tmp_path / "c.sqlite", ttl_s=60, max_turns=2)
    now = time.time()
    turns = [Turn(f"q{n}", f"q{n}", [DECLARATION]) for n in range(3)]
    store.save(Conversation("live", owner="alpha", turns=turns, updated=now))
    store.save(Conversation("stale", turns=turns[:1], updated=now - 61))
    kept = store.get("live")
    assert kept is not None and [t.question for t in kept.turns] == ["q1", "q2"]
    assert kept.owner == "alpha" and kept.turns[0].quoted == [DECLARATION]
    assert store.get("stale") is None  # expired
    assert store.delete("live") and store.get("live") is None and not store.delete("live")


def test_conversations_belong_to_their_owner(seed_engine: Verbatim) -> None:
    conversation = seed_engine.new_conversation(owner="alpha")
    seed_engine.converse("Where was the 2+2 meeting held?", conversation)
    assert seed_engine.conversation(conversation.conversation_id, "alpha") is not None
    assert seed_engine.conversation(conversation.conversation_id, "beta") is None
    assert seed_engine.conversation(conversation.conversation_id) is None
