"""`aloe judge rescore | agree | push-ratings`: check a judge against another judge or against people.

`push-ratings` builds the ratings dataset folder here (`build_ratings_folder`): it is the one command that writes it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from aloe_bench.core.io import atomic_write_text

RATINGS_CARD = """---
configs:
- config_name: ratings
  data_files:
  - split: train
    path: ratings/*.parquet
  default: true
tags:
- aloe
- human-ratings
---

# ALOE human ratings

Ratings of ALOE replies (1-5) collected in the Space's Rate tab, blind to model name and judge score. One row per
rater and (run_id, persona_id, turn): the rater's last rating of that row (`score` null: skipped).
Compare them with a judge: `aloe judge agree RUN_DIR ratings.jsonl`.
"""


@dataclass
class AgreeConfig:
    """`aloe judge agree`: the raters to compare (two or more) and the bootstrap."""

    sources: list[str] = field(metadata={"positional": True,
                                         "help": "Run folders, samples files or ratings files (two or more raters)."})
    run_id: str | None = None
    resamples: int = field(default=1000, metadata={"help": "Bootstrap resamples over conversations."})
    seed: int = 0
    output: str | None = field(default=None, metadata={"help": "Also write the JSON here."})


@dataclass
class PushRatingsConfig:
    """`aloe judge push-ratings`: the ratings files and where they go."""

    files: list[str] = field(metadata={"positional": True,
                                       "help": "Ratings JSONL files (the Rate tab writes one per rater)."})
    repo_id: str = field(metadata={"help": "Hub dataset repo ORG/NAME."})
    local_dir: str | None = field(default=None, metadata={
        "help": "Only build the exact folder that would be uploaded, here (works offline)."})


def _rescore_types() -> list:
    """`aloe judge rescore`'s dataclass, loaded when that command is parsed (its module imports the backends)."""
    from aloe_bench.harness.rescore import RescoreConfig

    return [RescoreConfig]


def register(sub) -> None:
    from aloe_bench.core.recipes import add_command_group, add_recipe_command

    actions = add_command_group(sub, "judge", "Re-score a run with another judge, measure agreement, publish ratings.",
                                metavar="JUDGE")
    add_recipe_command(actions, "rescore", _rescore_types, _run_rescore,
                       "Re-judge every judged row of a finished run with another judge.")
    add_recipe_command(actions, "agree", [AgreeConfig], _run_agree,
                       "Agreement of judges and people on the same (persona, turn) rows.")
    add_recipe_command(actions, "push-ratings", [PushRatingsConfig], _run_push,
                       "Publish ratings files to a Hub dataset in one commit.")


def _run_rescore(args) -> int:
    from aloe_bench.core.recipes import dataclass_from_args
    from aloe_bench.harness.rescore import RescoreConfig, rescore_run

    results = rescore_run(dataclass_from_args(args, RescoreConfig))
    print(json.dumps({k: results[k] for k in ("rescore_of", "judge", "counts")} | {
        "metrics": {k: v for k, v in results["metrics"].items() if k != "intervals"},
        "results_file": results["results_file"]}, indent=2))
    return 0


def _run_agree(args) -> int:
    from aloe_bench.core.io import emit_report
    from aloe_bench.core.recipes import dataclass_from_args
    from aloe_bench.harness.agreement import agree

    cfg = dataclass_from_args(args, AgreeConfig)
    report = agree(cfg.sources, run_id=cfg.run_id, n_resamples=cfg.resamples, seed=cfg.seed)
    emit_report(report, cfg.output)
    return 0


def build_ratings_folder(files: list[str], folder: str | Path) -> Path:
    """The exact folder `push-ratings` uploads: one parquet per rater (last rating per row) and a card."""
    from datasets import Dataset, Features, Value

    from aloe_bench.core.ratings import RatingsError, latest_ratings, read_ratings

    features = Features({"rater": Value("string"), "run_id": Value("string"), "persona_id": Value("string"),
                         "turn": Value("int64"), "score": Value("int64"), "time": Value("string")})
    by_rater: dict[str, list[dict]] = {}
    for record in latest_ratings([r for f in files for r in read_ratings(f)]).values():
        by_rater.setdefault(record["rater"], []).append({k: record[k] for k in features})
    if not by_rater:
        raise RatingsError(f"{', '.join(files)}: no ratings")
    folder = Path(folder)
    (folder / "ratings").mkdir(parents=True, exist_ok=True)
    for rater, rows in sorted(by_rater.items()):
        Dataset.from_list(rows, features=features).to_parquet(folder / "ratings" / f"{rater}.parquet")
    atomic_write_text(folder / "README.md", RATINGS_CARD)
    return folder


def _run_push(args) -> int:
    import tempfile

    from aloe_bench.core.errors import HubUploadError
    from aloe_bench.core.recipes import dataclass_from_args

    cfg = dataclass_from_args(args, PushRatingsConfig)
    if cfg.local_dir:
        folder = build_ratings_folder(cfg.files, cfg.local_dir)
        print(json.dumps({"folder": str(folder), "repo_id": cfg.repo_id, "uploaded": False}, indent=2))
        return 0
    from huggingface_hub import HfApi, constants

    if constants.HF_HUB_OFFLINE:
        raise HubUploadError("HF_HUB_OFFLINE is set: nothing was pushed (use --local-dir to build the folder)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = build_ratings_folder(cfg.files, tmp)  # bad ratings files stop here, before any Hub call
        try:
            api = HfApi(token=os.environ.get("HF_TOKEN"))
            api.create_repo(cfg.repo_id, repo_type="dataset", exist_ok=True)
            commit = api.upload_folder(repo_id=cfg.repo_id, repo_type="dataset", folder_path=folder,
                                       commit_message="ALOE human ratings")
        except Exception as exc:  # network / auth: one commit, so nothing is half-uploaded
            raise HubUploadError(f"upload failed, nothing was pushed: {type(exc).__name__}: {exc}") from exc
    print(json.dumps({"repo_id": cfg.repo_id, "uploaded": True, "commit": str(commit)}, indent=2))
    return 0
