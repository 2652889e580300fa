"""Harness subcommands: `aloe eval`, `aloe metrics`, `aloe results push`, `aloe bench eval`, `aloe bench hostile`,
`aloe bench faults`."""

from __future__ import annotations

import json
import logging

logger = logging.getLogger(__name__)


def register(sub, bench_sub) -> None:
    from aloe_bench.core.config import add_recipe_parser

    from .config import EvalConfig

    eval_parser = add_recipe_parser(sub, "eval", [EvalConfig], _run_eval,
                                    "Score a model on ALOE (offline on the embedded model by default).")
    eval_parser.add_argument("--print-config", "--print_config", dest="print_config", action="store_true",
                             help="Print the resolved run config as JSON and exit (loads no model).")
    from .judge_cli import register as register_judge

    register_judge(sub)  # `aloe judge rescore | agree | push-ratings`

    metrics = sub.add_parser("metrics", help="AL_avg, IR, N_IR, R2, N_R2 of an AL(k) curve, as JSON.")
    metrics.add_argument("--al", required=True, help="Comma-separated AL(1),...,AL(K), e.g. 3.38,3.35,3.5")
    metrics.set_defaults(handler=_run_metrics)

    _register_results(sub)

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

    from .protocol import resolve, run_settings

    cfg = resolve(dataclass_from_args(args, EvalConfig))  # a bad field raises ConfigError: `aloe` prints it
    if getattr(args, "print_config", False):
        print(json.dumps(run_settings(cfg), indent=2, ensure_ascii=False))
        return 0
    results = evaluate_model(cfg)
    print(json.dumps({k: results[k] for k in ("protocol", "model", "judge", "counts")} | {
        "metrics": {k: v for k, v in results["metrics"].items() if k != "intervals"},
        "results_file": results["results_file"]}, indent=2))
    logger.info(_next_steps(results))
    return 0


def _next_steps(results: dict) -> str:
    """Where the results are and, after a non-paper run, how to run the paper's protocol."""
    lines = [f"Results: {results['results_file']} (per-turn rows: {results['files']['samples']} next to it)."]
    if results["protocol"] != "paper":
        lines += [f"This was the {results['protocol']!r} protocol: a check that everything runs, not a number "
                  "to compare with the paper.",
                  "The paper's protocol, with real models (an OpenAI-compatible endpoint for user and judge):",
                  "  aloe eval --protocol paper --model ORG/NAME \\",
                  "    --user_model openai:gpt-4o-mini-2024-07-18 --judge_model openai:gpt-4o-mini-2024-07-18 \\",
                  "    --output_dir runs/paper",
                  "(README: \"The paper's protocol\" lists every setting.)"]
    return "\n".join(lines)


def _run_metrics(args) -> int:
    from aloe_bench.core.errors import ConfigError
    from aloe_bench.core.metrics import aloe_metrics

    try:
        curve = [float(x) for x in args.al.split(",") if x.strip()]
        metrics = aloe_metrics(curve)
    except ValueError as exc:
        problem = f"--al {args.al!r}: expected comma-separated numbers AL(1),...,AL(K), K >= 2 ({exc})"
        raise ConfigError(problem) from None
    print(json.dumps(metrics, indent=2))
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
    from .bench_hostile import bench_hostile

    result = bench_hostile(judge_model=args.judge_model, presets=args.presets, n_personas=args.personas,
                           persona_source=args.persona_source, max_retries=args.max_retries,
                           max_new_tokens=args.max_new_tokens, suite=args.suite,
                           categories=[c.strip() for c in args.categories.split(",")] if args.categories else None,
                           base_url=args.judge_base_url, api_key_env=args.api_key_env, output=args.output)
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


# -- aloe results ---------------------------------------------------------------------------------------
def _register_results(sub) -> None:
    results = sub.add_parser("results", help="Publish ALOE runs as a results dataset (Hub repo or local folder).")
    results_sub = results.add_subparsers(dest="results_command", required=True)
    push = results_sub.add_parser("push", help="Add runs (aloe eval output folders or results files) to a results "
                                               "dataset: one split per run, `latest_<model>`, a `results` config.")
    push.add_argument("runs", nargs="+", metavar="RUN_DIR", help="aloe eval --output_dir folders or results_*.json")
    push.add_argument("--repo-id", "--repo_id", dest="repo_id", default=None, help="Results dataset repo ORG/NAME.")
    push.add_argument("--local-dir", "--local_dir", dest="local_dir", default=None,
                      help="Build or merge into this folder exactly as it would be uploaded; upload nothing.")
    push.add_argument("--public", action="store_true", help="Create the repo public (default: private).")
    push.add_argument("--create-pr", "--create_pr", dest="create_pr", action="store_true",
                      help="Open a pull request with the eval results on evaluated models you do not own.")
    push.add_argument("--no-model-card", dest="model_card", action="store_false",
                      help="Do not write eval results to the evaluated models' repos.")
    push.set_defaults(handler=_run_results_push)


def _run_results_push(args) -> int:
    from aloe_bench.core.errors import AloeError, ConfigError, HubUploadError

    from .hub import evaluated_hub_model, publish_model_eval_results
    from .results_dataset import load_runs, push_runs

    if args.local_dir is None and not args.repo_id:
        raise ConfigError("give --repo-id ORG/NAME (or --local-dir DIR to build the folder only)")
    runs = load_runs(args.runs)
    try:
        report = push_runs(runs, args.repo_id, public=args.public, local_dir=args.local_dir)
    except AloeError:
        raise
    except Exception as exc:  # Hub errors (offline, auth, HTTP): say what failed; the runs on disk are untouched
        if args.local_dir is not None:
            raise  # nothing was uploaded: not a Hub error
        raise HubUploadError(f"upload to {args.repo_id} failed: {type(exc).__name__}: {exc}") from exc
    if args.local_dir is None and args.model_card:
        report["model_cards"] = []
        for run in runs:
            model = evaluated_hub_model(run.results)
            if model is not None:
                try:
                    report["model_cards"].append(publish_model_eval_results(run.results, model, args.repo_id,
                                                                            create_pr=args.create_pr))
                except Exception as exc:
                    report["model_cards"].append({"model": model, "status": "failed",
                                                  "reason": f"{type(exc).__name__}: {exc}"})
    print(json.dumps(report, indent=2))
    return 1 if any(c["status"] == "failed" for c in report.get("model_cards", [])) else 0
