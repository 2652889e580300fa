"""`aloe bench eval`: the same small evaluation under several schedules (default lockstep and one conversation at a
time; `--schedules free,lockstep,sequential` adds the free one), side by side."""

from __future__ import annotations

import tempfile

from aloe_bench.core.backends.profiled import ProfiledBackend
from aloe_bench.core.judge import Judge
from aloe_bench.core.simulator import UserSimulator

from aloe_bench.harness.eval_config import EvalConfig
from aloe_bench.harness.protocol import resolve_run
from aloe_bench.harness.runner import EvalRoles, build_roles, evaluate_model


def profiled(roles: EvalRoles) -> tuple[EvalRoles, dict[str, ProfiledBackend]]:
    """The same roles, each behind its own counter (models shared between roles stay shared underneath)."""
    wrapped = {"user_simulator": ProfiledBackend(roles.user.backend), "model": ProfiledBackend(roles.model),
               "judge": ProfiledBackend(roles.judge.backend)}
    user = UserSimulator(wrapped["user_simulator"], roles.user.config, roles.user.prompts, roles.user.max_retries)
    judge = Judge(wrapped["judge"], roles.judge.config, roles.judge.prompts)
    return EvalRoles(wrapped["model"], user, judge, roles.reply_config, roles.cache), wrapped


def bench_eval(n_personas: int = 16, turns: int = 3, persona_source: str = "default", model: str = "embedded",
               reply_max_new_tokens: int = 48, user_max_new_tokens: int = 48,
               schedules: tuple[str, ...] = ("lockstep", "sequential")) -> dict:
    """Wall time and generated tokens/s of both loops, with the request cache off so both do all the work.

    Each mode also reports, per role, the prompt tokens it processed and the generated tokens it decoded,
    with the seconds spent: on a CPU the prompt side is compute-bound and the same in both loops, so it
    bounds how much batching can win.
    """
    runs = {}
    for mode in schedules:
        with tempfile.TemporaryDirectory() as out:
            cfg = EvalConfig(protocol="smoke", model=model, user_model=model, judge_model=model, personas=persona_source,
                             max_personas=n_personas, turns=turns, output_dir=out, cache=False, schedule=mode,
                             reply_max_new_tokens=reply_max_new_tokens, user_max_new_tokens=user_max_new_tokens,
                             bootstrap_resamples=100, progress=False)
            run = resolve_run(cfg)
            roles, counters = profiled(build_roles(run))
            results = evaluate_model(run, roles)
        runs[mode] = {**results["throughput"], "scored": results["counts"]["scored"],
                      "AL_avg": results["metrics"]["AL_avg"],
                      "roles": {name: c.profile.to_dict() for name, c in counters.items()}}
    report = {
        "benchmark": "aloe bench eval",
        "setup": {"model": model, "roles": "model, user simulator and judge", "personas": n_personas,
                  "turns": turns, "reply_max_new_tokens": reply_max_new_tokens,
                  "user_max_new_tokens": user_max_new_tokens},
        **runs,
    }
    lock, seq, free = runs.get("lockstep"), runs.get("sequential"), runs.get("free")
    if lock and seq:
        report["speedup"] = round(seq["wall_s"] / lock["wall_s"], 2)
        report["tokens_per_s_ratio"] = round(lock["tokens_per_s"] / seq["tokens_per_s"], 2)
    if lock and free:
        report["free_over_lockstep_wall"] = round(free["wall_s"] / lock["wall_s"], 2)
    return report
