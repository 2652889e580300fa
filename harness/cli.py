"""Harness subcommands: `aloe eval`, `aloe metrics`, `aloe bench eval`, `aloe bench hostile`,
`aloe bench faults`."""

from __future__ import annotations

import json
import sys


def register(sub, bench_sub) -> None:
    from aloe_bench.core.config import add_recipe_parser

    from .config import EvalConfig

    add_recipe_parser(sub, "eval", [EvalConfig], _run_eval,
                      "Score a model on ALOE (offline on the embedded model by default).")

    metrics = sub.add_parser("metrics", help="AL_avg, IR, N_IR, R2, N_R2 of an AL(k) curve, as JSON.")
    metrics.add_argument("--al", required=True, help="Comma-separated AL(1),...,AL(K), e.g. 3.38,3.35,3.5")
    metrics.set_defaults(handler=_run_metrics)

    bench = bench_sub.add_parser("eval", help="Lockstep vs one-conversation-at-a-time on the same small run.")
    bench.add_argument("--personas", type=int, default=16)
    bench.add_argument("--turns", type=int, default=3)
    bench.add_argument("--persona-source", default="default")
    bench.add_argument("--model", default="embedded")
    bench.add_argument("--reply-max-new-tokens", type=int, default=48)
    bench.add_argument("--user-max-new-tokens", type=int, default=48)
    bench.add_argument("--schedules", default="lockstep,sequential",
                       help="Comma-separated schedules to run: free, lockstep, sequential.")
    bench.add_argument("--output", default=None, help="Also write the JSON here.")
    bench.set_defaults(handler=_run_bench)

    hostile = bench_sub.add_parser("hostile", help="How replies that try to steer the judge move each preset's scores.")
    hostile.add_argument("--judge-model", "--judge_model", dest="judge_model", default="embedded",
                         help="Judge spec: embedded, ORG/NAME, a folder, or openai:NAME.")
    hostile.add_argument("--judge-base-url", "--judge_base_url", dest="judge_base_url", default=None)
    hostile.add_argument("--api-key-env", "--api_key_env", dest="api_key_env", default="OPENAI_API_KEY")
    hostile.add_argument("--presets", default="paper,robust",
                         help="Comma-separated presets, each optionally with a scoring: paper:text,paper,robust.")
    hostile.add_argument("--personas", type=int, default=4, help="Eval personas (distinct profiles) per variant.")
    hostile.add_argument("--persona-source", "--persona_source", dest="persona_source", default="default")
    hostile.add_argument("--max-retries", "--max_retries", dest="max_retries", type=int, default=2)
    hostile.add_argument("--max-new-tokens", "--max_new_tokens", dest="max_new_tokens", type=int, default=None,
                         help="Judge answer length (default: the preset's, 8 for paper and 256 for robust).")
    hostile.add_argument("--categories", default=None, help="Comma-separated categories to run (default: all).")
    hostile.add_argument("--suite", default=None, help="Another suite file of the same shape (JSONL).")
    hostile.add_argument("--output", default=None, help="Also write the JSON here (after each preset).")
    hostile.set_defaults(handler=_run_bench_hostile)

    faults = bench_sub.add_parser("faults", help="A small eval through a fault-injecting proxy: faults injected, "
                                                 "survived, failures recorded, rows complete.")
    faults.add_argument("--personas", type=int, default=3)
    faults.add_argument("--turns", type=int, default=2)
    faults.add_argument("--rates", default="all=0.05",
                        help="Fault rates per request, kind=rate,... or all=R (kinds: timeout, rate_limit, "
                             "server_error, cut_stream, malformed_json, empty_content).")
    faults.add_argument("--seed", type=int, default=0, help="Seed of the fault draws (and of the run).")
    faults.add_argument("--timeout-s", "--timeout_s", dest="timeout_s", type=float, default=30.0,
                        help="Client timeout; a timeout fault holds the connection 15 s longer.")
    faults.add_argument("--max-retries", "--max_retries", dest="max_retries", type=int, default=4)
    faults.add_argument("--max-new-tokens", "--max_new_tokens", dest="max_new_tokens", type=int, default=16)
    faults.add_argument("--max-concurrency", "--max_concurrency", dest="max_concurrency", type=int, default=2)
    faults.add_argument("--persona-source", "--persona_source", dest="persona_source", default="default")
    faults.add_argument("--base-url", "--base_url", dest="base_url", default=None,
                        help="An OpenAI-compatible server to put the proxy in front of (default: start "
                             "`transformers serve` on the embedded model).")
    faults.add_argument("--model", default=None, help="Model name for --base-url.")
    faults.add_argument("--output", default=None, help="Also write the JSON here.")
    faults.set_defaults(handler=_run_bench_faults)

    from .bench_schedule import add_parser as add_bench_schedule

    add_bench_schedule(bench_sub)


def _run_eval(args) -> int:
    from aloe_bench.core.config import dataclass_from_args

    from .config import EvalConfig
    from .runner import evaluate_model

    cfg = dataclass_from_args(args, EvalConfig)
    results = evaluate_model(cfg)
    print(json.dumps({k: results[k] for k in ("model", "judge", "counts")} | {
        "metrics": {k: v for k, v in results["metrics"].items() if k != "intervals"},
        "results_file": results["results_file"]}, indent=2))
    return 0


def _run_metrics(args) -> int:
    from aloe_bench.core.metrics import aloe_metrics

    try:
        curve = [float(x) for x in args.al.split(",") if x.strip()]
    except ValueError:
        print(f"--al: expected comma-separated numbers, got {args.al!r}", file=sys.stderr)
        return 2
    print(json.dumps(aloe_metrics(curve), indent=2))
    return 0


def _run_bench(args) -> int:
    from aloe_bench.core.config import emit_report

    from .bench import bench_eval

    result = bench_eval(n_personas=args.personas, turns=args.turns, persona_source=args.persona_source,
                        model=args.model, reply_max_new_tokens=args.reply_max_new_tokens,
                        user_max_new_tokens=args.user_max_new_tokens,
                        schedules=tuple(s.strip() for s in args.schedules.split(",") if s.strip()))
    emit_report(result, args.output)
    return 0


def _run_bench_hostile(args) -> int:
    from aloe_bench.core.personas import PersonaFileError

    from .bench_hostile import bench_hostile

    try:
        result = bench_hostile(judge_model=args.judge_model, presets=args.presets, n_personas=args.personas,
                               persona_source=args.persona_source, max_retries=args.max_retries,
                               max_new_tokens=args.max_new_tokens, suite=args.suite,
                               categories=[c.strip() for c in args.categories.split(",")] if args.categories else None,
                               base_url=args.judge_base_url, api_key_env=args.api_key_env, output=args.output)
    except (PersonaFileError, ValueError) as exc:
        print(f"aloe bench hostile: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


def _run_bench_faults(args) -> int:
    from aloe_bench.core.config import emit_report

    from .bench_faults import bench_faults

    result = bench_faults(n_personas=args.personas, turns=args.turns, rates=args.rates, seed=args.seed,
                          timeout_s=args.timeout_s, max_retries=args.max_retries, max_new_tokens=args.max_new_tokens,
                          max_concurrency=args.max_concurrency, persona_source=args.persona_source,
                          base_url=args.base_url, model=args.model)
    emit_report(result, args.output)
    return 0
