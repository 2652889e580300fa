"""Harness subcommands: `aloe eval`, `aloe judge ...`, `aloe metrics`, `aloe results push`."""

from __future__ import annotations

import json
import logging

logger = logging.getLogger(__name__)


def register(sub) -> None:
    from aloe_bench.core.recipes import add_recipe_command

    from aloe_bench.core.backends import BackendOptions

    from .eval_config import EvalConfig

    eval_parser = add_recipe_command(sub, "eval", [EvalConfig, BackendOptions], _run_eval,
                                     "Score a model on ALOE (offline on the embedded model by default).")
    eval_parser.add_argument("--print-config", "--print_config", dest="print_config", action="store_true",
                             help="Print the resolved run config as JSON and exit (loads no model).")
    from .judge_cli import register as register_judge

    register_judge(sub)  # `aloe judge rescore | agree | push-ratings`

    metrics = sub.add_parser("metrics", help="AL_avg, IR, N_IR, R2, N_R2 of an AL(k) curve, as JSON.")
    metrics.add_argument("--al", required=True, help="Comma-separated AL(1),...,AL(K), e.g. 3.38,3.35,3.5")
    metrics.set_defaults(handler=_run_metrics)

    _register_results(sub)


def _run_eval(args) -> int:
    from aloe_bench.core.backends import BackendOptions
    from aloe_bench.core.recipes import dataclass_from_args

    from .eval_config import EvalConfig
    from .protocol import resolve_run
    from .runner import evaluate_model

    # resolved once, here; a bad field raises ConfigError: `aloe` prints it
    run = resolve_run(dataclass_from_args(args, EvalConfig), dataclass_from_args(args, BackendOptions))
    if getattr(args, "print_config", False):
        print(json.dumps(run.settings, indent=2, ensure_ascii=False))
        return 0
    results = evaluate_model(run)
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
