"""`aloe eval`: score a model on ALOE with the settings of `EvalConfig` (flags, or a `--config` recipe)."""

from __future__ import annotations

import json
import logging

logger = logging.getLogger(__name__)


def register(sub) -> None:
    from aloe_bench.core.backends import BackendOptions
    from aloe_bench.core.recipes import add_recipe_command
    from aloe_bench.harness.eval_config import EvalConfig

    eval_parser = add_recipe_command(sub, "eval", [EvalConfig, BackendOptions], _run_eval,
                                     "Score a model on ALOE (offline on the embedded model by default).")
    eval_parser.add_argument("--print-config", "--print_config", dest="print_config", action="store_true",
                             help="Print the resolved run config as JSON and exit (loads no model).")


def _run_eval(args) -> int:
    from aloe_bench.core.backends import BackendOptions
    from aloe_bench.core.recipes import dataclass_from_args
    from aloe_bench.harness.eval_config import EvalConfig
    from aloe_bench.harness.protocol import resolve_run
    from aloe_bench.harness.runner import evaluate_model

    # resolved once, here; a bad field raises ConfigError: `aloe` prints it
    run = resolve_run(dataclass_from_args(args, EvalConfig), dataclass_from_args(args, BackendOptions))
    if getattr(args, "print_config", False):
        print(json.dumps(run.settings, indent=2, ensure_ascii=False))
        return 0
    if run.config.repeats > 1:
        return _run_repeats(run)
    results = evaluate_model(run)
    print(json.dumps({k: results[k] for k in ("protocol", "model", "judge", "counts")} | {
        "metrics": {k: v for k, v in results["metrics"].items() if k != "intervals"},
        "results_file": results["results_file"]}, indent=2))
    logger.info(_next_steps(results))
    return 0


def _run_repeats(run) -> int:
    """`--repeats K`: the K runs, then their group summary printed (without the per-repeat intervals) and kept."""
    from aloe_bench.harness.repeats import evaluate_repeats

    summary = evaluate_repeats(run)
    printed = {name: {k: v for k, v in values.items() if k != "bootstrap_intervals"}
               for name, values in summary["metrics"].items()}
    print(json.dumps({k: summary[k] for k in ("group_id", "repeats", "seeds", "model", "judge")} | {
        "runs": [{k: r[k] for k in ("index", "seed", "run_id")} for r in summary["runs"]],
        "metrics": printed, "summary_file": summary["summary_file"]}, indent=2))
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
