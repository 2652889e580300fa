"""Hardening against a hostile network: a fault-injecting proxy in front of a real `transformers serve`.

The slow tests run `aloe eval` and `aloe generate` (all roles `openai:`) through the proxy and check that they
finish, that every kind of fault was injected and survived, and that what still failed is recorded (never
turned into text or a score); then they SIGKILL `aloe eval` mid-run, re-run it, and compare with an
uninterrupted run. The fast tests check the proxy's plan, the backend's own retry layer (against a tiny
scripted upstream) and the torn-tail handling of both append-only logs.

Determinism: every model call is greedy (user simulator included, `--user_temperature 0`), the judge does not
re-sample (`--judge_max_retries 0`), and `transformers serve` runs without continuous batching, one request at
a time, so the same request gives the same answer in every run. The uninterrupted and the killed runs have
separate output folders (no shared request cache), so their equality is a real check of the resume, not of a
cache replay.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from aloe_bench.testing.fault_proxy import FAULT_KINDS, FaultPlan, FaultProxy, parse_rates
from fakes import chat_server_thread

# One of each fault among the first numbered requests, then a few more at random (no random timeouts: each
# costs a client timeout of wall time).
SCHEDULE = ("timeout", "rate_limit", None, "server_error", "cut_stream", None, "malformed_json", "empty_content")
RANDOM = "rate_limit=0.03,server_error=0.03,cut_stream=0.03,malformed_json=0.03,empty_content=0.03"
INJECTED_TEXT = "This answer never arrives whole."  # the text inside the proxy's malformed bodies


def _plan(schedule=SCHEDULE, poison=(), seed=0, hang_s=45.0):
    return FaultPlan(parse_rates(RANDOM), seed=seed, hang_s=hang_s, schedule=schedule, poison=poison)


def _assert_accounting(stats: dict, backends) -> None:
    """A request counts as failed only if every attempt of it met a fault (or the client stopped waiting before the
    server answered: "client_gone"); a success always came from an attempt that got the server's real answer."""
    failed = set().union(*(b.stats.failed_request_ids for b in backends))
    for request_id, attempts in stats["attempts_by_request_id"].items():
        if request_id in failed:
            assert all(attempts), f"{request_id} was recorded as failed but an attempt passed: {attempts}"
        else:
            assert attempts[-1] is None, f"{request_id} succeeded on a faulted attempt: {attempts}"


# ---------------------------------------------------------------------------------------------------
# Fast: the plan, the backend's retry layer against a scripted upstream, torn tails
# ---------------------------------------------------------------------------------------------------
def test_plan_is_deterministic_and_validated():
    plan = FaultPlan(parse_rates("all=0.1"), seed=3)
    first = [plan.decide(i) for i in range(200)]
    assert first == [FaultPlan(parse_rates("all=0.1"), seed=3).decide(i) for i in range(200)]
    assert first != [FaultPlan(parse_rates("all=0.1"), seed=4).decide(i) for i in range(200)]
    assert set(first) == {None, *FAULT_KINDS}
    assert 0.4 < sum(k is not None for k in first) / 200 < 0.8
    scheduled = FaultPlan(schedule=("timeout", None), poison=(("BAD", "empty_content"),))
    assert [scheduled.decide(i) for i in range(3)] == ["timeout", None, None]
    assert scheduled.poisoned(b'{"x": "a BAD one"}') == "empty_content" and scheduled.poisoned(b"{}") is None
    with pytest.raises(ValueError, match="unknown fault kind"):
        parse_rates("teapot=0.1")
    with pytest.raises(ValueError, match="sum to at most 1"):
        FaultPlan(parse_rates("all=0.2"))


class _ScriptedUpstream:
    """A tiny OpenAI-style server: answers every chat completion with `text` (streamed when asked)."""

    def __init__(self, text="A real answer."):
        self.text = text
        self.calls = 0

    def __enter__(self):
        from aiohttp import web

        async def chat(request):
            body = await request.json()
            self.calls += 1
            if body.get("stream"):
                response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
                await response.prepare(request)
                for piece, finish in ((self.text[:6], None), (self.text[6:], None), ("", "stop")):
                    chunk = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": body["model"],
                             "choices": [{"index": 0, "delta": {"content": piece} if piece else {},
                                          "finish_reason": finish}]}
                    await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
                await response.write(b"data: [DONE]\n\n")
                return response
            return web.json_response({
                "id": "c", "object": "chat.completion", "created": 0, "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": self.text},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}})

        self._server = chat_server_thread(chat)
        self.url = self._server.__enter__()
        return self

    def __exit__(self, *exc):
        self._server.__exit__(*exc)


