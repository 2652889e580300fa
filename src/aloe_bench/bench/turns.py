"""`aloe bench turns`: what the prompt-prefix cache saves as conversations grow, turn by turn.

The same small evaluation (embedded model in every role, the smoke protocol's sampling with its fixed seed, the
request cache off, the lockstep schedule so each turn's wall time is well defined) runs with the transformers
backend's prefix cache off, then on, in one process; the report gives each turn's wall time and prompt tokens
computed, the turn-last / turn-1 ratio, the whole run's speed-up, the cache's hits, misses and peak memory, and
whether the rows are identical (texts equal, scores within 1e-4). The free schedule's total and a Space visitor's
reply latency (typed messages) at the last turn vs the first are measured both ways too.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import replace

from aloe_bench.core.backends import BackendOptions, GenerationConfig, build_backend
from aloe_bench.core.backends.delegating import DelegatingBackend
from aloe_bench.core.judge import Judge
from aloe_bench.core.simulator import UserSimulator
from aloe_bench.harness.eval_config import EvalConfig
from aloe_bench.harness.results import RunFiles
from aloe_bench.harness.protocol import EvalRun, resolve_run
from aloe_bench.harness.runner import EvalRoles, build_roles, evaluate_model

SCORE_TOLERANCE = 1e-4
MODES = {"off": 0, "on": None}  # kv_cache_mb: 0 turns the cache off, None keeps the backend's default bound
TYPED = ["Hi! I just got back from a long run and I'm starving.", "What should I cook tonight, something quick?",
         "I have rice, eggs and some spinach.", "Nice. Any tip to make it less bland?",
         "I also brew my own beer, would one go with it?", "Which style would you pick for spring?",
         "How long does that take to ferment?", "Could I do it in my small flat?",
         "What gear do I need to start?", "Thanks! Anything I should avoid as a beginner?"]


class TurnClock:
    """Marks where each lockstep turn starts (the first user-simulator call after another role's) with the prompt
    tokens requested and computed so far."""

    def __init__(self, cache):
        self.cache = cache
        self.marks: list[tuple[float, int, int]] = []  # (time, prompt tokens requested, computed) at a turn's start
        self.requested = 0
        self._last_role = None

    def computed(self) -> int:
        return self.requested if self.cache is None else self.cache.stats.computed_tokens

    def call(self, role: str, prompt_tokens: int) -> None:
        if role == "user" and self._last_role != "user":
            self.marks.append((time.perf_counter(), self.requested, self.computed()))
        self._last_role = role
        self.requested += prompt_tokens

    def turns(self, ended: float) -> list[dict]:
        ends = self.marks[1:] + [(ended, self.requested, self.computed())]
        return [{"turn": i, "wall_s": round(end[0] - start[0], 3), "prompt_tokens": end[1] - start[1],
                 "prompt_tokens_computed": end[2] - start[2]}
                for i, (start, end) in enumerate(zip(self.marks, ends), 1)]


class ClockedBackend(DelegatingBackend):
    """Tells a `TurnClock` about each call one role makes (with its prompt tokens) before passing it on."""

    def __init__(self, inner, role: str, clock: TurnClock):
        super().__init__(inner)
        self.role, self.clock = role, clock

    def _tokens(self, conversations, reserve: int) -> int:
        return sum(len(self.inner.encode_prompt(m, reserve)) for m in conversations)

    def _generate_batch(self, conversations, config):
        self.clock.call(self.role, self._tokens(conversations, config.max_new_tokens))
        return self.inner.generate(conversations, config)

    def _score_options_batch(self, conversations, options):
        self.clock.call(self.role, self._tokens(conversations, 1))
        return self.inner.score_options(conversations, options)


def with_backend(roles: EvalRoles, backend, wrap=lambda backend, role: backend) -> EvalRoles:
    """`roles` with every role on `backend` (through `wrap(backend, role)`)."""
    user, judge = roles.user, roles.judge
    return EvalRoles(wrap(backend, "model"),
                     UserSimulator(wrap(backend, "user"), user.config, user.prompts, user.max_retries),
                     Judge(wrap(backend, "judge"), judge.config, judge.prompts), roles.reply_config, None)


def _config(out: str, model: str, personas: int, turns: int, schedule: str, reply_tokens: int,
            user_tokens: int) -> EvalRun:
    return resolve_run(EvalConfig(protocol="smoke", model=model, user_model=model, judge_model=model,
                                  max_personas=personas, turns=turns, output_dir=out, cache=False, schedule=schedule,
                                  bootstrap_resamples=100, reply_max_new_tokens=reply_tokens,
                                  user_max_new_tokens=user_tokens, progress=False))


def _backend(run: EvalRun, kv_cache_mb: int | None):
    """The run's backend with the cache off (0) or at its default bound (None), warmed up and with an empty cache."""
    options = run.backend if kv_cache_mb is None else replace(run.backend, kv_cache_mb=kv_cache_mb)
    return warmed(build_backend(run.config.model, options))


def warmed(backend):
    """`backend` after one short request (one-time costs stay out of the timings), its prefix cache emptied."""
    backend.generate([[{"role": "user", "content": "Hello!"}]], GenerationConfig(max_new_tokens=4))
    if getattr(backend, "prefix_cache", None) is not None:
        backend.prefix_cache.clear()
    return backend


def compare_rows(a: list[dict], b: list[dict]) -> dict:
    """Whether two runs' rows are the same: texts equal and scores (and judge distributions) within 1e-4."""
    a, b = (sorted(rows, key=lambda r: (r["persona_id"], r["turn"])) for rows in (a, b))
    texts = sum(1 for x, y in zip(a, b) if (x["user_message"], x["reply"]) != (y["user_message"], y["reply"]))
    score_diff = 0.0
    for x, y in zip(a, b):
        if (x["score"] is None) != (y["score"] is None):
            score_diff = float("inf")
        elif x["score"] is not None:
            score_diff = max(score_diff, abs(x["score"] - y["score"]))
        for option, p in (x.get("judge_distribution") or {}).items():
            score_diff = max(score_diff, abs(p - (y.get("judge_distribution") or {}).get(option, float("inf"))))
    return {"rows": [len(a), len(b)], "text_mismatches": texts, "max_score_diff": score_diff,
            "identical": len(a) == len(b) and texts == 0 and score_diff <= SCORE_TOLERANCE}


def _lockstep(run: EvalRun, kv_cache_mb: int | None) -> tuple[dict, list[dict]]:
    backend = _backend(run, kv_cache_mb)
    cache = getattr(backend, "prefix_cache", None)
    clock = TurnClock(cache)
    roles = with_backend(build_roles(run), backend, lambda b, role: ClockedBackend(b, role, clock))
    before = None if cache is None else replace(cache.stats)
    began = time.perf_counter()
    results = evaluate_model(run, roles)
    ended = time.perf_counter()
    per_turn = clock.turns(ended)
    timing = {"wall_s": round(ended - began, 3), "turns": per_turn,
              "last_over_first": round(per_turn[-1]["wall_s"] / per_turn[0]["wall_s"], 2) if per_turn else None,
              "prompt_tokens": clock.requested, "prompt_tokens_computed": clock.computed(),
              "AL_avg": results["metrics"]["AL_avg"]}
    if cache is not None:
        stats = cache.stats
        timing["cache"] = {"hits": stats.hits - before.hits, "misses": stats.misses - before.misses,
                           "evictions": stats.evictions - before.evictions, "peak_mb": round(stats.peak_bytes / 2**20, 1),
                           "bound_mb": round(cache.max_bytes / 2**20), "entries_left": stats.entries}
    return timing, RunFiles(run.config.output_dir, results["fingerprint"], roles.model.model_id).load_samples()


def _free(run: EvalRun, kv_cache_mb: int | None) -> dict:
    backend = _backend(run, kv_cache_mb)
    began = time.perf_counter()
    evaluate_model(run, with_backend(build_roles(run), backend))
    return {"wall_s": round(time.perf_counter() - began, 3)}


def _space(model: str, turns: int, reply_tokens: int, kv_cache_mb: int | None) -> dict:
    """One visitor typing `turns` messages in the Space (session functions, no browser): each reply's latency."""
    from aloe_bench.core.personas import load_persona_set
    from aloe_bench.space.chat import stream_turn
    from aloe_bench.space.roles import SpaceRoles
    from aloe_bench.space.session import new_session
    from aloe_bench.space.space_config import SpaceConfig

    backend = warmed(build_backend(model, BackendOptions(kv_cache_mb=kv_cache_mb)))
    config = SpaceConfig(model=model, user_model=model, judge_model=model, reply_max_new_tokens=reply_tokens,
                         max_turns=max(turns, 1))
    roles = SpaceRoles(config, loader=lambda spec: backend)
    session = new_session(config)
    session.persona = load_persona_set("default").personas[0]
    latencies = []
    for n in range(turns):
        began = time.perf_counter()
        for _ in stream_turn(session, roles, TYPED[n % len(TYPED)]):
            pass
        latencies.append(round(time.perf_counter() - began, 3))
    replies = [turn.reply for turn in session.lanes[0].turns]
    session.close()
    return {"reply_latency_s": latencies, "last_over_first": round(latencies[-1] / latencies[0], 2),
            "replies": replies}


def bench_turns(n_personas: int = 16, turns: int = 10, model: str = "embedded", reply_max_new_tokens: int = 48,
                user_max_new_tokens: int = 40, free: bool = True, space: bool = True, on_part=None) -> dict:
    """Lockstep off and on (plus the free schedule's total and the Space's latency), side by side; see the module.
    `on_part(report)` sees the report after each part (a long run leaves its figures so far)."""
    on_part = on_part or (lambda report: None)
    report = {"benchmark": "aloe bench turns",
              "setup": {"model": model, "roles": "model, user simulator and judge", "personas": n_personas,
                        "turns": turns, "protocol": "smoke", "schedule": "lockstep", "request_cache": False,
                        "reply_max_new_tokens": reply_max_new_tokens, "user_max_new_tokens": user_max_new_tokens}}
    rows = {}
    for mode, kv_cache_mb in MODES.items():
        with tempfile.TemporaryDirectory() as out:
            cfg = _config(out, model, n_personas, turns, "lockstep", reply_max_new_tokens, user_max_new_tokens)
            report[mode], rows[mode] = _lockstep(cfg, kv_cache_mb)
    report["speedup"] = round(report["off"]["wall_s"] / report["on"]["wall_s"], 2)
    report["rows"] = compare_rows(rows["off"], rows["on"])
    report["targets"] = _targets(report)
    on_part(report)
    if free:
        report["free"] = {}
        for mode, kv_cache_mb in MODES.items():
            with tempfile.TemporaryDirectory() as out:
                cfg = _config(out, model, n_personas, turns, "free", reply_max_new_tokens, user_max_new_tokens)
                report["free"][mode] = _free(cfg, kv_cache_mb)
        report["free"]["speedup"] = round(report["free"]["off"]["wall_s"] / report["free"]["on"]["wall_s"], 2)
        on_part(report)
    if space:
        report["space"] = {mode: _space(model, turns, reply_max_new_tokens, kv_cache_mb)
                           for mode, kv_cache_mb in MODES.items()}
        report["space"]["replies_identical"] = report["space"]["off"].pop("replies") == \
            report["space"]["on"].pop("replies")
    return report


def _targets(report: dict) -> dict:
    """Issue 24's targets: with the cache the last turn costs at most 1.3x the first, the run is at least 2x faster
    than without, and the rows are identical."""
    ratio = report["on"]["last_over_first"]
    return {"last_turn_at_most_1.3x_first": ratio is not None and ratio <= 1.3,
            "run_at_least_2x_faster": report["speedup"] >= 2, "rows_identical": report["rows"]["identical"]}


__all__ = ["ClockedBackend", "TurnClock", "bench_turns", "compare_rows", "with_backend"]
