"""Publishing results: a results dataset repo on the Hub, and eval results on the model's card when the user owns it.

The upload folder is built on disk first (`build_results_folder`), loadable with `datasets.load_dataset(folder,
"results")`, then sent in one commit. Each run adds its own parquet files, so a repo accumulates runs.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from datasets import Dataset, Features, List, Value

METRICS = Features({
    "run_id": Value("string"),
    "model": Value("string"),
    "judge": Value("string"),
    "created": Value("string"),
    "metrics": {
        "AL": List(Value("float64")),
        "AL_avg": Value("float64"), "IR": Value("float64"), "N_IR": Value("float64"),
        "R2": Value("float64"), "N_R2": Value("float64"),
        "intervals": {name: List(Value("float64")) for name in ("AL_avg", "IR", "N_IR", "R2", "N_R2")},
    },
    "counts": {name: Value("int64") for name in ("conversations", "turns", "rows", "scored", "judge_failures",
                                                 "generation_failures", "stopped_conversations")},
    "config": Value("string"),  # the full config block, as JSON
})

CARD = """---
configs:
- config_name: results
  data_files:
  - split: train
    path: results/*.parquet
  default: true
- config_name: samples
  data_files:
  - split: train
    path: samples/*.parquet
tags:
- aloe
- evaluation
- personalization
---

# ALOE results

Results of the ALOE benchmark (multi-turn personalised alignment) written by `aloe eval --push-to-hub`.

- `results`: one row per run: model, judge, AL per turn, AL_avg, IR, N_IR, R2, N_R2 with bootstrap intervals,
  counts, and the full config (model revisions, prompt hashes, seeds, package versions) as JSON.
- `samples`: one row per persona and turn: user message, reply, judge answer and score (null when the judge failed).

Always read a score together with its judge: runs judged by the embedded 135M model are smoke runs.

```python
from datasets import load_dataset
results = load_dataset("{repo_id}", "results", split="train")
```
"""


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:80]


def results_row(results: dict) -> dict:
    metrics = results["metrics"]
    return {
        "run_id": results["run_id"], "model": results["model"], "judge": results["judge"],
        "created": results["created"],
        "metrics": {k: metrics[k] for k in ("AL", "AL_avg", "IR", "N_IR", "R2", "N_R2", "intervals")},
        "counts": results["counts"],
        "config": json.dumps(results["config"], sort_keys=True),
    }


def build_results_folder(samples: list[dict], results: dict, folder: Path, repo_id: str) -> Path:
    """Write the exact folder that `push_results` uploads."""
    folder = Path(folder)
    stem = f"{results['run_id']}-{_slug(results['model'])}"
    (folder / "results").mkdir(parents=True, exist_ok=True)
    (folder / "samples").mkdir(parents=True, exist_ok=True)
    Dataset.from_list([results_row(results)], features=METRICS).to_parquet(folder / "results" / f"{stem}.parquet")
    flat = [{**row, "judge_distribution": json.dumps(row.get("judge_distribution")),
             "latency_s": json.dumps(row.get("latency_s")), "tokens": json.dumps(row.get("tokens"))} for row in samples]
    Dataset.from_list(flat).to_parquet(folder / "samples" / f"{stem}.parquet")
    (folder / "README.md").write_text(CARD.replace("{repo_id}", repo_id), encoding="utf-8")
    return folder


def model_index_results(results: dict, results_repo: str):
    """EvalResult entries for the evaluated model's card (AL_avg, IR, N_IR), sourced to the results repo."""
    from aloe_bench.core.eval_results import aloe_eval_results

    return aloe_eval_results(results, dataset_type=results_repo,
                             dataset_name=f"ALOE ({results['config']['personas']['name']})",
                             source_url=f"https://huggingface.co/datasets/{results_repo}")


def push_results(files, results: dict, repo_id: str) -> str:
    """Upload this run's results to `repo_id` (a dataset repo) in one commit; update the model card if owned."""
    from huggingface_hub import HfApi, metadata_update
    from huggingface_hub.repocard_data import eval_results_to_model_index

    folder = build_results_folder(files.load_samples(), results, files.dir / "hub" / files.run_id, repo_id)
    api = HfApi(token=os.environ.get("HF_TOKEN"))
    api.create_repo(repo_id, repo_type="dataset", exist_ok=True)
    commit = api.upload_folder(repo_id=repo_id, repo_type="dataset", folder_path=folder,
                               commit_message=f"ALOE results {results['run_id']} for {results['model']}")
    model = results["config"]["models"]["model"]["spec"]
    if model["kind"] == "hf" and not Path(model["name"]).exists():
        me = api.whoami()
        owners = {me.get("name")} | {org.get("name") for org in me.get("orgs", [])}
        if model["name"].split("/")[0] in owners:
            index = eval_results_to_model_index(model["name"], model_index_results(results, repo_id))
            metadata_update(model["name"], {"model-index": index}, overwrite=True, token=api.token,
                            commit_message="Add ALOE eval results")
    return commit.commit_url if hasattr(commit, "commit_url") else str(commit)
