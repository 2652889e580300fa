"""Engine seams without a GPU: the vLLM backend's call mapping (fake `vllm` module) and judge/simulation overlap."""

import sys
import threading
import time
import types

import pytest

from aloe_bench.core.backends import GenerationConfig, load_backend
from aloe_bench.core.judge import Judge, JudgeConfig
from aloe_bench.core.simulator import UserSimulator
from aloe_bench.core.specs import ModelSpec
from aloe_bench.harness import EvalConfig, evaluate_model
from aloe_bench.harness.runner import Roles
from fakes import ScriptedBackend


class FakeLLM:
    calls = []

    def __init__(self, **kwargs):
        self.kwargs = kwargs

    def get_tokenizer(self):
        return types.SimpleNamespace(chat_template="{{ messages }}")

    def chat(self, conversations, params, use_tqdm=False):
        FakeLLM.calls.append((conversations, params))
        out = []
        for i, _ in enumerate(conversations):
            if params.logprobs:
                top = {1: types.SimpleNamespace(decoded_token="4", logprob=-0.1),
                       2: types.SimpleNamespace(decoded_token="x", logprob=-3.0)}
                out.append(types.SimpleNamespace(outputs=[types.SimpleNamespace(text="4", token_ids=[1], logprobs=[top])]))
            else:
                out.append(types.SimpleNamespace(outputs=[types.SimpleNamespace(text=f" reply {i} ", token_ids=[1, 2, 3],
                                                                                logprobs=None)]))
        return out


class FakeSamplingParams:
    def __init__(self, max_tokens, temperature, top_p, seed, logprobs=None):
        self.max_tokens, self.temperature, self.top_p, self.seed, self.logprobs = (
            max_tokens, temperature, top_p, seed, logprobs)


def test_vllm_backend_maps_batches_to_one_chat_call(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=FakeLLM, SamplingParams=FakeSamplingParams))
    (tmp_path / "config.json").write_text("{}")
    backend = load_backend(ModelSpec.parse(str(tmp_path), engine="vllm"), max_context=2048)
    replies = backend.generate([[{"role": "user", "content": "a"}], [{"role": "user", "content": "b"}]],
                               GenerationConfig(max_new_tokens=7, temperature=0.5, seed=3))
    assert [r.text for r in replies] == ["reply 0", "reply 1"] and replies[0].tokens == 3
    conversations, params = FakeLLM.calls[-1]
    assert len(conversations) == 2 and (params.max_tokens, params.temperature, params.seed) == (7, 0.5, 3)
    (scores,) = backend.score_options([[{"role": "user", "content": "rate"}]], ["1", "2", "3", "4", "5"])
    assert scores.probs["4"] == pytest.approx(1.0) and scores.error is None


class TimedBackend(ScriptedBackend):
    is_remote = True

    def __init__(self, delay, **kw):
        super().__init__(**kw)
        self.delay, self.spans = delay, []

    def _generate_batch(self, conversations, config):
        start = time.monotonic()
        time.sleep(self.delay)
        out = super()._generate_batch(conversations, config)
        self.spans.append((start, time.monotonic(), threading.current_thread().name))
        return out


def test_remote_judging_overlaps_the_next_turn(tmp_path, upstream_dir):
    users = TimedBackend(0.3, fn=lambda m, c: "hello there")
    model = TimedBackend(0.3, fn=lambda m, c: "hi back")
    judge = TimedBackend(0.5, answers=["3"])
    roles = Roles(model, UserSimulator(users, GenerationConfig(8)), Judge(judge, JudgeConfig("paper", "text")),
                  GenerationConfig(8), None)
    cfg = EvalConfig(personas=str(upstream_dir), max_personas=2, turns=2, output_dir=str(tmp_path), cache=False,
                     progress=False, bootstrap_resamples=20)
    results = evaluate_model(cfg, roles=roles)
    assert results["counts"]["scored"] == 4
    judge_turn1, user_turn2 = judge.spans[0], users.spans[1]
    assert judge_turn1[2] != user_turn2[2]  # judged on the worker thread
    assert judge_turn1[0] < user_turn2[1] and user_turn2[0] < judge_turn1[1]  # the intervals overlap
