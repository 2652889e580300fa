"""`aloe judge rescore | agree | push-ratings`: check a judge against another judge or against people."""

from __future__ import annotations

import json
import os
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


def register(sub) -> None:
    judge = sub.add_parser("judge", help="Re-score a run with another judge, measure agreement, publish ratings.")
    judge_sub = judge.add_subparsers(dest="judge_command", metavar="JUDGE", required=True)

    rescore = judge_sub.add_parser("rescore", help="Re-judge every judged row of a finished run with another judge.")
    rescore.add_argument("run_dir", help="A run folder (results_*/samples_* at any depth) or a samples file.")
    rescore.add_argument("--judge-model", "--judge_model", dest="judge_model", required=True)
    rescore.add_argument("--judge-preset", "--judge_preset", dest="judge_preset", default="paper")
    rescore.add_argument("--judge-scoring", "--judge_scoring", dest="judge_scoring", default="auto")
    rescore.add_argument("--judge-max-retries", "--judge_max_retries", dest="judge_max_retries", type=int, default=2)
    rescore.add_argument("--judge-base-url", "--judge_base_url", dest="judge_base_url", default=None)
    rescore.add_argument("--api-key-env", "--api_key_env", dest="api_key_env", default="OPENAI_API_KEY")
    rescore.add_argument("--run-id", "--run_id", dest="run_id", default=None)
    rescore.add_argument("--output-dir", "--output_dir", dest="output_dir", required=True)
    rescore.add_argument("--batch-size", "--batch_size", dest="batch_size", type=int, default=16)
    rescore.add_argument("--seed", type=int, default=0)
    rescore.add_argument("--no-cache", dest="cache", action="store_false")
    rescore.set_defaults(handler=_run_rescore)

    agree = judge_sub.add_parser("agree", help="Agreement of judges and people on the same (persona, turn) rows.")
    agree.add_argument("sources", nargs="+", help="Run folders, samples files or ratings files (two or more raters).")
    agree.add_argument("--run-id", "--run_id", dest="run_id", default=None)
    agree.add_argument("--resamples", type=int, default=1000, help="Bootstrap resamples over conversations.")
    agree.add_argument("--seed", type=int, default=0)
    agree.add_argument("--output", default=None, help="Also write the JSON here.")
    agree.set_defaults(handler=_run_agree)

    push = judge_sub.add_parser("push-ratings", help="Publish ratings files to a Hub dataset in one commit.")
    push.add_argument("files", nargs="+", help="Ratings JSONL files (the Rate tab writes one per rater).")
    push.add_argument("--repo-id", "--repo_id", dest="repo_id", required=True)
    push.add_argument("--local-dir", "--local_dir", dest="local_dir", default=None,
                      help="Only build the exact folder that would be uploaded, here (works offline).")
    push.set_defaults(handler=_run_push)


def _run_rescore(args) -> int:
    from aloe_bench.core.backends import BackendOptions

    from .rescore import RescoreConfig, rescore_run

    cfg = RescoreConfig(run_dir=args.run_dir, output_dir=args.output_dir, judge_model=args.judge_model,
                        judge_base_url=args.judge_base_url,
                        judge_preset=args.judge_preset, judge_scoring=args.judge_scoring,
                        judge_max_retries=args.judge_max_retries, run_id=args.run_id, batch_size=args.batch_size,
                        seed=args.seed, cache=args.cache)
    results = rescore_run(cfg, options=BackendOptions(api_key_env=args.api_key_env))
    print(json.dumps({k: results[k] for k in ("rescore_of", "judge", "counts")} | {
        "metrics": {k: v for k, v in results["metrics"].items() if k != "intervals"},
        "results_file": results["results_file"]}, indent=2))
    return 0


def _run_agree(args) -> int:
    from aloe_bench.core.io import emit_report

    from .agreement import agree

    report = agree(args.sources, run_id=args.run_id, n_resamples=args.resamples, seed=args.seed)
    emit_report(report, args.output)
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

    if args.local_dir:
        folder = build_ratings_folder(args.files, args.local_dir)
        print(json.dumps({"folder": str(folder), "repo_id": args.repo_id, "uploaded": False}, indent=2))
        return 0
    from huggingface_hub import HfApi, constants

    if constants.HF_HUB_OFFLINE:
        raise HubUploadError("HF_HUB_OFFLINE is set: nothing was pushed (use --local-dir to build the folder)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = build_ratings_folder(args.files, tmp)  # bad ratings files stop here, before any Hub call
        try:
            api = HfApi(token=os.environ.get("HF_TOKEN"))
            api.create_repo(args.repo_id, repo_type="dataset", exist_ok=True)
            commit = api.upload_folder(repo_id=args.repo_id, repo_type="dataset", folder_path=folder,
                                       commit_message="ALOE human ratings")
        except Exception as exc:  # network / auth: one commit, so nothing is half-uploaded
            raise HubUploadError(f"upload failed, nothing was pushed: {type(exc).__name__}: {exc}") from exc
    print(json.dumps({"repo_id": args.repo_id, "uploaded": True, "commit": str(commit)}, indent=2))
    return 0