def _backend(base_url, **options):
    from aloe_bench.core.backends.openai_backend import OpenAIBackend
    from aloe_bench.core.specs import ModelSpec

    options = {"request_max_retries": 3, "request_timeout_s": 2.0, "retry_backoff_s": 0.01, **options}
    return OpenAIBackend(ModelSpec.parse("openai:m", base_url=base_url), **options)


def test_malformed_and_empty_answers_are_retried_then_recorded_not_invented():
    from aloe_bench.core.backends import GenerationConfig

    hi = [[{"role": "user", "content": "hi"}]]
    config = GenerationConfig(max_new_tokens=8)
    with _ScriptedUpstream() as upstream:
        plan = FaultPlan(schedule=("malformed_json", "empty_content", "server_error", "cut_stream"))
        with FaultProxy(upstream.url, plan) as proxy:
            backend = _backend(proxy.base_url)
            (reply,) = backend.generate(hi, config)
            stats = proxy.stats()
        assert reply.ok and reply.text == "A real answer." and reply.tokens == 4
        assert stats["faults"] == {"timeout": 0, "rate_limit": 0, "server_error": 1, "cut_stream": 1,
                                   "malformed_json": 1, "empty_content": 1}
        assert backend.stats.to_dict()["retries"] == {"malformed_json": 1, "empty_content": 1}
        assert list(stats["attempts_by_request_id"].values()) == [
            ["malformed_json", "empty_content", "server_error", "cut_stream", None]]
        _assert_accounting(stats, [backend])

        for kind in ("malformed_json", "empty_content"):  # always broken: a recorded failure, never text
            with FaultProxy(upstream.url, FaultPlan(poison=(("hi", kind),))) as proxy:
                backend = _backend(proxy.base_url, request_max_retries=2)
                (reply,) = backend.generate(hi, config)
                (scores,) = backend.score_options(hi, ["1", "2"])
                stats = proxy.stats()
            assert reply.text is None and not reply.ok and "(after 3 attempts)" in reply.error
            assert ("empty content" if kind == "empty_content" else "malformed response") in reply.error
            assert scores.error and not scores.probs
            assert backend.stats.failed == 2 and stats["requests"] == 6
            _assert_accounting(stats, [backend])


def test_stream_cut_malformed_or_empty_is_asked_again_and_ends_whole():
    from aloe_bench.core.backends import BackendError, GenerationConfig

    with _ScriptedUpstream() as upstream:
        with FaultProxy(upstream.url, FaultPlan(schedule=("cut_stream", "malformed_json", "empty_content"))) as proxy:
            backend = _backend(proxy.base_url)
            pieces = list(backend.stream([{"role": "user", "content": "hi"}], GenerationConfig(8)))
        assert pieces[-1] == "A real answer."
        assert backend.stats.to_dict()["retries"] == {"cut_stream": 1, "malformed_json": 1, "empty_content": 1}
        with FaultProxy(upstream.url, FaultPlan(poison=(("hi", "cut_stream"),))) as proxy:
            backend = _backend(proxy.base_url, request_max_retries=1)
            with pytest.raises(BackendError, match="cut_stream|stream cut off|finish_reason"):
                list(backend.stream([{"role": "user", "content": "hi"}], GenerationConfig(8)))


def test_torn_tails_are_dropped_not_glued(tmp_path):
    from aloe_bench.harness.results import RunFiles
    from aloe_bench.training.generated_files import load_finished

    files = RunFiles(tmp_path / "eval", "f" * 16, "m")
    files.append_samples([{"persona_id": "a", "turn": 1}])
    with open(files.samples_path, "a") as fh:  # a kill between a row and its newline
        fh.write(json.dumps({"persona_id": "a", "turn": 2}))
    assert files.load_samples() == [{"persona_id": "a", "turn": 1}]
    files.append_samples([{"persona_id": "a", "turn": 2}])
    assert [r["turn"] for r in files.load_samples()] == [1, 2]

    path = tmp_path / "conversations.jsonl"
    path.write_text(json.dumps({"id": "conv-00001", "turns": []}) + "\n" + '{"id": "conv-00002", "tu')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert list(load_finished(path)) == ["conv-00001"]
    assert any("torn last line" in str(w.message) for w in caught)
    assert path.read_text().endswith("\n")


