"""The three schedules of the eval loop on scripted backends: same rows, judge off the critical path,
failures stop one conversation, Ctrl-C leaves a resumable run, and every role's prompt is append-only."""

import json
import os
import signal
import threading
import time
import zlib

import pytest

from aloe_bench.core.backends import GenerationConfig
from aloe_bench.core.judge import Judge, JudgeConfig
from aloe_bench.core.simulator import UserSimulator
from aloe_bench.harness import EvalConfig, evaluate_model
from aloe_bench.harness.protocol import resolve_run
from aloe_bench.harness.runner import EvalRoles
from aloe_bench.testing.backends import ScriptedBackend
from fakes import assert_append_only

KEYS = ("persona_id", "turn", "user_message", "reply", "score", "judge_raw", "judge_error", "judge_attempts", "error")


def user_fn(messages, config):
    turn = sum(1 for m in messages if m["role"] == "assistant") + 1
    return f"user turn {turn} of persona {zlib.crc32(messages[0]['content'].encode())} seed {config.seed}"


def reply_fn(messages, config):
    return f"reply {len(messages)} to: {messages[-1]['content'][:30]}"


def judge_fn(messages, config):
    text = messages[-1]["content"]
    return str(1 + sum(map(ord, text)) % 5)  # a score that depends on what was judged


def make_roles(user=user_fn, reply=reply_fn, judge=judge_fn, backend=ScriptedBackend, scoring="text"):
    model, users, judges = backend(fn=reply), backend(fn=user), backend(fn=judge, options={"4": 0.5, "2": 0.5})
    roles = EvalRoles(model, UserSimulator(users, GenerationConfig(16, 0.7, seed=3)),
                  Judge(judges, JudgeConfig("paper", scoring, max_retries=1)), GenerationConfig(16), None)
    return roles, model, users, judges


def config(out, upstream_dir, **kw):
    values = dict(personas=str(upstream_dir), max_personas=4, turns=3, output_dir=str(out), bootstrap_resamples=50,
                  progress=False)
    return resolve_run(EvalConfig(**{**values, **kw}))


def rows_of(results, out):
    rows = [json.loads(l) for l in (out / results["files"]["samples"]).read_text().splitlines()]
    return sorted(tuple(r[k] for k in KEYS) for r in rows)


def test_free_lockstep_and_sequential_give_the_same_rows_and_scores(tmp_path, upstream_dir):
    outcomes = {}
    for schedule in ("free", "lockstep", "sequential"):
        roles, model, _, _ = make_roles()
        results = evaluate_model(config(tmp_path / schedule, upstream_dir, schedule=schedule), roles=roles)
        outcomes[schedule] = (rows_of(results, tmp_path / schedule), results["metrics"], results["fingerprint"])
        if schedule == "free":
            assert {len(batch) for batch, _ in model.calls} == {1}  # single requests, one task per conversation
    assert outcomes["free"][0] == outcomes["lockstep"][0] == outcomes["sequential"][0]
    assert len(outcomes["free"][0]) == 12 and len({r[4] for r in outcomes["free"][0]}) > 1  # scores vary
    assert outcomes["free"][1] == outcomes["lockstep"][1] == outcomes["sequential"][1]
    assert outcomes["free"][2] == outcomes["lockstep"][2]  # the schedule is not part of the run's identity


class SlowBackend(ScriptedBackend):
    """Sleeps per call and records (start, end, first message) of every call."""

    delay = 0.0

    def __init__(self, **kw):
        super().__init__(**kw)
        self.spans = []

    def _generate_batch(self, conversations, config):
        start = time.monotonic()
        time.sleep(self.delay)
        self.spans.append((start, time.monotonic(), conversations[0]))
        return super()._generate_batch(conversations, config)


