"""Test-only helpers for what gets published: a results dataset folder built from one run held in memory, and
`.eval_results/*.yaml` text read back into huggingface_hub's entries."""

from __future__ import annotations

from pathlib import Path

import yaml

from aloe_bench.core.eval_results import EVAL_RESULTS_PATH
from aloe_bench.core.run_files import Run
from aloe_bench.harness.results_dataset import merge_runs


def build_results_folder(samples: list[dict], results: dict, folder: Path, repo_id: str | None) -> Path:
    """Build (or merge into) the results dataset folder with one run, exactly as it is uploaded."""
    merge_runs([Run(results, Path(folder), Path(folder), rows=samples)], folder, repo_id, complete=True)
    return Path(folder)


def parse_eval_results_yaml(text: str) -> list:
    """`.eval_results/*.yaml` text back into `EvalResultEntry` objects (huggingface_hub's own parser)."""
    from huggingface_hub import parse_eval_result_entries

    data = yaml.safe_load(text) or []
    if not isinstance(data, list):
        raise ValueError(f"{EVAL_RESULTS_PATH}: expected a list of results, got {type(data).__name__}")
    return parse_eval_result_entries(data)