# ---------------------------------------------------------------------------------------------------
# Slow: the real server behind the proxy
# ---------------------------------------------------------------------------------------------------
def _eval_personas(n=3):
    from aloe_bench.core.personas import load_persona_set

    return list(load_persona_set("default", 5).subset(n))


# The evaluation every slow eval test uses: 3 personas x 2 turns, all roles greedy through the proxy; the third
# persona's requests always get a 500 (a failure that must be recorded, and recorded the same way after a kill).
EVAL_SETTINGS = dict(protocol="smoke", judge_scoring="text", judge_max_retries=0, max_personas=3, turns=2,
                     reply_max_new_tokens=16,
                     user_max_new_tokens=16, user_temperature=0.0, seed=0, bootstrap_resamples=50)


def _poison():
    personas = _eval_personas()
    marker = personas[2].personality[:30]
    assert all(marker not in p.personality and marker not in p.profile for p in personas[:2])
    return ((marker, "server_error"),)


@pytest.fixture(scope="module")
def faulted_eval(server, tmp_path_factory):
    """`evaluate_model` in process through the proxy, every fault kind (one timeout: client timeout 30 s)."""
    from aloe_bench.harness import EvalConfig, evaluate_model
    from aloe_bench.harness.runner import build_roles

    out = tmp_path_factory.mktemp("faulted-eval")
    spec = f"openai:{server['model']}"
    with FaultProxy(server["url"], _plan(poison=_poison())) as proxy:
        cfg = EvalConfig(model=spec, base_url=proxy.base_url, user_model=spec, user_base_url=proxy.base_url,
                         judge_model=spec, judge_base_url=proxy.base_url, max_concurrency=1, output_dir=str(out),
                         progress=False, **EVAL_SETTINGS)
        roles = build_roles(cfg, request_timeout_s=30.0, request_max_retries=3)
        results = evaluate_model(cfg, roles)
        stats = proxy.stats()
    return {"dir": out, "results": results, "stats": stats, "roles": roles}


@pytest.mark.slow
def test_eval_through_faults_finishes_and_records_what_failed(faulted_eval):
    from aloe_bench.bench.faults import check_rows

    personas, stats, results, roles = _eval_personas(), faulted_eval["stats"], faulted_eval["results"], \
        faulted_eval["roles"]
    backend = roles.model
    assert roles.user.backend is backend and roles.judge.backend is backend  # one server, one backend

    assert all(stats["faults"][kind] > 0 for kind in FAULT_KINDS), stats["faults"]
    assert stats["poisoned"] >= 3  # the simulator asked 3 times (its own retries), each after the client's
    _assert_accounting(stats, [backend])

    rows = _rows(faulted_eval["dir"])
    check = check_rows(rows, [p.id for p in personas], turns=2)
    assert check["duplicate_rows"] == check["missing_rows"] == check["rows_after_a_stop"] == 0, check
    (poisoned,) = [r for r in rows if r["persona_id"] == personas[2].id]
    assert poisoned["turn"] == 1 and poisoned["error"].startswith("user simulator: InternalServerError")
    assert poisoned["user_message"] is None and poisoned["reply"] is None and poisoned["score"] is None
    counts = results["counts"]
    assert counts["generation_failures"] == sum(1 for r in rows if r["error"]) >= 1
    assert counts["stopped_conversations"] == sum(1 for r in rows if r["error"])
    assert counts["scored"] + counts["judge_failures"] + counts["generation_failures"] == counts["rows"] == len(rows)
    for row in rows:
        if row["error"] is None:
            assert row["user_message"].strip() and row["reply"].strip()
            assert INJECTED_TEXT not in row["user_message"] + row["reply"]
            assert (row["score"] is None) == (row["judge_error"] is not None)
    assert backend.stats.failed >= 3 and backend.stats.succeeded > 0