def test_free_keeps_the_judge_off_the_critical_path(tmp_path, upstream_dir):
    class User(SlowBackend):
        delay = 0.15

    class Judge_(SlowBackend):
        delay = 0.6

    model = ScriptedBackend(fn=reply_fn)
    users, judges = User(fn=user_fn), Judge_(fn=judge_fn)
    roles = EvalRoles(model, UserSimulator(users, GenerationConfig(16, 0.7)),
                  Judge(judges, JudgeConfig("paper", "text", max_retries=0)), GenerationConfig(16), None)
    began = time.monotonic()
    results = evaluate_model(config(tmp_path, upstream_dir, max_personas=2, turns=3, cache=False), roles=roles)
    wall = time.monotonic() - began
    assert results["counts"]["scored"] == 6
    # one conversation's chain is 3 user messages (0.45 s) + the last judge (0.6 s); waiting for each judge
    # before the next user message would take 3 x 0.75 s
    assert wall < 1.7, wall
    first_judge_end = min(end for _, end, _ in judges.spans)
    assert sum(1 for start, _, _ in users.spans if start < first_judge_end) >= 3  # turn 2 began before any verdict


def test_a_failing_conversation_stops_alone_under_free(tmp_path):
    personas = tmp_path / "personas.jsonl"
    personas.write_text("\n".join(json.dumps({"id": pid, "profile": f"P {pid}", "personality": "calm"})
                                  for pid in ("a", "bad", "c")) + "\n")

    def reply(messages, config):
        if "P bad" in json.dumps(messages) or "'P bad" in messages[0]["content"]:
            return RuntimeError("HTTP 500 from the endpoint")
        return reply_fn(messages, config)

    def user(messages, config):
        return f"user turn {sum(m['role'] == 'assistant' for m in messages) + 1} {messages[0]['content'][:400]}"

    roles, model, _, _ = make_roles(user=user, reply=reply)
    cfg = EvalConfig(personas=str(personas), turns=3, output_dir=str(tmp_path / "run"), progress=False,
                     bootstrap_resamples=50)
    results = evaluate_model(resolve_run(cfg), roles=roles)
    rows = rows_of(results, tmp_path / "run")
    bad = [r for r in rows if r[0] == "bad"]
    assert len(bad) == 1 and bad[0][1] == 1 and "model: HTTP 500" in bad[0][-1]
    assert sorted((r[0], r[1]) for r in rows if r[0] != "bad") == [("a", 1), ("a", 2), ("a", 3),
                                                                    ("c", 1), ("c", 2), ("c", 3)]
    assert results["counts"]["generation_failures"] == 1 and results["counts"]["stopped_conversations"] == 1


def test_a_conversation_that_raises_lets_the_others_finish_then_raises(tmp_path, upstream_dir):
    def reply(messages, config):
        if "turn 2" in messages[-1]["content"] and "persona001" not in messages[-1]["content"] and \
                len([m for m in messages if m["role"] == "user"]) == 2 and reply.boom:
            reply.boom = False
            raise ValueError("a bug in one request")
        return reply_fn(messages, config)

    reply.boom = True
    roles, _, _, _ = make_roles(reply=reply)
    out = tmp_path / "run"
    with pytest.raises(ValueError, match="a bug in one request"):
        evaluate_model(config(out, upstream_dir), roles=roles)
    rows = [json.loads(l) for l in next(out.rglob("samples_*.jsonl")).read_text().splitlines()]
    per_persona = {}
    for r in rows:
        per_persona.setdefault(r["persona_id"], []).append(r["turn"])
    assert sorted(len(t) for t in per_persona.values()) == [1, 3, 3, 3]  # three finished, one stopped after turn 1
    assert all(t == sorted(t) for t in per_persona.values())


def test_ctrl_c_leaves_a_resumable_run_equal_to_an_uninterrupted_one(tmp_path, upstream_dir):
    full, _, _, _ = make_roles()
    reference = evaluate_model(config(tmp_path / "full", upstream_dir), roles=full)
    expected = rows_of(reference, tmp_path / "full")

    calls = {"n": 0}

    def reply(messages, config):
        calls["n"] += 1
        if calls["n"] == 6:  # mid-run: some turns judged, others in flight
            threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT)).start()
            time.sleep(0.3)
        return reply_fn(messages, config)

    roles, _, _, _ = make_roles(reply=reply)
    out = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        evaluate_model(config(out, upstream_dir), roles=roles)
    partial = [json.loads(l) for l in next(out.rglob("samples_*.jsonl")).read_text().splitlines()]
    assert 0 < len(partial) < 12
    again, model, _, _ = make_roles()
    results = evaluate_model(config(out, upstream_dir), roles=again)
    assert rows_of(results, out) == expected
    assert results["metrics"] == reference["metrics"]
    again_rows = [json.loads(l) for l in (out / results["files"]["samples"]).read_text().splitlines()]
    assert again_rows[:len(partial)] == partial  # what was written before the interrupt is kept, not redone


