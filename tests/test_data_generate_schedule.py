"""`aloe generate` under the free schedule: the same conversations as lockstep, a failing conversation stops
alone, and every role's prompt is append-only across turns (or, for the pair judge, persona-led)."""

from __future__ import annotations

import json
import zlib

import pytest

from aloe_bench.core.prompts import load_prompts
from aloe_bench.training.generate import generate_conversations
from aloe_bench.training.generate_config import GenerateConfig
from fakes import assert_append_only
from test_data_generate import RoleBackend, _role_of, _roles


class VaryingBackend(RoleBackend):
    """Answers that depend on the request, so a mixed-up request would show in the records."""

    def _answer(self, messages, config):
        role = _role_of(messages)
        digest = zlib.crc32(json.dumps(messages).encode()) % 997
        if role == "user":
            if self.fail_user_for and self.fail_user_for in messages[0]["content"] and len(messages) > 2:
                return RuntimeError("simulated outage")
            return f"my message {len(messages)} #{digest}"
        if role == "judge":
            return "[[A]]" if digest % 2 else "[[B]]"
        if role == "induction":
            return f"Profile: fact {digest}\nPersonality: None"
        return f"{role} reply {digest} seed {config.seed}"


def _cfg(tmp_path, name, **kw):
    base = dict(output_dir=str(tmp_path / name), n_conversations=4, turns=3, progress=False, cache=False,
                judge_scoring="text", pair_order="once")  # one order; both orders: test_data_pair_order
    return GenerateConfig(**{**base, **kw})


def _records(tmp_path, name):
    rows = [json.loads(x) for x in (tmp_path / name / "conversations.jsonl").read_text().splitlines()]
    return sorted(rows, key=lambda r: r["id"])


def test_free_and_lockstep_generate_the_same_conversations(tmp_path):
    free, lock = VaryingBackend(), VaryingBackend()
    a = generate_conversations(_cfg(tmp_path, "free"), backends=_roles(free))
    b = generate_conversations(_cfg(tmp_path, "lock", schedule="lockstep"), backends=_roles(lock))
    assert a["conversations"] == b["conversations"] == 4 and a["turns"] == 12
    assert {len(batch) for batch, _ in free.calls} == {1}  # one request at a time, one task per conversation
    assert _records(tmp_path, "free") == _records(tmp_path, "lock")
    choices = {t["judge_choice"] for r in _records(tmp_path, "free") for t in r["turns"]}
    assert choices == {"preferred", "rejected"}


def test_a_failing_conversation_stops_alone_in_free_generate(tmp_path):
    probe = generate_conversations(_cfg(tmp_path, "probe", n_conversations=3, turns=1), backends=_roles(RoleBackend()))
    victim = _records(tmp_path, "probe")[1]["profile"][:60]
    backend = VaryingBackend(fail_user_for=victim)
    counts = generate_conversations(_cfg(tmp_path, "run", n_conversations=3), backends=_roles(backend))
    assert probe["conversations"] == 3 and counts["failed_conversations"] == 1
    records = _records(tmp_path, "run")
    failed = [r for r in records if r["error"]]
    assert len(failed) == 1 and failed[0]["profile"].startswith(victim) and len(failed[0]["turns"]) == 1
    assert "turn 2: user simulator" in failed[0]["error"]
    assert all(len(r["turns"]) == 3 for r in records if not r["error"])


def role_chains(backend) -> dict[str, list[list[list[dict]]]]:
    """Each conversation's requests, turn by turn, of the role-play user and the two responders."""
    chains = {}
    for batch, _ in backend.calls:
        for messages in batch:
            role = _role_of(messages)
            if role in ("user", "preferred", "rejected"):
                key = messages[0]["content"] if role == "user" else messages[1]["content"]  # persona / first message
                chains.setdefault(role, {}).setdefault(key, []).append(messages)
    return {role: list(by_key.values()) for role, by_key in chains.items()}


