"""`aloe results push RUN_DIR...`: publish ALOE runs as a results dataset (a Hub repo or a local folder), and
their scores on the evaluated models' cards."""

from __future__ import annotations

import json
from dataclasses import dataclass, field


@dataclass
class ResultsPushConfig:
    """`aloe results push`: which runs, where to, and whether to touch the evaluated models' repos."""

    runs: list[str] = field(metadata={"positional": True, "metavar": "RUN_DIR",
                                      "help": "aloe eval --output_dir folders or results_*.json"})
    repo_id: str | None = field(default=None, metadata={"help": "Results dataset repo ORG/NAME."})
    local_dir: str | None = field(default=None, metadata={
        "help": "Build or merge into this folder exactly as it would be uploaded; upload nothing."})
    public: bool = field(default=False, metadata={"switch": True, "help": "Create the repo public (default: private)."})
    create_pr: bool = field(default=False, metadata={
        "switch": True, "help": "Open a pull request with the eval results on evaluated models you do not own."})
    model_card: bool = field(default=True, metadata={
        "help": "Write eval results to the evaluated models' repos (--no-model-card: do not)."})


def register(sub) -> None:
    from aloe_bench.core.recipes import add_command_group, add_recipe_command

    actions = add_command_group(sub, "results", "Publish ALOE runs as a results dataset (Hub repo or local folder).")
    add_recipe_command(actions, "push", [ResultsPushConfig], _run_results_push,
                       "Add runs (aloe eval output folders or results files) to a results dataset: one split per "
                       "run, `latest_<model>`, a `results` config.")


def _run_results_push(args) -> int:
    from aloe_bench.core.errors import AloeError, ConfigError, HubUploadError
    from aloe_bench.core.recipes import dataclass_from_args
    from aloe_bench.harness.publish import evaluated_hub_model, publish_model_eval_results
    from aloe_bench.harness.results_dataset import load_runs, push_runs

    cfg = dataclass_from_args(args, ResultsPushConfig)
    if cfg.local_dir is None and not cfg.repo_id:
        raise ConfigError("give --repo-id ORG/NAME (or --local-dir DIR to build the folder only)")
    runs = load_runs(cfg.runs)
    try:
        report = push_runs(runs, cfg.repo_id, public=cfg.public, local_dir=cfg.local_dir)
    except AloeError:
        raise
    except Exception as exc:  # Hub errors (offline, auth, HTTP): say what failed; the runs on disk are untouched
        if cfg.local_dir is not None:
            raise  # nothing was uploaded: not a Hub error
        raise HubUploadError(f"upload to {cfg.repo_id} failed: {type(exc).__name__}: {exc}") from exc
    if cfg.local_dir is None and cfg.model_card:
        report["model_cards"] = []
        for run in runs:
            model = evaluated_hub_model(run.results)
            if model is not None:
                try:
                    report["model_cards"].append(publish_model_eval_results(run.results, model, cfg.repo_id,
                                                                            create_pr=cfg.create_pr))
                except Exception as exc:
                    report["model_cards"].append({"model": model, "status": "failed",
                                                  "reason": f"{type(exc).__name__}: {exc}"})
    print(json.dumps(report, indent=2))
    return 1 if any(c["status"] == "failed" for c in report.get("model_cards", [])) else 0
