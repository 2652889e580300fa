"""`aloe bench faults`: a small ALOE run through a fault-injecting proxy in front of a real server.

It starts `transformers serve` on the embedded model (or uses `--base-url`), puts `aloe_bench.testing.fault_proxy`'
proxy in front of it, runs an evaluation with all three roles (`openai:`) through the proxy, and reports
what was injected (per kind), what the client retried, which faults were survived (the logical request
they hit later succeeded), what still failed and was recorded, and whether every conversation has all its
rows exactly once.
"""

from __future__ import annotations

import tempfile
from collections import Counter

from aloe_bench.core.backends import BackendOptions
from aloe_bench.harness.eval_config import EvalConfig
from aloe_bench.harness.results import RunFiles
from aloe_bench.harness.protocol import resolve_run
from aloe_bench.harness.runner import build_roles, evaluate_model
from aloe_bench.testing.fault_proxy import FAULT_KINDS, FaultPlan, FaultProxy, parse_rates
from aloe_bench.testing.serve import TransformersServe


def check_rows(rows: list[dict], persona_ids: list[str], turns: int) -> dict:
    """Every conversation must have rows 1..turns, or 1..k where row k records the failure that stopped it;
    no (persona, turn) twice, none missing, none after a stop."""
    seen = Counter((r["persona_id"], r["turn"]) for r in rows)
    duplicates = sum(n - 1 for n in seen.values())
    missing = extra = complete = stopped = 0
    for pid in persona_ids:
        mine = sorted(turn for (p, turn) in seen if p == pid)
        errors = sorted(r["turn"] for r in rows if r["persona_id"] == pid and r.get("error"))
        last = errors[0] if errors else turns
        expected = set(range(1, last + 1))
        missing += len(expected - set(mine))
        extra += len(set(mine) - expected)
        if errors:
            stopped += 1
        elif not expected - set(mine):
            complete += 1
    return {"rows": len(rows), "duplicate_rows": duplicates, "missing_rows": missing, "rows_after_a_stop": extra,
            "complete_conversations": complete, "stopped_conversations": stopped,
            "conversations": len(persona_ids)}


def survival(proxy_stats: dict, failed_request_ids: set[str]) -> dict:
    """Faults on logical requests that later succeeded (survived) vs on requests that finally failed."""
    survived = lost = 0
    for request_id, faults in proxy_stats["faults_by_request_id"].items():
        if request_id in failed_request_ids:
            lost += len(faults)
        else:
            survived += len(faults)
    return {"faults_survived": survived, "faults_on_failed_requests": lost,
            "faults_unattributed": proxy_stats["faults_without_request_id"]}


def bench_faults(n_personas: int = 3, turns: int = 2, rates: str = "all=0.05", seed: int = 0,
                 timeout_s: float = 30.0, max_retries: int = 4, max_new_tokens: int = 16, max_concurrency: int = 2,
                 persona_source: str = "default", base_url: str | None = None, model: str | None = None,
                 output_dir: str | None = None) -> dict:
    """Run the evaluation through the proxy and return the figures (see the module docstring)."""
    plan = FaultPlan(parse_rates(rates), seed=seed, hang_s=timeout_s + 15)
    if base_url is None:
        from aloe_bench.core.embedded import embedded_model_dir

        folder = embedded_model_dir()
        with TransformersServe(folder) as serve:
            return _run(plan, serve.url, str(folder), "transformers serve (embedded SmolLM2-135M, 1 torch thread)",
                        n_personas, turns, timeout_s, max_retries, max_new_tokens, max_concurrency, persona_source,
                        output_dir)
    if not model:
        raise ValueError("--base-url needs --model (the model name the server expects)")
    return _run(plan, base_url, model, base_url, n_personas, turns, timeout_s, max_retries, max_new_tokens,
                max_concurrency, persona_source, output_dir)


