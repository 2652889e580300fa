"""`aloe bench eval` wiring and the per-role profile it reports, on scripted backends (no model)."""

from aloe_bench.core.backends import GenerationConfig
from aloe_bench.core.backends.profiled import ProfiledBackend
from aloe_bench.core.judge import Judge, JudgeConfig
from aloe_bench.core.simulator import UserSimulator
from aloe_bench.bench import eval_loop as bench
from aloe_bench.harness.runner import EvalRoles
from aloe_bench.testing.backends import ScriptedBackend


class Tokenising(ScriptedBackend):
    """A scripted backend that can count prompt tokens the way TransformersBackend does (one per word)."""

    def encode_prompt(self, messages, reserve):
        return " ".join(m["content"] for m in messages).split()


def test_profiled_backend_counts_without_changing_results():
    inner = Tokenising(fn=lambda m, c: "one two three")
    wrapped = ProfiledBackend(inner)
    out = wrapped.generate([[{"role": "user", "content": "a b"}], [{"role": "user", "content": "c"}]],
                           GenerationConfig(8))
    assert [c.text for c in out] == ["one two three"] * 2
    wrapped.score_options([[{"role": "user", "content": "x y z"}]], ["1", "2"])
    p = wrapped.profile
    assert (p.calls, p.requests, p.prompt_tokens, p.generated_tokens) == (2, 3, 6, 6)
    assert p.seconds >= 0 and wrapped.model_id == inner.model_id


def test_profile_prompt_tokens_unknown_for_backends_that_cannot_count():
    wrapped = ProfiledBackend(ScriptedBackend(["hi"]))
    wrapped.generate([[{"role": "user", "content": "a"}]], GenerationConfig(8))
    assert wrapped.profile.prompt_tokens is None and wrapped.profile.generated_tokens == 1


def test_bench_eval_runs_both_loops_and_reports_roles(monkeypatch):
    made = []

    def fake_roles(run):
        model = Tokenising(fn=lambda m, c: "a reply of five words")
        users = Tokenising(fn=lambda m, c: "hello there")
        judge = Tokenising(["4"])
        made.append(run.config.schedule == "lockstep")
        return EvalRoles(model, UserSimulator(users, GenerationConfig(8)),
                     Judge(judge, JudgeConfig("paper", "text", max_retries=0)), GenerationConfig(8), None)

    monkeypatch.setattr(bench, "build_roles", fake_roles)
    result = bench.bench_eval(n_personas=3, turns=2)
    assert made == [True, False]
    for mode in ("lockstep", "sequential"):
        run = result[mode]
        assert run["scored"] == 6 and run["AL_avg"] == 4.0
        roles = run["roles"]
        assert {k: v["requests"] for k, v in roles.items()} == {"user_simulator": 6, "model": 6, "judge": 6}
        assert roles["model"]["generated_tokens"] == 6 * 5 and roles["model"]["prompt_tokens"] > 0
    # lockstep makes one call per role and turn; the paper's loop one per conversation and turn
    assert result["lockstep"]["roles"]["model"]["calls"] == 2
    assert result["sequential"]["roles"]["model"]["calls"] == 6
    assert result["speedup"] == round(result["sequential"]["wall_s"] / result["lockstep"]["wall_s"], 2)


def test_bench_eval_can_add_the_free_schedule(monkeypatch):
    def fake_roles(run):
        return EvalRoles(Tokenising(fn=lambda m, c: "a reply"), UserSimulator(Tokenising(fn=lambda m, c: "hi"),
                                                                          GenerationConfig(8)),
                     Judge(Tokenising(["3"]), JudgeConfig("paper", "text", max_retries=0)), GenerationConfig(8), None)

    monkeypatch.setattr(bench, "build_roles", fake_roles)
    result = bench.bench_eval(n_personas=2, turns=2, schedules=("free", "lockstep"))
    assert result["free"]["scored"] == result["lockstep"]["scored"] == 4
    assert result["free"]["roles"]["model"]["calls"] == 4 and result["lockstep"]["roles"]["model"]["calls"] == 2
    assert result["free_over_lockstep_wall"] == round(result["free"]["wall_s"] / result["lockstep"]["wall_s"], 2)
    assert "speedup" not in result
