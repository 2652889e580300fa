"""Harness subcommands: `aloe eval`, `aloe metrics`, `aloe bench eval`."""

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
    bench.add_argument("--output", default=None, help="Also write the JSON here.")
    bench.set_defaults(handler=_run_bench)


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
    from .bench import bench_eval

    result = bench_eval(n_personas=args.personas, turns=args.turns, persona_source=args.persona_source,
                        model=args.model, reply_max_new_tokens=args.reply_max_new_tokens,
                        user_max_new_tokens=args.user_max_new_tokens)
    text = json.dumps(result, indent=2)
    print(text)
    if args.output:
        with open(args.output, "w") as fh:
            fh.write(text + "\n")
    return 0