def _run(plan, upstream, model, server_label, n_personas, turns, timeout_s, max_retries, max_new_tokens,
         max_concurrency, persona_source, output_dir) -> dict:
    with FaultProxy(upstream, plan) as proxy, tempfile.TemporaryDirectory(prefix="aloe-faults-") as tmp:
        spec = f"openai:{model}"
        cfg = EvalConfig(protocol="smoke", model=spec, base_url=proxy.base_url, user_model=spec, user_base_url=proxy.base_url,
                         judge_model=spec, judge_base_url=proxy.base_url, judge_scoring="text",
                         personas=persona_source, max_personas=n_personas, turns=turns,
                         reply_max_new_tokens=max_new_tokens, user_max_new_tokens=max_new_tokens,
                         user_temperature=0.0, output_dir=output_dir or tmp, bootstrap_resamples=200, progress=False)
        run = resolve_run(cfg, BackendOptions(max_concurrency=max_concurrency, request_timeout_s=timeout_s,
                                              request_max_retries=max_retries))
        roles = build_roles(run)
        backends = {id(b): b for b in (roles.model, roles.user.backend, roles.judge.backend)}.values()
        results = evaluate_model(run, roles)
        proxy_stats = proxy.stats()
        rows = RunFiles(cfg.output_dir, results["fingerprint"], results["model"]).load_samples()
        persona_ids = sorted({r["persona_id"] for r in rows} | set(_persona_ids(run.config)))
    failed_ids = set().union(*(b.stats.failed_request_ids for b in backends))
    client = _merge([b.stats.to_dict() for b in backends])
    counts = results["counts"]
    return {
        "benchmark": "aloe bench faults",
        "setup": {"server": server_label, "roles": "model, user simulator and judge, all openai: through the proxy",
                  "personas": n_personas, "turns": turns, "max_new_tokens": max_new_tokens,
                  "judge": results["judge"], "fault_rates": plan.rates, "seed": plan.seed,
                  "client_timeout_s": timeout_s, "timeout_fault_hang_s": plan.hang_s,
                  "retry_after_s": plan.retry_after_s, "max_retries_per_layer": max_retries,
                  "max_concurrency": max_concurrency},
        "proxy": {k: proxy_stats[k] for k in ("requests", "passed_through", "client_gone", "distinct_request_ids",
                                              "repeated_attempts", "faults", "faults_total")},
        "client": client,
        "survival": survival(proxy_stats, failed_ids),
        "recorded": {"generation_failures": counts["generation_failures"], "judge_failures": counts["judge_failures"],
                     "scored": counts["scored"],
                     "row_errors": sorted({r["error"] for r in rows if r.get("error")}),
                     "judge_errors": dict(Counter(r["judge_error"] for r in rows if r.get("judge_error")))},
        "rows": check_rows(rows, persona_ids, turns),
        "metrics": {k: results["metrics"].get(k) for k in ("AL", "AL_avg", "IR", "R2")},
        "wall_s": results["throughput"]["wall_s"],
    }


def _persona_ids(cfg: EvalConfig) -> list[str]:
    """The persona ids a resolved config evaluates."""
    from aloe_bench.core.personas import load_persona_set

    return [p.id for p in load_persona_set(cfg.personas, cfg.max_personalities).subset(cfg.max_personas or None)]


def _merge(stats: list[dict]) -> dict:
    merged = {"requests": 0, "succeeded": 0, "failed": 0, "retries": Counter(), "failures": Counter()}
    for s in stats:
        for key in ("requests", "succeeded", "failed"):
            merged[key] += s[key]
        merged["retries"].update(s["retries"])
        merged["failures"].update(s["failures"])
    merged["retries"] = dict(merged["retries"])  # our own retries (malformed, empty); the client's are in proxy
    merged["failures"] = dict(merged["failures"])
    return merged


__all__ = ["bench_faults", "check_rows", "survival", "FAULT_KINDS"]
