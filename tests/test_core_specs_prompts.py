"""Model specs, the prompt book and YAML recipes."""

import json
import subprocess
import sys
from importlib import resources

import pytest

from aloe_bench.core.errors import ConfigError
from aloe_bench.core.recipes import read_recipe
from aloe_bench.core.prompts import load_prompts
from aloe_bench.core.specs import ModelSpec
from aloe_bench.harness.eval_config import EvalConfig


def test_spec_kinds(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    assert ModelSpec.parse("embedded").kind == "embedded"
    hub = ModelSpec.parse("Qwen/Qwen2-7B-Instruct", revision="abc")
    assert (hub.kind, hub.name, hub.label) == ("hf", "Qwen/Qwen2-7B-Instruct", "Qwen/Qwen2-7B-Instruct@abc")
    remote = ModelSpec.parse("openai:gpt-4o-mini", base_url="http://127.0.0.1:1/v1", api_key_env="MY_KEY")
    assert (remote.kind, remote.name, remote.is_remote, remote.api_key_env) == ("openai", "gpt-4o-mini", True, "MY_KEY")
    (tmp_path / "config.json").write_text("{}")
    local = ModelSpec.parse(str(tmp_path))
    assert local.kind == "hf" and local.name == str(tmp_path.resolve())


@pytest.mark.parametrize("bad,message", [
    ("", "empty"), ("openai:", "needs a model name"), ("just-a-name", "neither"), ("a/b/c", "neither"),
])
def test_bad_specs(bad, message):
    with pytest.raises(ValueError, match=message):
        ModelSpec.parse(bad)


def test_local_folder_without_config(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        ModelSpec.parse(str(tmp_path))


def test_spec_description_never_holds_the_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-value")
    spec = ModelSpec.parse("openai:gpt-4o-mini")
    assert "sk-secret-value" not in json.dumps(spec.to_dict())


def test_prompt_book_hashes_change_with_wording(tmp_path):
    book = load_prompts()
    assert book.version
    hashes = book.hashes()
    assert {"user_simulator", "judge_paper", "judge_robust"} <= set(hashes)
    edited = tmp_path / "prompts.yaml"
    original = resources.files("aloe_bench.core").joinpath("prompts.yaml").read_text()
    edited.write_text(original.replace("rate how well", "judge how well"))
    other = load_prompts(str(edited))
    assert other.hashes()["judge_paper"] != hashes["judge_paper"]
    assert other.hashes()["judge_robust"] == hashes["judge_robust"]


def test_prompt_render_names_missing_values():
    with pytest.raises(KeyError, match="judge_paper.user needs value"):
        load_prompts()["judge_paper"].render("user", profile="x")


def test_recipe_rejects_unknown_fields(tmp_path):
    recipe = tmp_path / "eval.yaml"
    recipe.write_text("turns: 3\nturn_count: 4\n")
    with pytest.raises(ConfigError, match=r"eval.yaml: unknown field\(s\) turn_count"):
        read_recipe(recipe, [EvalConfig])
    recipe.write_text("turns: [3\n")
    with pytest.raises(ConfigError, match=r"eval.yaml:\d+: invalid YAML"):
        read_recipe(recipe, [EvalConfig])


def test_cli_flags_override_the_recipe(tmp_path):
    from aloe_bench.commands.main import build_parser
    from aloe_bench.core.recipes import dataclass_from_args

    recipe = tmp_path / "eval.yaml"
    recipe.write_text("turns: 3\njudge_preset: robust\nseed: 7\n")
    parser = build_parser()
    argv = ["eval", "--config", str(recipe), "--turns", "5", "--user-model", "openai:x"]
    args = parser.parse_args(argv)
    cfg = dataclass_from_args(args, EvalConfig)
    assert (cfg.turns, cfg.judge_preset, cfg.seed, cfg.user_model) == (5, "robust", 7, "openai:x")


def test_recipe_flag_is_spelled_in_full(tmp_path):
    from aloe_bench.commands.main import build_parser

    recipe = tmp_path / "eval.yaml"
    recipe.write_text("turns: 3\n")
    assert build_parser().parse_args(["eval", f"--config={recipe}"]).turns == 3
    with pytest.raises(ConfigError, match="--config in full"):  # an abbreviation would skip the recipe
        build_parser().parse_args(["eval", "--conf", str(recipe)])


def test_cli_reports_bad_recipe(tmp_path):
    recipe = tmp_path / "eval.yaml"
    recipe.write_text("turnz: 3\n")
    proc = subprocess.run([sys.executable, "-m", "aloe_bench.commands.main", "eval", "--config", str(recipe)],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "eval.yaml: unknown field(s) turnz" in proc.stderr
