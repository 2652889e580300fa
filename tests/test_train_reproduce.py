"""`aloe reproduce`: its parser, presets, arms and stage plan, tables, and the whole pipeline at `--tiny` size (slow)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from aloe_bench.core.recipes import RecipeParser
from aloe_bench.commands.reproduce import (ARMS, ReproduceConfig, parse_arms, register, reproduce_section,
                                           stage_plan, training_stages)
from aloe_bench.core.errors import ConfigError


def _parser():
    parser = argparse.ArgumentParser(prog="aloe")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=RecipeParser)
    register(sub)
    return parser


def test_reproduce_command_parses_flags():
    args = _parser().parse_args(["reproduce", "--work_dir", "/tmp/r", "--eval_personas", "3", "--tiny", "false"])
    assert args.work_dir == "/tmp/r" and args.eval_personas == 3 and args.handler.__name__ == "_handler"


def test_tiny_preset_shrinks_every_step():
    tiny, full = ReproduceConfig(tiny=True), ReproduceConfig()
    assert tiny.n_conversations < full.n_conversations and tiny.eval_turns < full.eval_turns
    assert tiny.max_steps == 2 and full.max_steps == -1


def _results(al, judge="embedded:HuggingFaceTB/SmolLM2-135M-Instruct (paper, logprobs)"):
    from aloe_bench.core.metrics import aloe_metrics

    return {"judge": judge, "metrics": {"AL": al, **aloe_metrics(al)},
            "counts": {"conversations": 2, "turns": len(al), "judge_failures": 0}}


def test_section_has_one_row_per_model_with_every_turn_and_the_caveat():
    results = {"base": _results([2.0, 2.5, 3.0]), "sft": _results([2.1, 2.2, 2.3]),
               "sft+dpo": _results([3.0, 2.0, 1.0])}
    text = reproduce_section(ReproduceConfig(), results, None, 600.0)
    rows = [line for line in text.splitlines() if line.startswith("| ") and "AL@1" not in line]
    assert [r.split("|")[1].strip() for r in rows] == ["Base (SmolLM2-135M-Instruct)", "SFT (preferred)", "SFT + DPO"]
    assert "| 3.00 | 2.00 | 1.00 |" in rows[2] and "-0.5000" in rows[2]  # AL per turn, then IR = slope -0.5
    assert "AL@3" in text and "N_IR" in text and "cannot tell" in text
    counts = {"judge_picked_preferred": 22, "judge_picked_rejected": 26}
    text = reproduce_section(ReproduceConfig(), results, None, 600.0, data_counts=counts)
    assert "22 times of 48 (46%)" in text and "10 minutes of wall time" in text


@pytest.mark.slow
def test_tiny_reproduce_runs_three_arms_writes_the_tables_and_the_card_and_resumes(tmp_path, capsys):
    """Three arms at smoke size on the embedded model: base, KTO alone (from base) and SFT + online rounds (from the
    shared SFT stage, which is trained but, not being asked for, not evaluated); a re-run redoes nothing."""
    from aloe_bench.commands.main import main

    work, card = tmp_path / "run", tmp_path / "model_card.md"
    args = ["reproduce", "--tiny", "--arms", "sft+online,kto,base", "--work_dir", str(work), "--card", str(card)]
    assert main(args) == 0
    summary = json.loads((work / "reproduce.json").read_text())
    assert set(summary["metrics"]) == {"base", "kto", "sft+online"}
    assert all(len(m["AL"]) == 2 for m in summary["metrics"].values())
    assert summary["generation"]["conversations"] == 4
    for folder in ("sft", "kto"):
        assert (work / "checkpoints" / folder / "model.safetensors").is_file()
    online = [r for r in json.loads((work / "online" / "rounds.json").read_text())["rounds"] if r["round"] >= 1]
    assert [r["round"] for r in online] == [1, 2]  # online_tiny.yaml's two rounds
    assert online[0]["policy"] == str(work / "checkpoints" / "sft")  # the online arm starts from SFT
    rounds = [json.loads(x) for x in (work / "pools" / "profiles_rounds.jsonl").read_text().splitlines()]
    assert rounds[0]["requests"] == 2 and rounds[0]["candidates"] + rounds[0]["unparsed"] == 2
    arms = json.loads((work / "arms.json").read_text())
    assert [r["arm"] for r in arms["arms"]] == ["base", "kto", "sft+online"]
    assert arms["arms"][2]["checkpoint"] == str(work / "online" / "round-02" / "checkpoint")
    assert all(r["AL_avg"] is not None and len(r["intervals"]["AL_avg"]) == 2 for r in arms["arms"])
    table = (work / "arms.md").read_text().splitlines()
    assert [row.split("|")[1].strip() for row in table[2:5]] == [
        "Base (SmolLM2-135M-Instruct)", "KTO (from base)", "SFT + online rounds"]
    text = card.read_text()
    assert "\n# smollm2-135m-instruct-aloe-kto\n" in text and "| KTO (from base) | base (KTO) |" in text
    capsys.readouterr()

    checkpoint_mtime = (work / "checkpoints" / "kto" / "model.safetensors").stat().st_mtime
    assert main(args) == 0
    log = capsys.readouterr().out
    for arm in ("sft", "kto", "sft+online"):
        assert f"[reproduce:{arm}] done already" in log
    again = json.loads((work / "reproduce.json").read_text())
    assert again["metrics"] == summary["metrics"]
    assert (work / "checkpoints" / "kto" / "model.safetensors").stat().st_mtime == checkpoint_mtime


def test_step_times_add_up_over_invocations(tmp_path):
    from aloe_bench.commands.reproduce import StepTimes

    first = StepTimes(tmp_path / "steps.json")
    with first.step("generate"):
        pass
    first.seconds["generate"] = 100.0  # as if the first invocation generated for 100 s and was then stopped
    with first.step("train"):
        pass
    again = StepTimes(tmp_path / "steps.json")  # the resumed invocation reads what the first one spent
    with again.step("generate"):
        pass
    assert again.seconds["generate"] >= 100.0 and set(again.seconds) == {"generate", "train"}
    assert again.total == round(sum(again.seconds.values()), 1)


# --- arms: parsing and the stage plan (no model) ------------------------------------------------------------------

def test_arms_parse_into_the_tables_order_once_each_and_unknown_ones_are_one_error_listing_the_valid():
    assert parse_arms("kto, SFT+DPO,base,sft+dpo") == ("base", "sft+dpo", "kto")
    assert parse_arms(["sft+online", "ipo"]) == ("ipo", "sft+online")  # a recipe may list them in YAML
    assert ReproduceConfig().arm_names == ("base", "sft", "sft+dpo")  # the default: what reproduce ran before arms
    for bad, named in (("base,sft+ppo", "unknown arm(s) sft+ppo"), (" , ", "no arm named")):
        with pytest.raises(ConfigError) as error:
            ReproduceConfig(arms=bad)
        text = error.value.one_line()
        assert named in text and "\n" not in text
        assert "valid arms: base, sft, sft+dpo, sft+ipo, sft+kto, ipo, kto, sft+online" in text


def test_unknown_arm_on_the_command_line_exits_with_one_line(capsys):
    from aloe_bench.commands.main import main

    assert main(["reproduce", "--arms", "base,dpo"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown arm(s) dpo" in err and "sft+online" in err


def test_every_sft_arm_shares_one_sft_stage_and_the_alone_arms_start_from_base():
    every = parse_arms(",".join(ARMS))
    assert stage_plan(every) == [
        "personas", "generate", "dataset", "train sft", "train sft+dpo", "train sft+ipo", "train sft+kto",
        "train ipo", "train kto", "train sft+online", *(f"eval {name}" for name in ARMS)]
    # an sft+X arm alone still trains SFT (once), but only the arms asked for are evaluated
    assert stage_plan(("sft+kto", "sft+online")) == ["personas", "generate", "dataset", "train sft", "train sft+kto",
                                                      "train sft+online", "eval sft+kto", "eval sft+online"]
    assert training_stages(("ipo", "kto")) == ["ipo", "kto"]  # from base: no SFT
    assert stage_plan(("base",)) == ["eval base"]  # nothing to train: no data either
    assert {ARMS[n].parent for n in ("sft+dpo", "sft+ipo", "sft+kto", "sft+online")} == {"sft"}
    assert ARMS["ipo"].recipe == ARMS["sft+ipo"].recipe == "ipo.yaml" and ARMS["sft+dpo"].folder == "checkpoints/dpo"


def test_a_missing_recipe_is_named_before_any_step(tmp_path):
    from aloe_bench.commands.reproduce import check_recipes, run_reproduce
    from aloe_bench.core.errors import MissingFileError

    (tmp_path / "recipes").mkdir()
    for name in ("sft.yaml", "dpo.yaml"):
        (tmp_path / "recipes" / name).write_text("seed: 1\n")
    check_recipes(ReproduceConfig(recipes=str(tmp_path / "recipes")))  # the default arms need only these two
    cfg = ReproduceConfig(recipes=str(tmp_path / "recipes"), arms="sft+kto", work_dir=str(tmp_path / "run"))
    with pytest.raises(MissingFileError, match=r"kto\.yaml: no such recipe \(arm sft\+kto needs it"):
        run_reproduce(cfg)
    assert not (tmp_path / "run").exists()


def test_the_online_arm_runs_its_recipe_from_the_sft_checkpoint_on_the_datasets_training_personas(tmp_path):
    from aloe_bench.commands.reproduce import checkpoint_of, online_config

    cfg = ReproduceConfig(tiny=True, arms="sft+online", seed=3)
    online = online_config(cfg, tmp_path)
    assert online.policy == str(tmp_path / "checkpoints" / "sft")
    assert (online.personas, online.personas_split) == (str(tmp_path / "dataset"), "train")
    assert online.eval_turns == 0 and online.seed == 3 and online.output_dir == str(tmp_path / "online")
    import yaml

    recipe = yaml.safe_load(cfg.recipe_for(ARMS["sft+online"]).read_text())
    assert cfg.recipe_for(ARMS["sft+online"]).name == "online_tiny.yaml"
    assert (online.rounds, online.candidates, online.method) == (recipe["rounds"], recipe["candidates"], recipe["method"])
    assert checkpoint_of(cfg, tmp_path, "sft+online") == str(
        tmp_path / "online" / f"round-{recipe['rounds']:02d}" / "checkpoint")
    assert ReproduceConfig().recipe_for(ARMS["sft+online"]).name == "online_small.yaml"


def test_stages_are_shared_and_a_rerun_trains_and_evaluates_nothing(tmp_path, monkeypatch):
    """The orchestration with every model step replaced: which stage starts from which checkpoint, once."""
    import aloe_bench.commands.reproduce as reproduce
    import aloe_bench.commands.train as train_command
    import aloe_bench.training.card as card
    import aloe_bench.training.online as online_module
    from aloe_bench.training.common import TRAINING_INFO
    from aloe_bench.training.online import ROUND_DONE

    calls, evals = [], []

    def fake_stage(stage, argv):
        flags = dict(zip(argv[::2], argv[1::2]))
        calls.append((stage, Path(flags["--config"]).name, flags["--model_name_or_path"], flags["--output_dir"]))
        Path(flags["--output_dir"]).mkdir(parents=True)
        Path(flags["--output_dir"], TRAINING_INFO).write_text("{}")
        return 0

    def fake_evaluate(cfg, root, models):
        (name, spec), = models.items()
        done = Path(root, "eval-done", name)
        if not done.exists():  # the harness resumes a finished eval without running it again
            evals.append((name, spec))
            done.parent.mkdir(exist_ok=True)
            done.write_text("")
        return {name: _results([2.0, 2.0 + len(name) / 100])}

    def fake_online(online):
        calls.append(("online", online.policy, online.personas, online.output_dir))
        last = Path(online.output_dir, f"round-{online.rounds:02d}", "checkpoint")
        last.mkdir(parents=True)
        (last / ROUND_DONE).write_text("{}")
        return []

    monkeypatch.setattr(train_command, "run_stage", fake_stage)
    monkeypatch.setattr(online_module, "run_online", fake_online)
    monkeypatch.setattr(reproduce, "grow_personas", lambda cfg, root: ({}, None))
    monkeypatch.setattr(reproduce, "generate", lambda cfg, root, pools: (root / "generated", {}))
    monkeypatch.setattr(reproduce, "build_dataset_folder", lambda cfg, root, generated: root / "dataset")
    monkeypatch.setattr(reproduce, "evaluate", fake_evaluate)
    monkeypatch.setattr(card, "build_push_folder", lambda checkpoint, **kw: _fake_card(tmp_path, kw))
    monkeypatch.setattr(card, "read_info", lambda checkpoint: {})
    work = tmp_path / "run"
    cfg = ReproduceConfig(work_dir=str(work), card=str(tmp_path / "card.md"), arms="kto,sft+ipo,sft+online,sft+dpo,base")
    out = reproduce.run_reproduce(cfg)
    ck = work / "checkpoints"
    assert calls == [("sft", "sft.yaml", "embedded", str(ck / "sft")),
                     ("dpo", "dpo.yaml", str(ck / "sft"), str(ck / "dpo")),
                     ("dpo", "ipo.yaml", str(ck / "sft"), str(ck / "sft-ipo")),
                     ("kto", "kto.yaml", "embedded", str(ck / "kto")),
                     ("online", str(ck / "sft"), str(work / "dataset"), str(work / "online"))]
    online_last = work / "online" / f"round-{reproduce.online_config(cfg, work).rounds:02d}" / "checkpoint"
    assert evals == [("base", "embedded"), ("sft+dpo", str(ck / "dpo")), ("sft+ipo", str(ck / "sft-ipo")),
                     ("kto", str(ck / "kto")), ("sft+online", str(online_last))]  # sft trained (shared), not asked for
    table = json.loads((work / "arms.json").read_text())
    assert [r["arm"] for r in table["arms"]] == ["base", "sft+dpo", "sft+ipo", "kto", "sft+online"]
    assert table["arms"][2]["trained_from"] == "sft" and table["arms"][3]["trained_from"] == "base"
    markdown = (work / "arms.md").read_text()
    assert "| SFT + IPO | SFT (IPO) | 2.035 | 0.0700 |" in markdown and "| KTO (from base) | base (KTO) |" in markdown
    assert out["card"] == str(tmp_path / "card.md") and "aloe-sft-dpo" in (tmp_path / "card.md").read_text()
    calls.clear(), evals.clear()
    reproduce.run_reproduce(cfg)
    assert calls == [] and evals == []


def _fake_card(tmp_path, kw):
    folder = tmp_path / "push"
    folder.mkdir(exist_ok=True)
    (folder / "README.md").write_text(f"# {kw['model_name']}\n{kw['extra']}")
    return folder


def test_arms_markdown_shows_each_interval_and_the_shared_protocol():
    from aloe_bench.commands.reproduce import arm_rows, arms_markdown

    cfg = ReproduceConfig(tiny=True, arms="base,ipo")
    results = {"base": _results([2.0, 2.5]), "ipo": _results([2.0, 2.5])}
    results["ipo"]["metrics"]["intervals"] = {"AL_avg": [2.1, 2.4], "IR": [None, None], "N_IR": [-1.0, 1.0]}
    rows = arm_rows(cfg, results, {"ipo": "/ck/ipo"})
    text = arms_markdown(cfg, rows)
    assert "| Base (SmolLM2-135M-Instruct) | - | 2.250 |" in text  # no interval given: the value alone
    assert "| IPO (from base) | base (IPO) | 2.250 [2.100, 2.400] | 0.5000 | 1.000 [-1.000, 1.000] |" in text
    assert "first 2 eval personas x 2 turns" in text and "seed 0" in text
    assert rows[1]["checkpoint"] == "/ck/ipo" and rows[0]["checkpoint"] == "embedded"
