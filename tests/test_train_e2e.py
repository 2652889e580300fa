"""End to end on the embedded model: SFT, then DPO from the SFT checkpoint, a harness run, the card and the push folder.

Everything is tiny (8 pairs, 2 optimizer steps, max_length 256) so it fits the test budget on 2 CPU cores.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from datasets import Dataset

from aloe_bench.core import schema

pytestmark = pytest.mark.slow

EXCHANGES = [
    ("I just got back from a trail run in the hills.", "Nice! How long was it? Hill trails are great training.", "Ok."),
    ("My sourdough starter smells like vinegar today.", "That smell means it is hungry; feed it twice a day.", "No idea."),
    ("I'm planning a trip to Kyoto in spring.", "Book early: the cherry blossom weeks fill up fast.", "Ok."),
    ("My cat keeps knocking things off my desk.", "She wants attention; a perch next to the desk may help.", "No idea."),
    ("I started learning the cello last month.", "Exciting! Are you working on long bow strokes yet?", "Ok."),
    ("I'm repainting my kitchen this weekend.", "A satin finish wipes clean easily, good for kitchens.", "No idea."),
    ("I've been reading a lot of sci-fi lately.", "Any favourites? The Dispossessed is a great pick.", "Ok."),
    ("We adopted a rescue dog yesterday.", "Congratulations! Give her a quiet corner to settle in.", "No idea."),
]
COMMON = ["--max_steps", "2", "--per_device_train_batch_size", "2", "--per_device_eval_batch_size", "2",
          "--max_length", "128", "--logging_steps", "1", "--save_steps", "100", "--warmup_steps", "0"]


def write_dataset(root: Path, configs=("sft", "dpo"), n_test: int = 2) -> Path:
    """A dataset folder in the Hub layout (`<config>/<split>-00000-of-00001.parquet` + README configs)."""
    rows = [dict(prompt=[{"role": "user", "content": u}], chosen=[{"role": "assistant", "content": good}],
                 rejected=[{"role": "assistant", "content": bad}], persona_id=f"p{i}", conversation_id=f"c{i}", turn=1)
            for i, (u, good, bad) in enumerate(EXCHANGES)]
    yaml_configs = []
    for config in configs:
        for split, part in (("train", rows[:-n_test]), ("test", rows[-n_test:])):
            if config == "sft":
                part = [dict(prompt=r["prompt"], completion=r["chosen"], persona_id=r["persona_id"],
                             conversation_id=r["conversation_id"], turn=r["turn"]) for r in part]
            (root / config).mkdir(parents=True, exist_ok=True)
            Dataset.from_list(part, features=schema.CONFIGS[config]).to_parquet(
                str(root / config / f"{split}-00000-of-00001.parquet"))
        yaml_configs.append(f"- config_name: {config}\n  data_files:\n  - split: train\n    path: {config}/train-*\n"
                            f"  - split: test\n    path: {config}/test-*")
    (root / "README.md").write_text("---\nconfigs:\n" + "\n".join(yaml_configs) + "\n---\n")
    return root


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("aloe_data"))


@pytest.fixture(scope="module")
def sft_dir(dataset_dir, tmp_path_factory, embedded_model_dir):
    from aloe_bench.commands.train import run_stage

    out = tmp_path_factory.mktemp("ckpt") / "sft"
    recipe = Path(__file__).resolve().parents[1] / "training/recipes/embedded/sft.yaml"
    assert run_stage("sft", ["--config", str(recipe), "--dataset_name", str(dataset_dir), "--output_dir", str(out),
                             *COMMON]) == 0
    return out


@pytest.fixture(scope="module")
def dpo_dir(sft_dir, dataset_dir):
    from aloe_bench.commands.train import run_stage

    out = sft_dir.parent / "dpo"
    recipe = Path(__file__).resolve().parents[1] / "training/recipes/embedded/dpo.yaml"
    assert run_stage("dpo", ["--config", str(recipe), "--model_name_or_path", str(sft_dir), "--dataset_name",
                             str(dataset_dir), "--output_dir", str(out), *COMMON]) == 0
    return out


def test_sft_checkpoint_reloads_and_records_its_base(sft_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(sft_dir)
    tokenizer = AutoTokenizer.from_pretrained(sft_dir)
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "Hi!"}], add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=4, do_sample=False)
    assert out.shape[1] > ids["input_ids"].shape[1]
    info = json.loads((sft_dir / "aloe_training.json").read_text())
    assert info["stage"] == "sft" and info["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert info["train_rows"] == 6 and info["metrics"]["throughput"]["steps"] == 2
    assert info["metrics"]["throughput"]["tokens_per_second"] > 0
    recipe = (sft_dir / "aloe_recipe.yaml").read_text()
    assert "max_steps: 2" in recipe and "use_cpu: true" in recipe  # YAML values and CLI overrides, as run


def test_dpo_preference_eval_is_consistent_with_trl(dpo_dir, sft_dir):
    evaluation = json.loads((dpo_dir / "aloe_preference_eval.json").read_text())
    info = json.loads((dpo_dir / "aloe_training.json").read_text())
    assert info["stage"] == "dpo" and info["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert Path(evaluation["reference"]).resolve() == sft_dir.resolve() and evaluation["pairs"] == 2
    pol, ref, rewards = evaluation["policy_raw"], evaluation["reference_raw"], evaluation["policy_rewards"]
    # the implicit-reward margin is beta times the change of the raw log-prob margin
    assert rewards["margin"] == pytest.approx(evaluation["beta"] * (pol["logp_margin"] - ref["logp_margin"]), abs=1e-4)
    assert evaluation["improved"] == (pol["logp_margin"] > ref["logp_margin"])
    # and DPO learns: the held-out pairs follow the training pairs' pattern (a relevant reply over "Ok."), so two
    # steps already move their margin towards the chosen reply
    assert evaluation["improved"] and rewards["margin"] > 0
    # and it agrees with TRL's own evaluation of the same pairs (one batch of 2)
    trl_eval = info["metrics"]["trl_eval"]
    assert rewards["margin"] == pytest.approx(trl_eval["eval_rewards/margins"], abs=1e-3)
    assert rewards["accuracy"] == pytest.approx(trl_eval["eval_rewards/accuracies"])
    assert all(math.isfinite(v) for v in (pol["logp_chosen"], ref["logp_rejected"]))


def test_harness_scores_the_checkpoint_and_the_card_carries_it(dpo_dir):
    from aloe_bench.commands.main import main
    from aloe_bench.training.card import build_push_folder

    assert main(["eval", "--protocol", "smoke", "--model", str(dpo_dir), "--max_personas", "1", "--turns", "2",
                 "--output_dir",
                 str(dpo_dir / "aloe_eval"), "--bootstrap_resamples", "10", "--progress", "false",
                 "--reply_max_new_tokens", "16", "--user_max_new_tokens", "16"]) == 0
    results = json.loads(next((dpo_dir / "aloe_eval").rglob("results_*.json")).read_text())  # <model>/ layout
    folder = build_push_folder(dpo_dir, repo_id="someone/aloe-dpo-tiny")
    card = (folder / "README.md").read_text()
    assert "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in card
    assert "\n# aloe-dpo-tiny\n" in card  # the title is the repo name
    assert str(dpo_dir) not in card.split("---")[1]  # no local path in the metadata
    assert "model-index" in card and "AL@1" in card and "AL@2" in card
    from huggingface_hub import ModelCard

    data = ModelCard.load(folder / "README.md").data
    values = {r.metric_type: r.metric_value for r in data.eval_results}
    if results["metrics"]["AL_avg"] is not None:
        assert values["AL_avg"] == pytest.approx(results["metrics"]["AL_avg"], abs=1e-4)
    assert all(r.source_url.startswith("https://huggingface.co/someone/aloe-dpo-tiny") for r in data.eval_results)
    assert "Wu, Shujin" in card and "held-out pairs" in card.lower()
    assert "embedded 135M model" in card  # the honest caveat about a self-judging small model
    assert json.loads((folder / "aloe_eval_results.json").read_text())["model"] == results["model"]


def test_push_folder_is_what_gets_uploaded_and_offline_upload_fails_clearly(dpo_dir):
    from aloe_bench.core.hub_upload import HubUploadError
    from aloe_bench.training.card import build_push_folder, push_checkpoint

    folder = build_push_folder(dpo_dir, repo_id="someone/aloe-dpo-tiny")
    names = {p.name for p in folder.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json", "README.md",
            "aloe_recipe.yaml", "aloe_training.json", "aloe_preference_eval.json"} <= names
    assert not any(n.startswith("checkpoint-") or n in ("training_args.bin", "hub") for n in names)
    # only files, plus `.eval_results/` holding exactly the Hub's eval-results file when a harness run exists
    assert all(p.is_file() or (p.name == ".eval_results" and [q.name for q in p.iterdir()] == ["aloe.yaml"])
               for p in folder.iterdir())
    assert (folder / "model.safetensors").stat().st_size == (dpo_dir / "model.safetensors").stat().st_size
    with pytest.raises(HubUploadError, match="HF_HUB_OFFLINE") as err:
        push_checkpoint(dpo_dir, "someone/aloe-dpo-tiny")
    assert str(folder) in str(err.value)


def test_card_refuses_results_of_another_model(dpo_dir, sft_dir, tmp_path):
    from aloe_bench.training.card import find_eval_results

    other = {"model": str(sft_dir), "judge": "x", "metrics": {"AL": [3.0, 3.0]}}
    (tmp_path / "results_1.json").write_text(json.dumps(other))
    with pytest.raises(ValueError, match="not for"):
        find_eval_results(dpo_dir, tmp_path)


def test_kto_with_lora_saves_a_merged_loadable_folder(sft_dir, dataset_dir):
    from transformers import AutoModelForCausalLM

    from aloe_bench.commands.train import run_stage

    kto = sft_dir.parent / "kto-lora"
    args = ["--model_name_or_path", str(sft_dir), "--dataset_name", str(dataset_dir), "--output_dir", str(kto),
            "--use_cpu", "--report_to", "none", "--use_peft", "--lora_r", "4", "--lora_target_modules", "q_proj",
            "v_proj", *COMMON, "--max_steps", "1"]
    assert run_stage("kto", args) == 0
    assert not (kto / "adapter_config.json").exists()  # merged: a plain model folder
    AutoModelForCausalLM.from_pretrained(kto)
    info = json.loads((kto / "aloe_training.json").read_text())
    assert info["stage"] == "kto" and info["lora"] is True
    assert info["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_missing_dataset_config_names_it(tmp_path):
    from aloe_bench.training.common import TrainingDataError
    from aloe_bench.training.sft import sft_rows

    only_sft = write_dataset(tmp_path / "only_sft", configs=("sft",))
    with pytest.raises(TrainingDataError, match="dpo"):
        sft_rows(str(only_sft), "rejected", "train")
    with pytest.raises(ValueError, match="sft_source"):
        sft_rows(str(only_sft), "chosen", "train")
