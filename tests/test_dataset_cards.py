"""Every dataset folder the project writes describes its data in the card (`dataset_info`, as `push_to_hub` writes
it, plus a digest of the files), so a plain `load_dataset(folder, config)` reads the current build: rebuilt in
place with other row counts, or with the same sizes and other contents, under one `datasets` cache."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from datasets import load_dataset
from huggingface_hub import DatasetCard

from aloe_bench.training.dataset import BuildConfig, build_dataset
from aloe_bench.training.generate import generate_conversations
from aloe_bench.training.generate_config import GenerateConfig
from test_data_generate import RoleBackend, _roles


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """One `datasets` cache for the whole test (shared by every rebuild), new for each test."""
    import datasets

    cache = tmp_path / "hf-datasets-cache"
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(cache))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache))
    return cache


@pytest.fixture(scope="module")
def conversations(tmp_path_factory):
    folder = tmp_path_factory.mktemp("generated")
    answers = iter(["[[A]]", "[[B]]", "[[B]]"] * 100)
    cfg = GenerateConfig(output_dir=str(folder), n_conversations=4, turns=3, progress=False, cache=False,
                         judge_scoring="text")
    generate_conversations(cfg, backends=_roles(RoleBackend(judge_answer=lambda: next(answers))))
    return [json.loads(line) for line in (folder / "conversations.jsonl").read_text().splitlines()]


def _build(tmp_path: Path, records: list[dict], out: Path) -> dict:
    source = tmp_path / "conversations.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records))
    return build_dataset(BuildConfig(conversations=str(source), output_dir=str(out), test_fraction=0.25,
                                     overwrite=True))


def _sizes(folder: Path) -> list[dict]:
    """The card's `dataset_info` without the digests: every config's features, splits and sizes."""
    infos = DatasetCard.load(folder / "README.md").data.to_dict()["dataset_info"]
    return [{k: v for k, v in info.items() if k != "description"} for info in infos]


def _swapped(records: list[dict], swap: bool = True) -> list[dict]:
    """The records with replies of equal length in every turn, the two replies exchanged when `swap`: every
    config of the rebuilt folder has the same sizes, and every dpo row its chosen and rejected swapped."""
    out = []
    for r in records:
        turns = []
        for t in r["turns"]:
            one, two = f"alpha reply {r['id']} {t['turn']}", f"bravo reply {r['id']} {t['turn']}"
            turns.append({**t, "preferred": two if swap else one, "rejected": one if swap else two})
        out.append({**r, "turns": turns})
    return out


def test_preference_card_describes_every_config_as_push_to_hub_would(tmp_path, conversations, fresh_cache):
    out = tmp_path / "aloe"
    summary = _build(tmp_path, conversations, out)
    infos = {i["config_name"]: i for i in DatasetCard.load(out / "README.md").data.to_dict()["dataset_info"]}
    assert set(infos) == {"personas", "conversations", "sft", "dpo"}
    for name, info in infos.items():
        assert {s["name"]: s["num_examples"] for s in info["splits"]} == {
            s: n for s, n in summary["rows"][name].items() if n}
        assert all(s["num_bytes"] > 0 for s in info["splits"])
        assert info["dataset_size"] == sum(s["num_bytes"] for s in info["splits"])
        assert info["download_size"] == sum(p.stat().st_size for p in (out / name).glob("*.parquet"))
        assert info["description"].startswith("sha256 of the data files: ")
    assert [f["name"] for f in infos["dpo"]["features"]][:3] == ["prompt", "chosen", "rejected"]


def test_plain_load_dataset_reads_each_rebuild_in_place(tmp_path, conversations, fresh_cache):
    out = tmp_path / "aloe"
    _build(tmp_path, conversations, out)
    first = load_dataset(str(out), "dpo")
    assert first["train"].num_rows + first["test"].num_rows == sum(
        t["judge_choice"] is not None for r in conversations for t in r["turns"])

    _build(tmp_path, _swapped(conversations[:3], swap=False), out)  # another row count
    fewer = load_dataset(str(out), "dpo")
    assert fewer.num_rows != first.num_rows
    assert {r["conversation_id"] for s in fewer.values() for r in s} == {r["id"] for r in conversations[:3]}

    sizes = _sizes(out)
    _build(tmp_path, _swapped(conversations[:3]), out)  # the same sizes, chosen and rejected swapped
    assert _sizes(out) == sizes
    swapped = load_dataset(str(out), "dpo")
    for split in fewer:
        assert swapped[split]["chosen"] == fewer[split]["rejected"]
        assert swapped[split]["rejected"] == fewer[split]["chosen"]


def test_results_and_ratings_folders_carry_dataset_info_and_reload_current_rows(tmp_path, fresh_cache):
    from test_results_dataset import make_run

    from aloe_bench.core.ratings import append_rating, rating_record
    from aloe_bench.core.run_files import find_runs
    from aloe_bench.commands.judge import build_ratings_folder
    from aloe_bench.harness.results_dataset import merge_runs

    runs = tmp_path / "runs"
    make_run(runs, "r1", "org/a", text_judge=True)
    out = tmp_path / "results"
    merge_runs(find_runs(runs), out)
    infos = {i["config_name"]: i for i in DatasetCard.load(out / "README.md").data.to_dict()["dataset_info"]}
    assert set(infos) == {"results", "samples"}
    assert load_dataset(str(out), "results", split="train").num_rows == 1
    make_run(runs, "r2", "org/b", text_judge=False, created_day=2)
    merge_runs(find_runs(runs), out)
    assert load_dataset(str(out), "results", split="train").num_rows == 2

    ratings = tmp_path / "ratings.jsonl"
    append_rating(ratings, rating_record("ann", "r1", "p1", 1, 2))
    folder = build_ratings_folder([str(ratings)], tmp_path / "ratings")
    assert load_dataset(str(folder), "ratings", split="train")["score"] == [2]
    info = DatasetCard.load(folder / "README.md").data.to_dict()["dataset_info"]
    assert info["config_name"] == "ratings" and info["splits"][0]["num_examples"] == 1
    append_rating(ratings, rating_record("ann", "r1", "p1", 1, 4))  # same sizes, another score
    build_ratings_folder([str(ratings)], folder)
    assert load_dataset(str(folder), "ratings", split="train")["score"] == [4]


@pytest.mark.slow
def test_trl_cli_reads_the_current_build(tmp_path, conversations, fresh_cache):
    """TRL's own CLI (`trl dpo --dataset_name FOLDER --dataset_config dpo`) after a rebuild in place with the same
    sizes and swapped pairs. It loads the data before the model, so a model path that does not exist makes the
    cheapest call that loads it; the rows it loaded are the arrow files it left in the shared `datasets` cache."""
    from datasets import Dataset

    out = tmp_path / "aloe"
    trl = [sys.executable, "-c", "import sys; from trl.cli import main; sys.argv[0] = 'trl'; sys.exit(main())"]
    args = [*trl, "dpo", "--dataset_name", str(out), "--dataset_config", "dpo", "--model_name_or_path",
            str(tmp_path / "no-model"), "--output_dir", str(tmp_path / "trl"), "--report_to", "none",
            "--use_cpu", "true", "--bf16", "false"]
    env = {"HF_DATASETS_CACHE": str(fresh_cache), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    loaded, sizes = [], []
    for swap in (False, True):
        _build(tmp_path, _swapped(conversations[:3], swap), out)
        before = set(fresh_cache.glob("aloe/dpo/*/*/aloe-train*.arrow"))
        run = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
        assert run.returncode != 0 and "no-model" in run.stderr + run.stdout  # it got as far as the model
        written = sorted(set(fresh_cache.glob("aloe/dpo/*/*/aloe-train*.arrow")) - before)
        assert written, "trl dpo loaded no new rows: it was served a cached build"
        loaded.append([row["chosen"] for path in written for row in Dataset.from_file(str(path))])
        sizes.append(_sizes(out))
    assert sizes[0] == sizes[1]
    current = load_dataset(str(out), "dpo", split="train")
    assert loaded[1] == current["chosen"] and loaded[0] == current["rejected"]
