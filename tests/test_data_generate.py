"""Conversation generation: lockstep roles, recorded judge order, failures kept and counted, resume."""

from __future__ import annotations

import json

import pytest
from aloe_bench.core.induction import parse_induction, parse_induction_lenient
from aloe_bench.training.generate import generate_conversations
from aloe_bench.training.generate_config import GenerateConfig
from aloe_bench.training.persona_pairs import persona_pairs
from aloe_bench.testing.backends import ScriptedBackend


def _role_of(messages):
    system = messages[0]["content"]
    if "playing a person" in system:
        return "user"
    if "note what the user has revealed" in system:
        return "induction"
    if "not written by them" in system:  # prompts 1.4: the facts follow each user message
        return "preferred"
    if system.startswith("You are a helpful assistant"):
        return "rejected"
    return "judge"


class RoleBackend(ScriptedBackend):
    """One fake model for every role; answers by role and logs the role of every request per call."""

    def __init__(self, judge_answer="Reply A is warmer. [[A]]", induction="Profile: likes tea\nPersonality: terse",
                 fail_user_for=None):
        self.judge_answer = judge_answer
        self.induction = induction
        self.fail_user_for = fail_user_for
        self.role_calls = []
        super().__init__(fn=self._answer)

    def _generate_batch(self, conversations, config):
        self.role_calls.append(sorted({_role_of(m) for m in conversations}))
        return super()._generate_batch(conversations, config)

    def _answer(self, messages, config):
        role = _role_of(messages)
        if role == "user":
            if self.fail_user_for and self.fail_user_for in messages[0]["content"]:
                return RuntimeError("simulated outage")
            return f"my message {len(messages)}"
        if role == "induction":
            return self.induction() if callable(self.induction) else self.induction
        if role == "judge":
            return self.judge_answer() if callable(self.judge_answer) else self.judge_answer
        return f"{role} reply to {messages[-1]['content']}"


def _cfg(tmp_path, **kw):
    base = dict(output_dir=str(tmp_path), n_conversations=3, turns=2, progress=False, cache=False, judge_scoring="text",
                schedule="lockstep")
    return GenerateConfig(**{**base, **kw})


def _roles(backend):
    return {role: backend for role in ("user", "induction", "preferred", "rejected", "judge")}


def _records(tmp_path):
    return [json.loads(x) for x in (tmp_path / "conversations.jsonl").read_text().splitlines()]


def test_parse_induction():
    assert parse_induction("Profile: a nurse\nPersonality: None") == ("a nurse", "None")
    assert parse_induction("**Profile:** runs\n- Personality: blunt") == ("runs", "blunt")
    assert parse_induction("I think the user likes cats.") is None
    assert parse_induction_lenient("I think the user likes cats.") == ("I think the user likes cats.", "None", True)


def test_persona_pairs_are_distinct_and_prefix_stable(tmp_path):
    few = persona_pairs(_cfg(tmp_path, n_conversations=5))
    more = persona_pairs(_cfg(tmp_path, n_conversations=40))
    assert more[:5] == few and len({p.id for p in more}) == 40
    with pytest.raises(ValueError, match="pairs"):
        persona_pairs(_cfg(tmp_path, n_conversations=24 * 24 + 1))


def test_lockstep_batches_and_judge_order_mapping(tmp_path):
    backend = RoleBackend()
    counts = generate_conversations(_cfg(tmp_path), backends=_roles(backend))
    assert counts["conversations"] == 3 and counts["turns"] == 6 and counts["failed_conversations"] == 0
    # one batched call per role per turn, each holding all three conversations
    assert backend.role_calls == [["user"], ["induction"], ["preferred"], ["rejected"], ["judge"]] * 2
    assert all(len(convs) == 3 for convs, _ in backend.calls)
    positions = set()
    for record in _records(tmp_path):
        history = []
        for turn in record["turns"]:
            positions.add(turn["preferred_position"])
            # the judge always answers A, so its choice is whichever reply was shown first
            assert turn["judge_choice"] == ("preferred" if turn["preferred_position"] == "A" else "rejected")
            assert turn["preferred"].startswith("preferred reply") and turn["rejected"].startswith("rejected reply")
            assert (turn["revealed_profile"], turn["revealed_personality"]) == ("likes tea", "terse")
            history += [turn["user_message"], turn[turn["continued_with"]]]
        assert record["error"] is None and json.loads(record["models"])["judge"] == "embedded"
    assert positions == {"A", "B"}