def conversation_chains(users, model) -> dict[str, list[list[list[dict]]]]:
    """Each conversation's requests, turn by turn, of the role-play user and of the evaluated model."""

    def by_conversation(backend, key):
        groups = {}
        for batch, _ in backend.calls:
            for messages in batch:
                groups.setdefault(key(messages), []).append(messages)
        return list(groups.values())

    return {"user": by_conversation(users, lambda m: m[0]["content"]),
            "model": by_conversation(model, lambda m: m[0]["content"].split(" seed ")[0])}


@pytest.mark.parametrize("schedule", ["free", "lockstep"])
@pytest.mark.parametrize("preset", ["paper", "robust"])
def test_every_role_prompt_is_append_only_across_turns(tmp_path, upstream_dir, preset, schedule):
    """User simulator and evaluated model: turn k's messages start with turn k-1's messages (prefix caching
    reuses them). The judge is not conversation-shaped by design (one request per reply): its fixed part, the
    system message and the persona (and for `robust` the history up to the previous turn), leads every request."""
    roles, model, users, judges = make_roles()
    roles.judge = Judge(judges, JudgeConfig(preset, "text", max_retries=0))
    evaluate_model(config(tmp_path, upstream_dir, max_personas=3, turns=4, cache=False, schedule=schedule),
                   roles=roles)

    for role, chains in conversation_chains(users, model).items():
        assert len(chains) == 3, role
        for requests in chains:
            assert len(requests) == 4, role
            assert_append_only(requests, role)

    prompt = roles.judge.prompt
    judged = [m for batch, _ in judges.calls for m in batch]
    assert len(judged) == 12 and all(m[0]["content"] == prompt["system"] for m in judged)
    head_end = "{message}" if preset == "paper" else "{history}"
    assert "{profile}" in prompt["user"].split(head_end)[0] and "{personality}" in prompt["user"].split(head_end)[0]
    lead_in = prompt["user"].split(head_end)[0].rsplit("}", 1)[1]  # the fixed text just before the placeholder
    groups = {}
    for messages in judged:  # the head: the rendered text up to the message (paper) or the history (robust)
        text = messages[1]["content"]
        groups.setdefault(text[:text.index(lead_in) + len(lead_in)], []).append(text)
    assert sorted(len(texts) for texts in groups.values()) == [4, 4, 4]  # one fixed head per conversation
    if preset == "robust":
        separator = prompt["user"].split("{history}")[1].split("{message}")[0]
        assert "{" not in separator
        for texts in groups.values():
            texts.sort(key=lambda t: t.count("user turn "))
            for k, (before, after) in enumerate(zip(texts, texts[1:]), start=1):
                if k == 1:
                    continue  # turn 1 has no history
                history_end = before.index(f"user turn {k} of") - len(separator)
                assert after.startswith(before[:history_end])  # the history grows at its end


@pytest.mark.slow
def test_conversation_roles_are_token_prefixes_under_the_embedded_chat_template(tmp_path, upstream_dir,
                                                                                embedded_model_dir):
    """What a local model is given: the role-play user's and the evaluated model's turn-k prompts, rendered with
    the embedded model's chat template (generation prompt included), start with turn k-1's, text and tokens."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(embedded_model_dir)
    roles, model, users, _ = make_roles()
    evaluate_model(config(tmp_path, upstream_dir, max_personas=2, turns=3, cache=False), roles=roles)
    for role, chains in conversation_chains(users, model).items():
        assert len(chains) == 2 and all(len(c) == 3 for c in chains), role
        for requests in chains:
            assert_append_only(requests, role, tokenizer)
