"""Publishing results: the results dataset repo (harness/results_dataset.py) and the evaluated model's eval results.

On the model repo, one commit writes both the legacy `model-index` in README.md and `.eval_results/aloe.yaml`
(huggingface_hub's `EvalResultEntry` format, which the Hub shows on the model page and the benchmark's
leaderboard). A model the token's user does not own gets a pull request with `create_pr=True` instead.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from aloe_bench.core.eval_results import (EVAL_RESULTS_PATH, aloe_eval_results, eval_result_entries,
                                          eval_results_yaml)
from aloe_bench.core.run_files import Run

from .results_dataset import push_runs

logger = logging.getLogger(__name__)


def evaluated_hub_model(results: dict) -> str | None:
    """The Hub repo id of the evaluated model, or None (local folder, endpoint, embedded)."""
    spec = (((results.get("config") or {}).get("models") or {}).get("model") or {}).get("spec") or {}
    name = spec.get("name")
    if spec.get("kind") != "hf" or not name or Path(name).exists() or name.count("/") != 1:
        return None
    return name


def publish_model_eval_results(results: dict, model_repo: str, results_repo: str | None = None,
                               create_pr: bool = False, token: str | None = None) -> dict:
    """Write model-index + `.eval_results/aloe.yaml` to `model_repo` in one commit (a PR with `create_pr`).

    Without `create_pr`, a model the token's user does not own is left alone and the answer says so.
    """
    from huggingface_hub import CommitOperationAdd, HfApi, ModelCard
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError

    api = HfApi(token=token or os.environ.get("HF_TOKEN"))
    me = api.whoami()
    owners = {me.get("name")} | {org.get("name") for org in me.get("orgs", []) or []}
    owned = model_repo.split("/")[0] in owners
    if not owned and not create_pr:
        return {"model": model_repo, "status": "skipped",
                "reason": f"{me.get('name')} does not own {model_repo}; pass --create-pr to open a pull request"}
    try:
        card = ModelCard.load(model_repo, token=api.token)
    except (EntryNotFoundError, RepositoryNotFoundError):
        card = ModelCard("")
    source = f"https://huggingface.co/datasets/{results_repo}" if results_repo else None
    new = aloe_eval_results(results, source_url=source)
    replaced = {(e.dataset_type, e.metric_type) for e in new}
    kept = [e for e in card.data.eval_results or [] if (e.dataset_type, e.metric_type) not in replaced]
    card.data.eval_results = kept + new  # other benchmarks' entries stay
    card.data.model_name = card.data.model_name or model_repo.split("/")[-1]
    entries = eval_result_entries(results, source_url=source, source_name="ALOE results" if source else None)
    operations = [CommitOperationAdd("README.md", str(card).encode()),
                  CommitOperationAdd(EVAL_RESULTS_PATH, eval_results_yaml(entries).encode())]
    commit = api.create_commit(model_repo, operations, create_pr=create_pr,
                               commit_message="Add ALOE eval results (aloe-bench)")
    return {"model": model_repo, "status": "pull request" if create_pr else "committed",
            "url": getattr(commit, "pr_url", None) or getattr(commit, "commit_url", None)}


def push_results(files, results: dict, repo_id: str, public: bool = False, create_pr: bool = False) -> dict:
    """`aloe eval --push-to-hub`: this run to the results dataset repo, then its scores to the model's repo."""
    run = Run(results, files.results_path, files.samples_path, rows=files.load_samples())
    pushed = push_runs([run], repo_id, public=public)
    model = evaluated_hub_model(results)
    if model is not None:
        pushed["model_card"] = publish_model_eval_results(results, model, repo_id, create_pr=create_pr)
        if pushed["model_card"]["status"] == "skipped":
            logger.warning(f"aloe eval --push-to-hub: eval results not written to {model}: "
                           f"{pushed['model_card']['reason']}")
    return pushed