@pytest.mark.parametrize("schedule", ["free", "lockstep"])
def test_generate_prompts_are_append_only(tmp_path, schedule):
    """User simulator and both responders: turn k's messages start with turn k-1's. The preferred responder's
    revealed facts follow each user message (the newest holds this turn's induction), so its prompt only grows.
    The induction and the pair judge are single-request prompts by design: their fixed part (instructions; the
    judge's persona) leads, and the induction's conversation text grows at its end."""
    backend = VaryingBackend()
    generate_conversations(_cfg(tmp_path, "run", n_conversations=2, turns=3, schedule=schedule),
                           backends=_roles(backend))
    requests = [m for batch, _ in backend.calls for m in batch]
    by_role = {}
    for messages in requests:
        by_role.setdefault(_role_of(messages), []).append(messages)
    prompts = load_prompts()
    chains = role_chains(backend)
    for role in ("user", "preferred", "rejected"):
        assert len(chains[role]) == 2 and all(len(c) == 3 for c in chains[role]), role
        for chain in chains[role]:
            assert_append_only(chain, role)
    # the protocol's meaning: the preferred responder sees the message plus the facts induced so far, turn by
    # turn; the rejected one sees only the conversation
    records = {r["turns"][0]["user_message"]: r for r in _records(tmp_path, "run")}
    for pref_chain, rej_chain in zip(sorted(chains["preferred"], key=lambda c: c[0][1]["content"]),
                                     sorted(chains["rejected"], key=lambda c: c[0][1]["content"])):
        record = records[rej_chain[0][1]["content"]]
        for k, (pref, rej) in enumerate(zip(pref_chain, rej_chain)):
            turn = record["turns"][k]
            assert rej[-1]["content"] == turn["user_message"] and "Note" not in json.dumps(rej)
            assert pref[-1]["content"].startswith(turn["user_message"] + "\n")
            assert f"Profile: {turn['revealed_profile']}" in pref[-1]["content"]
            assert [m for m in pref[1:] if m["role"] == "assistant"] == [m for m in rej[1:] if m["role"] == "assistant"]
            assert pref[0]["content"] == prompts["responder_preferred"]["system"]  # fixed: no facts in it
    system = prompts["induction"]["system"]
    for messages in by_role["induction"]:
        assert messages[0]["content"] == system
    judge_system = prompts["pair_judge"]["system"]
    lead_in = prompts["pair_judge"]["user"].split("{message}")[0]
    assert "{profile}" in lead_in and "{personality}" in lead_in
    assert all(m[0]["content"] == judge_system for m in by_role["judge"])


@pytest.mark.slow
def test_generate_conversation_roles_are_token_prefixes_under_the_embedded_chat_template(tmp_path,
                                                                                        embedded_model_dir):
    """What a local model is given: the role-play user's and both responders' turn-k prompts, rendered with the
    embedded model's chat template (generation prompt included), start with turn k-1's, text and tokens."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(embedded_model_dir)
    backend = VaryingBackend()
    generate_conversations(_cfg(tmp_path, "run", n_conversations=2, turns=3), backends=_roles(backend))
    for role, chains in role_chains(backend).items():
        assert len(chains) == 2 and all(len(c) == 3 for c in chains), role
        for chain in chains:
            assert_append_only(chain, role, tokenizer)


class ScopedBackend(VaryingBackend):
    """Logs the prefix-cache scope of each request (with the conversation's persona) and each release, in order."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.events: list[tuple] = []

    def _generate_batch(self, conversations, config):
        from aloe_bench.core.backends.prefix_cache import current_scope

        scope = current_scope()
        self.events += [("call", scope, _persona_key(m)) for m in conversations]
        return super()._generate_batch(conversations, config)

    def release_prefixes(self, scope: str) -> int:
        self.events.append(("release", scope, None))
        return 0


def _persona_key(messages) -> str:
    """A text that tells conversations apart: the role-play user's system prompt holds its persona."""
    return messages[0]["content"] if _role_of(messages) == "user" else ""


@pytest.mark.parametrize("schedule", ["free", "lockstep"])
def test_generate_gives_conversations_scopes_released_when_they_end(tmp_path, schedule):
    backend = ScopedBackend()
    generate_conversations(_cfg(tmp_path, schedule, schedule=schedule, group_size=2), backends=_roles(backend))
    calls = [(scope, key) for kind, scope, key in backend.events if kind == "call"]
    released = [scope for kind, scope, _ in backend.events if kind == "release"]
    scopes = {scope for scope, _ in calls}
    assert "" not in scopes  # never the process-wide default scope
    # free: one scope per conversation (4); lockstep: one per group of two conversations (2)
    assert len(scopes) == (4 if schedule == "free" else 2)
    users = {}
    for scope, key in calls:
        if key:
            users.setdefault(scope, set()).add(key)
    assert all(len(keys) == (1 if schedule == "free" else 2) for keys in users.values())
    assert sorted(released) == sorted(scopes)  # each released once, on the one backend every role shares
    for kind, scope, _ in backend.events:  # nothing is asked in a scope after its release
        if kind == "release":
            after = backend.events[backend.events.index((kind, scope, None)) + 1:]
            assert all(s != scope for k, s, _ in after if k == "call")