def _eval_command(server, proxy, output_dir):
    spec = f"openai:{server['model']}"
    args = ["--model", spec, "--base_url", proxy.base_url, "--user_model", spec, "--user_base_url", proxy.base_url,
            "--judge_model", spec, "--judge_base_url", proxy.base_url, "--max_concurrency", "4",
            "--progress", "false", "--output_dir", str(output_dir)]
    for key, value in EVAL_SETTINGS.items():
        args += [f"--{key}", str(value)]
    return [sys.executable, "-m", "aloe_bench.commands.main", "eval", *args]


def _rows(folder: Path) -> list[dict]:
    (samples,) = folder.rglob("samples_*.jsonl")  # OUTPUT_DIR/<model>/, as lm-eval
    return [json.loads(line) for line in samples.read_text().splitlines()]


def _results(folder: Path) -> dict:
    (path,) = folder.rglob("results_*.json")
    return json.loads(path.read_text())


@pytest.mark.slow
def test_sigkill_mid_eval_then_rerun_equals_an_uninterrupted_run(server, faulted_eval, tmp_path):
    """`aloe eval` in a subprocess, through the proxy (other faults, another seed, its own empty cache), is
    SIGKILLed once its first rows are on disk and run again: the result equals the uninterrupted run's."""
    from aloe_bench.bench.faults import check_rows

    schedule = tuple(k for k in SCHEDULE if k != "timeout")  # the CLI keeps the default 120 s client timeout
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    whole, killed = faulted_eval["dir"], tmp_path / "killed"
    with FaultProxy(server["url"], _plan(schedule, _poison(), seed=1)) as proxy:
        proc = subprocess.Popen(_eval_command(server, proxy, killed), env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            samples = list(killed.rglob("samples_*.jsonl"))
            if samples and samples[0].read_bytes().count(b"\n") >= 1:
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the run ended (or never wrote a row) before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        rows_at_kill = len(_rows(killed))
        assert 0 < rows_at_kill < len(_rows(whole)) and not list(killed.rglob("results_*.json"))
        again = subprocess.run(_eval_command(server, proxy, killed), env=env, capture_output=True, text=True,
                               timeout=400)
        assert again.returncode == 0, again.stderr[-3000:]
        assert proxy.stats()["faults_total"] > 0

    personas = _eval_personas()
    fields = ("user_message", "reply", "score", "error", "judge_raw", "judge_error")
    by_key = {}
    for name, folder in (("whole", whole), ("killed", killed)):
        rows = _rows(folder)
        check = check_rows(rows, [p.id for p in personas], turns=2)
        assert check["duplicate_rows"] == check["missing_rows"] == check["rows_after_a_stop"] == 0, (name, check)
        by_key[name] = {(r["persona_id"], r["turn"]): tuple(r[f] for f in fields) for r in rows}
    assert by_key["killed"] == by_key["whole"]
    a, b = _results(whole), _results(killed)
    assert a["metrics"] == b["metrics"]
    assert a["counts"] == b["counts"] and a["counts"]["generation_failures"] == 1


# The generation every slow generate test uses: 2 conversations x 2 turns, greedy, no re-sampling retries
# (`max_retries` 0), so that a re-run gives the same conversations; the first conversation's role-play user
# always answers empty (a failure that must be recorded).
GENERATE_SETTINGS = dict(n_conversations=2, turns=2, judge_scoring="text", induction_parse="lenient", max_retries=0,
                         user_max_new_tokens=12, induction_max_new_tokens=12, reply_max_new_tokens=12,
                         judge_max_new_tokens=12, user_temperature=0.0, seed=0)
GENERATE_ROLES = ("user", "induction", "preferred", "rejected", "judge")


def _generate_poison():
    from aloe_bench.training.generate_config import GenerateConfig
    from aloe_bench.training.persona_pairs import persona_pairs

    pairs = persona_pairs(GenerateConfig(**GENERATE_SETTINGS))
    marker = pairs[0].profile[:30]
    assert marker not in pairs[1].profile
    return pairs, ((marker, "empty_content"),)


@pytest.fixture(scope="module")
def faulted_generate(server, tmp_path_factory):
    """`generate_conversations` in process through the proxy (every fault kind but timeouts: the eval covers them)."""
    from aloe_bench.training.generate import build_backends, generate_conversations
    from aloe_bench.training.generate_config import GenerateConfig

    out = tmp_path_factory.mktemp("faulted-generate")
    spec = f"openai:{server['model']}"
    schedule = tuple(k for k in SCHEDULE if k != "timeout")
    with FaultProxy(server["url"], _plan(schedule, poison=_generate_poison()[1])) as proxy:
        cfg = GenerateConfig(base_url=proxy.base_url, output_dir=str(out), group_size=2, progress=False,
                             **{f"{role}_model": spec for role in GENERATE_ROLES}, **GENERATE_SETTINGS)
        backends = build_backends(cfg, request_timeout_s=60.0, request_max_retries=4)  # 4: the CLI's default, same error texts
        counts = generate_conversations(cfg, backends)
        stats = proxy.stats()
    return {"dir": out, "counts": counts, "stats": stats, "backends": set(backends.values())}


def _records(folder: Path) -> dict[str, dict]:
    lines = (folder / "conversations.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == len({r["id"] for r in records}), "a conversation was recorded twice"
    return {r["id"]: r for r in records}


@pytest.mark.slow
def test_generate_through_faults_finishes_and_records_what_failed(faulted_generate):
    stats, counts = faulted_generate["stats"], faulted_generate["counts"]
    assert all(stats["faults"][kind] > 0 for kind in FAULT_KINDS if kind != "timeout"), stats["faults"]
    _assert_accounting(stats, faulted_generate["backends"])

    pairs, _ = _generate_poison()
    records = _records(faulted_generate["dir"])
    assert sorted(records) == ["conv-00001", "conv-00002"]  # nothing dropped
    bad, good = records["conv-00001"], records["conv-00002"]
    assert bad["persona_id"] == pairs[0].id and bad["turns"] == []
    assert bad["error"] == "turn 1: user simulator: empty content (after 5 attempts)"
    assert good["error"] is None and [t["turn"] for t in good["turns"]] == [1, 2]
    for turn in good["turns"]:
        texts = (turn["user_message"], turn["preferred"], turn["rejected"])
        assert all(t.strip() and INJECTED_TEXT not in t for t in texts)
        assert (turn["judge_choice"] is None) == (turn["error"] is not None)  # an unparsable judge is recorded
    assert counts["conversations"] == 2 and counts["failed_conversations"] == 1
    assert counts["judge_failures"] == sum(t["judge_choice"] is None for t in good["turns"])


@pytest.mark.slow
def test_sigkill_mid_generate_then_rerun_equals_an_uninterrupted_run(server, faulted_generate, tmp_path):
    """`aloe generate` in a subprocess (one conversation at a time, its own empty cache, other faults) is SIGKILLed
    once the first conversation is recorded, then run again: the same conversations, each exactly once."""
    spec = f"openai:{server['model']}"
    schedule = tuple(k for k in SCHEDULE if k != "timeout")
    killed = tmp_path / "killed"
    with FaultProxy(server["url"], _plan(schedule, poison=_generate_poison()[1], seed=1)) as proxy:
        args = ["--output_dir", str(killed), "--base_url", proxy.base_url, "--group_size", "1", "--schedule", "lockstep",
                "--progress", "false"]
        args += [a for role in GENERATE_ROLES for a in (f"--{role}_model", spec)]
        args += [a for key, value in GENERATE_SETTINGS.items() for a in (f"--{key}", str(value))]
        command = [sys.executable, "-m", "aloe_bench.commands.main", "generate", *args]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        path, deadline = killed / "conversations.jsonl", time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            if path.exists() and path.read_bytes().count(b"\n") >= 1:
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the run ended (or never recorded a conversation) before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert len(_records(killed)) == 1
        again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=400)
        assert again.returncode == 0, again.stderr[-3000:]
        assert proxy.stats()["faults_total"] > 0
    whole, resumed = _records(faulted_generate["dir"]), _records(killed)
    assert sorted(resumed) == sorted(whole) == ["conv-00001", "conv-00002"]
    for conv_id in whole:
        for key in ("persona_id", "error", "turns", "seed"):
            assert resumed[conv_id][key] == whole[conv_id][key], (conv_id, key)
    assert json.loads(again.stdout)["conversations"] == 2
