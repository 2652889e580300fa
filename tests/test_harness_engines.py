"""Engine seams without a GPU: judge/simulation overlap (the vLLM engine seam is in test_core_backends_async.py)."""

import threading
import time


from aloe_bench.core.backends import GenerationConfig
from aloe_bench.core.judge import Judge, JudgeConfig
from aloe_bench.core.simulator import UserSimulator
from aloe_bench.harness import EvalConfig, evaluate_model
from aloe_bench.harness.protocol import resolve_run
from aloe_bench.harness.runner import EvalRoles
from aloe_bench.testing.backends import ScriptedBackend


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
    roles = EvalRoles(model, UserSimulator(users, GenerationConfig(8)), Judge(judge, JudgeConfig("paper", "text")),
                  GenerationConfig(8), None)
    cfg = EvalConfig(personas=str(upstream_dir), max_personas=2, turns=2, output_dir=str(tmp_path), cache=False,
                     progress=False, bootstrap_resamples=20, schedule="lockstep")
    results = evaluate_model(resolve_run(cfg), roles=roles)
    assert results["counts"]["scored"] == 4
    judge_turn1, user_turn2 = judge.spans[0], users.spans[1]
    assert judge_turn1[2] != user_turn2[2]  # judged on the worker thread
    assert judge_turn1[0] < user_turn2[1] and user_turn2[0] < judge_turn1[1]  # the intervals overlap
