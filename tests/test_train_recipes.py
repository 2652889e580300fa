"""Recipes: every shipped YAML parses for its stage, CLI flags override it, unknown keys name the file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from aloe_bench.core.errors import ConfigError
from aloe_bench.commands.train import _bool_or_repo, parse_stage

RECIPES = Path(__file__).resolve().parents[1] / "training" / "recipes"
ACCELERATE = Path(__file__).resolve().parents[1] / "training" / "accelerate"


def _stage(path: Path) -> str:
    name = path.stem
    if name.startswith("sft"):
        return "sft"
    return "kto" if name == "kto" else "dpo"


# `aloe train online` recipes are not TRL stage recipes: tests/test_train_online*.py parse them with their command
ALL = sorted(p for p in RECIPES.glob("*/*.yaml") if not p.name.startswith("online"))


def test_recipes_cover_models_and_ablations():
    models = {p.parent.name for p in ALL}
    assert {"embedded", "llama-3-8b-instruct", "mistral-7b-instruct-v0.3", "qwen2-7b-instruct",
            "olmo-7b-0724-instruct"} <= models
    for model in models:  # every arm of `aloe reproduce --arms` has its recipe for every model
        assert {"sft.yaml", "sft_rejected.yaml", "dpo.yaml", "ipo.yaml", "kto.yaml"} <= {
            p.name for p in ALL if p.parent.name == model}
        ipo = yaml.safe_load((RECIPES / model / "ipo.yaml").read_text())
        kto = yaml.safe_load((RECIPES / model / "kto.yaml").read_text())
        assert ipo["loss_type"] == ["ipo"] and "loss_type" not in kto and kto["dataset_config"] == "dpo"


@pytest.mark.parametrize("recipe", ALL, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_recipe_parses(recipe):
    args = parse_stage(_stage(recipe), ["--config", str(recipe)])
    data = yaml.safe_load(recipe.read_text())
    assert args.model_name_or_path == data["model_name_or_path"]
    assert args.output_dir == data["output_dir"]
    if recipe.parent.name == "embedded":
        assert args.use_cpu is True and args.bf16 is False
    else:  # the paper's settings
        assert args.num_train_epochs == 1
        if _stage(recipe) == "sft":
            assert float(args.learning_rate) == 1e-5 and args.packing is True


def test_cli_flags_override_the_recipe():
    recipe = RECIPES / "embedded" / "dpo.yaml"
    args = parse_stage("dpo", ["--config", str(recipe), "--beta", "0.25", "--loss_type", "ipo",
                               "--output_dir", "/tmp/x", "--push-to-hub", "org/name"])
    assert args.beta == 0.25 and args.loss_type == ["ipo"] and args.output_dir == "/tmp/x"
    assert args.push_to_hub == "org/name"
    assert args.learning_rate == 5e-5  # untouched recipe value
    assert args.effective_recipe["beta"] == 0.25 and args.effective_recipe["loss_type"] == ["ipo"]
    assert args.effective_recipe["dataset_config"] == "dpo"


def test_unknown_recipe_key_is_an_error_naming_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model_name_or_path: embedded\nlearning_rat: 1.0e-5\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*learning_rat"):
        parse_stage("sft", ["--config", str(bad)])


def test_effective_recipe_is_what_the_run_set_and_nothing_else():
    args = parse_stage("sft", ["--model_name_or_path", "embedded", "--learning_rate", "1e-4"])
    assert args.effective_recipe == {"model_name_or_path": "embedded", "learning_rate": 1e-4}


def test_stages_parse_in_one_pass_of_the_aloe_command(tmp_path):
    from aloe_bench.commands.main import build_parser

    recipe = RECIPES / "embedded" / "dpo.yaml"
    args = build_parser().parse_args(["train", "dpo", f"--config={recipe}", "--beta", "0.25", "--push_to_hub", "org/name"])
    assert (args.beta, args.learning_rate, args.push_to_hub) == (0.25, 5e-5, "org/name")
    bad = tmp_path / "bad.yaml"
    bad.write_text("beta: 0.1\nbeat: 2\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: unknown field\(s\) beat"):
        build_parser().parse_args(["train", "dpo", "--config", str(bad)])


def test_commands_that_do_not_train_never_import_torch():
    code = ("import sys; from aloe_bench.commands.main import build_parser; "
            "build_parser().parse_args(['metrics', '--al', '1,2']); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_building_the_aloe_parser_imports_no_heavy_package():
    """`aloe --help` and every subcommand's argument errors start without torch, TRL's trainers, scipy or datasets:
    a subcommand loads its dataclasses (and their heavy modules) only when it is the one parsed."""
    code = ("import sys; from aloe_bench.commands.main import build_parser; build_parser(); "
            "print(sorted(m for m in ('torch', 'trl.trainer', 'scipy.stats', 'datasets') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_push_flag_takes_a_repo_or_a_boolean():
    assert _bool_or_repo("org/name") == "org/name"
    assert _bool_or_repo("true") is True and _bool_or_repo("false") is False


def test_accelerate_configs_are_valid_yaml():
    configs = {p.name: yaml.safe_load(p.read_text()) for p in ACCELERATE.glob("*.yaml")}
    assert {"multi_gpu.yaml", "zero3.yaml"} <= set(configs)
    assert configs["zero3.yaml"]["deepspeed_config"]["zero_stage"] == 3
    assert configs["multi_gpu.yaml"]["distributed_type"] == "MULTI_GPU"


@pytest.mark.parametrize("model", ["llama-3-8b-instruct", "mistral-7b-instruct-v0.3", "qwen2-7b-instruct",
                                   "olmo-7b-0724-instruct"])
def test_paper_dpo_recipes_carry_the_authors_values(model):
    recipe = RECIPES / model / "dpo.yaml"
    args = parse_stage("dpo", ["--config", str(recipe)])
    assert (args.beta, args.learning_rate, args.per_device_train_batch_size, args.gradient_accumulation_steps,
            args.num_train_epochs) == (0.9, 1e-5, 4, 12, 1)
    assert args.model_name_or_path == f"checkpoints/{model}-sft"  # DPO starts from the SFT model
    assert "[authors]" in recipe.read_text()
