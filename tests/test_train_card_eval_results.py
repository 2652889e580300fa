"""Checkpoint cards publish ALOE scores on the one benchmark identity, in both the model-index and
`.eval_results/aloe.yaml`, with the number of personas actually evaluated (fast: no training, a recorded run)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from huggingface_hub import ModelCard

from aloe_bench.core.eval_results import EVAL_RESULTS_PATH, benchmark_dataset
from aloe_bench.core.run_files import model_dir_name
from publish_helpers import parse_eval_results_yaml


def checkpoint(tmp_path: Path, flat: bool) -> Path:
    ckpt = tmp_path / "dpo"
    ckpt.mkdir(parents=True)
    (ckpt / "aloe_training.json").write_text(json.dumps({
        "stage": "dpo", "dataset": "someone/aloe-preference", "dataset_config": "dpo", "beta": 0.1,
        "base_model": "HuggingFaceTB/SmolLM2-135M-Instruct", "parent_model": "someone/sft", "train_rows": 4}))
    (ckpt / "config.json").write_text("{}")
    runs = ckpt / "aloe_eval" if flat else ckpt / "aloe_eval" / model_dir_name(str(ckpt))
    runs.mkdir(parents=True)
    results = {"model": str(ckpt), "judge": "openai:gpt-4o-mini (paper, text)", "created": "2026-12-01T10:00:00Z",
               "run_id": "20261201T100000",
               "metrics": {"AL": [2.0, 2.5, 3.0], "AL_avg": 2.5, "IR": 0.5, "N_IR": 0.5, "R2": 1.0, "N_R2": 1.0},
               "counts": {"conversations": 8, "turns": 3, "judge_failures": 0},
               "config": {"run": {"protocol": "paper"}, "personas": {"name": "default", "count": 100, "evaluated": 8}}}
    (runs / "results_20261201T100000.json").write_text(json.dumps(results))
    return ckpt


def test_card_and_eval_results_file_carry_the_run_in_either_layout(tmp_path):
    from aloe_bench.training.card import build_push_folder, find_eval_results

    for flat in (True, False):
        ckpt = checkpoint(tmp_path / ("flat" if flat else "nested"), flat)
        assert find_eval_results(ckpt)["metrics"]["AL_avg"] == 2.5
        folder = build_push_folder(ckpt, repo_id="someone/aloe-dpo")
        data = ModelCard.load(folder / "README.md").data
        assert {r.dataset_type for r in data.eval_results} == {benchmark_dataset()}
        assert {(r.dataset_config, r.dataset_split) for r in data.eval_results} == {("personas", "test")}
        assert all(r.metric_args == {"judge": "openai:gpt-4o-mini (paper, text)", "protocol": "paper", "turns": 3,
                                     "personas": 8} for r in data.eval_results)
        card = (folder / "README.md").read_text()
        assert "8 personas x 3 turns" in card and "100" not in card.split("---")[1]
        entries = parse_eval_results_yaml((folder / EVAL_RESULTS_PATH).read_text())
        assert [(e.task_id, e.value) for e in entries] == [("aloe_al_avg", 2.5), ("aloe_ir", 0.5), ("aloe_n_ir", 0.5)]
        assert {e.dataset_id for e in entries} == {benchmark_dataset()}
        assert all("personas: 8" in e.notes and "protocol: paper" in e.notes for e in entries)
        assert yaml.safe_load((folder / EVAL_RESULTS_PATH).read_text())[0]["source"]["url"].startswith(
            "https://huggingface.co/someone/aloe-dpo")
