"""`aloe bench schedule`: the same evaluation under each schedule, against a latency server on 127.0.0.1.

All three roles are `openai:` models on `bench.latency_server` (answers after a seeded log-normal delay,
the same delay for the same request whatever the schedule). From the latencies the server records per
request, with the conversation, role and turn it belongs to, the report derives two reference times:

- the critical-path bound: the longest chain of one conversation's dependent requests (user message, reply,
  next user message, ...; each judge hangs off its turn): no schedule can finish sooner;
- the paper loop's time: the sum of all request latencies, what a loop that waits for one request at a time
  waits.

A mixed run puts the evaluated model in-process (the embedded model behind the dynamic batcher) and the user
and judge on the latency server.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections import defaultdict

from aloe_bench.core.errors import ConfigError
from aloe_bench.harness.eval_config import EvalConfig

from .latency_server import LatencyServer

ROLES = {"user": "aloe-user", "model": "aloe-model", "judge": "aloe-judge"}


def schedule_options(schedule: str) -> dict:
    """EvalConfig fields selecting `schedule` (`schedule=` when the loop has it, else the older `lockstep=`)."""
    fields = {f.name for f in dataclasses.fields(EvalConfig)}
    if "schedule" in fields:
        return {"schedule": schedule}
    if schedule in ("lockstep", "sequential"):
        return {"lockstep": schedule == "lockstep"}
    raise ConfigError(f"schedule {schedule!r} is not available in this build of the evaluation loop")


def critical_path(records: list[dict]) -> dict:
    """Per conversation, max over turns k of (its user+reply latencies up to k) + (the judge's at k); and the sum.

    Retries of one request (same conversation, role and turn) are dependent, so their latencies add up.
    """
    spent: dict[str, dict[tuple[str, int], float]] = defaultdict(lambda: defaultdict(float))
    for r in records:
        spent[r["conversation"]][(r["role"], r["turn"])] += r["latency_s"]
    chains = {}
    for conversation, cost in spent.items():
        turns = sorted({turn for _, turn in cost})
        prefix, chain = 0.0, 0.0
        for turn in turns:
            prefix += cost.get((ROLES["user"], turn), 0.0) + cost.get((ROLES["model"], turn), 0.0)
            chain = max(chain, prefix + cost.get((ROLES["judge"], turn), 0.0))
        chains[conversation] = chain
    return {"bound_s": round(max(chains.values(), default=0.0), 3),
            "paper_loop_s": round(sum(r["latency_s"] for r in records), 3),
            "conversations": len(chains), "mean_chain_s": round(sum(chains.values()) / max(len(chains), 1), 3)}


def _requests_by_role(records: list[dict]) -> dict:
    out: dict[str, int] = defaultdict(int)
    for r in records:
        out[r["role"]] += 1
    return dict(sorted(out.items()))


def _run(server: LatencyServer, schedule: str, n_personas: int, turns: int, max_concurrency: int,
         persona_source: str, local_model: str | None = None, reply_max_new_tokens: int = 48) -> dict:
    from aloe_bench.harness.runner import build_roles, evaluate_model

    server.reset()
    remote = {"base_url": server.base_url, "api_key_env": "ALOE_LATENCY_SERVER_KEY"}
    with tempfile.TemporaryDirectory() as out:
        cfg = EvalConfig(
            model=local_model or f"openai:{ROLES['model']}", base_url=None if local_model else server.base_url,
            user_model=f"openai:{ROLES['user']}", user_base_url=server.base_url,
            judge_model=f"openai:{ROLES['judge']}", judge_base_url=server.base_url, api_key_env=remote["api_key_env"],
            judge_scoring="text", personas=persona_source, max_personas=n_personas, turns=turns,
            max_concurrency=max_concurrency, reply_max_new_tokens=reply_max_new_tokens, output_dir=out,
            cache=False, progress=False, bootstrap_resamples=100, **schedule_options(schedule))
        roles = build_roles(cfg)
        worker = getattr(roles.model, "worker", None) if local_model else None  # the in-process model's batcher
        batches_before = worker.stats.to_dict() if worker is not None else None
        results = evaluate_model(cfg, roles)
    records = server.records()
    run = {"wall_s": results["throughput"]["wall_s"], "requests": len(records),
           "requests_by_role": _requests_by_role(records), "scored": results["counts"]["scored"],
           "judge_failures": results["counts"]["judge_failures"],
           "generation_failures": results["counts"]["generation_failures"], **critical_path(records)}
    if batches_before is not None:
        after = worker.stats.to_dict()
        run["local_model_batches"] = {"batches": after["batches"] - batches_before["batches"],
                                      "requests": after["requests"] - batches_before["requests"],
                                      "jobs": after["jobs"] - batches_before["jobs"],
                                      "held": after["held"] - batches_before["held"],
                                      "held_s": round(after["held_s"] - batches_before["held_s"], 3),
                                      "batch_sizes": {size: count - batches_before["sizes"].get(size, 0)
                                                      for size, count in after["sizes"].items()
                                                      if count > batches_before["sizes"].get(size, 0)}}
    return run


def bench_schedule(n_personas: int = 64, turns: int = 10, max_concurrency: int = 64, seed: int = 0,
                   median_s: float = 0.5, sigma: float = 0.8, schedules: tuple[str, ...] = ("free", "lockstep"),
                   persona_source: str = "default", mixed: bool = True, mixed_personas: int = 16,
                   mixed_turns: int = 3, mixed_model: str = "embedded", reply_max_new_tokens: int = 48,
                   output=None, main: bool = True) -> dict:
    """Run the evaluation once per schedule (and the mixed run) and compare wall times with the bounds.

    `main=False` skips the all-remote runs (only the mixed run, when `mixed`).
    """
    from aloe_bench.core.io import atomic_write_json

    report: dict = {
        "benchmark": "aloe bench schedule",
        "setup": {"personas": n_personas, "turns": turns, "max_concurrency": max_concurrency,
                  "roles": "user, model and judge all openai: on the latency server", "judge": "paper, text answers",
                  "latency": {"distribution": "log-normal", "median_s": median_s, "sigma": sigma, "seed": seed}},
        "runs": {},
    }
    with LatencyServer(seed=seed, median_s=median_s, sigma=sigma, user_role=ROLES["user"]) as server:
        for schedule in schedules if main else ():
            report["runs"][schedule] = _run(server, schedule, n_personas, turns, max_concurrency, persona_source)
            if output:
                atomic_write_json(output, report)
        if main:
            report["summary"] = summarise(report["runs"])
        if mixed:
            report["mixed"] = {"setup": {"personas": mixed_personas, "turns": mixed_turns, "model": mixed_model,
                                         "reply_max_new_tokens": reply_max_new_tokens,
                                         "roles": "model in-process; user and judge on the latency server"},
                               "runs": {}}
            for schedule in schedules:
                report["mixed"]["runs"][schedule] = _run(server, schedule, mixed_personas, mixed_turns,
                                                         max_concurrency, persona_source, local_model=mixed_model,
                                                         reply_max_new_tokens=reply_max_new_tokens)
                if output:
                    atomic_write_json(output, report)
            runs = report["mixed"]["runs"]
            if "free" in runs and "lockstep" in runs:
                report["mixed"]["lockstep_over_free"] = round(runs["lockstep"]["wall_s"] / runs["free"]["wall_s"], 2)
    if output:
        atomic_write_json(output, report)
    return report


def summarise(runs: dict) -> dict:
    """The targets: free within 1.25x of the bound, >= 2x faster than lockstep, >= 50x faster than the paper loop."""
    free = runs.get("free")
    summary: dict = {}
    reference = free or next(iter(runs.values()), None)
    if reference is None:
        return summary
    summary.update(critical_path_bound_s=reference["bound_s"], paper_loop_s=reference["paper_loop_s"])
    for name, run in runs.items():
        summary[f"{name}_over_bound"] = round(run["wall_s"] / run["bound_s"], 3) if run["bound_s"] else None
    if free is not None:
        summary["paper_loop_over_free"] = round(free["paper_loop_s"] / free["wall_s"], 1)
        targets = {"free_within_1.25x_of_bound": summary["free_over_bound"] <= 1.25,
                   "free_50x_faster_than_paper_loop": summary["paper_loop_over_free"] >= 50}
        if "lockstep" in runs:
            summary["lockstep_over_free"] = round(runs["lockstep"]["wall_s"] / free["wall_s"], 2)
            targets["free_2x_faster_than_lockstep"] = summary["lockstep_over_free"] >= 2
        summary["targets_met"] = targets
    return summary