def test_judge_retries_then_records_failure(tmp_path):
    answers = iter(["no verdict here", "still none", "nope"] * 20)
    backend = RoleBackend(judge_answer=lambda: next(answers))
    counts = generate_conversations(_cfg(tmp_path, n_conversations=2, turns=1), backends=_roles(backend))
    assert counts["judge_failures"] == 2 and counts["turns"] == 2
    for record in _records(tmp_path):
        turn = record["turns"][0]
        assert turn["judge_choice"] is None and "after 3 attempts" in turn["error"]
        assert turn["attempts"]["judge"] == 3


def test_strict_induction_failure_stops_and_is_counted(tmp_path):
    backend = RoleBackend(induction="the user seems nice")
    counts = generate_conversations(_cfg(tmp_path, induction_parse="strict"), backends=_roles(backend))
    assert counts["failed_conversations"] == 3 and counts["turns"] == 0
    assert all("induction: unparsable answer after 3 attempts" in r["error"] for r in _records(tmp_path))


def test_failed_user_stops_one_conversation_only_and_resume_skips_finished(tmp_path):
    cfg = _cfg(tmp_path, n_conversations=2)
    victim = persona_pairs(cfg)[1].profile[:40]
    backend = RoleBackend(fail_user_for=victim)
    counts = generate_conversations(cfg, backends=_roles(backend))
    assert counts["failed_conversations"] == 1 and counts["turns"] == 2
    failed = [r for r in _records(tmp_path) if r["error"]]
    assert failed[0]["turns"] == [] and "simulated outage" in failed[0]["error"]

    again = RoleBackend()
    counts = generate_conversations(_cfg(tmp_path, n_conversations=3), backends=_roles(again))
    assert counts["conversations"] == 3
    assert all(len(convs) == 1 for convs, _ in again.calls)  # only the new conversation ran
    assert sorted(r["id"] for r in _records(tmp_path)) == ["conv-00001", "conv-00002", "conv-00003"]


def test_other_settings_in_same_folder_are_refused(tmp_path):
    generate_conversations(_cfg(tmp_path, n_conversations=1, turns=1), backends=_roles(RoleBackend()))
    with pytest.raises(ValueError, match="other settings"):
        generate_conversations(_cfg(tmp_path, n_conversations=1, turns=2), backends=_roles(RoleBackend()))


def test_induction_sees_the_full_persona_and_the_conversation(tmp_path):
    backend = RoleBackend()
    cfg = _cfg(tmp_path, n_conversations=2, turns=2)
    generate_conversations(cfg, backends=_roles(backend))
    pairs = persona_pairs(cfg)
    induction_requests = [m for convs, _ in backend.calls for m in convs if _role_of(m) == "induction"]
    assert len(induction_requests) == 4
    seen = []
    for messages in induction_requests:
        prompt = messages[-1]["content"]
        # exactly one persona, whole (profile and personality), and the user's latest message are in the prompt
        matching = [p.id for p in pairs if p.profile in prompt and p.personality in prompt]
        assert len(matching) == 1 and "my message" in prompt
        seen += matching
    assert sorted(seen) == sorted([p.id for p in pairs] * 2)


def test_role_play_prompt_frames_a_friend_and_forbids_advice_seeking_and_analysis():
    from aloe_bench.core.prompts import load_prompts

    system = load_prompts()["user_simulator"]["system"]
    assert "AI assistant" not in system and "friend" in system
    assert "do not keep asking for advice" in system and "analysis about the role-play" in system
