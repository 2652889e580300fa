"""`aloe bench eval`: the same small evaluation run lockstep and one conversation at a time, side by side."""

from __future__ import annotations

import tempfile

from .config import EvalConfig
from .runner import build_roles, evaluate_model


def bench_eval(n_personas: int = 16, turns: int = 3, persona_source: str = "default", model: str = "embedded",
               reply_max_new_tokens: int = 48, user_max_new_tokens: int = 48) -> dict:
    """Wall time and generated tokens/s of both loops, with the request cache off so both do all the work."""
    runs = {}
    for mode, lockstep in (("lockstep", True), ("sequential", False)):
        with tempfile.TemporaryDirectory() as out:
            cfg = EvalConfig(model=model, user_model=model, judge_model=model, personas=persona_source,
                             max_personas=n_personas, turns=turns, output_dir=out, cache=False, lockstep=lockstep,
                             reply_max_new_tokens=reply_max_new_tokens, user_max_new_tokens=user_max_new_tokens,
                             bootstrap_resamples=100, progress=False)
            results = evaluate_model(cfg, build_roles(cfg))
        runs[mode] = {**results["throughput"], "scored": results["counts"]["scored"],
                      "AL_avg": results["metrics"]["AL_avg"]}
    lock, seq = runs["lockstep"], runs["sequential"]
    return {
        "benchmark": "aloe bench eval",
        "setup": {"model": model, "roles": "model, user simulator and judge", "personas": n_personas,
                  "turns": turns, "reply_max_new_tokens": reply_max_new_tokens,
                  "user_max_new_tokens": user_max_new_tokens},
        "lockstep": lock,
        "sequential": seq,
        "speedup": round(seq["wall_s"] / lock["wall_s"], 2),
        "tokens_per_s_ratio": round(lock["tokens_per_s"] / seq["tokens_per_s"], 2),
    }
