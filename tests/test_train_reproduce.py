"""`aloe reproduce`: its parser, presets and table, and the whole pipeline at `--tiny` size (slow)."""

from __future__ import annotations

import argparse
import json

import pytest

from aloe_bench.core.recipes import RecipeParser
from aloe_bench.commands.reproduce import ReproduceConfig, register, reproduce_section


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
    results = {"base": _results([2.0, 2.5, 3.0]), "sft": _results([2.1, 2.2, 2.3]), "dpo": _results([3.0, 2.0, 1.0])}
    text = reproduce_section(ReproduceConfig(), results, None, 600.0)
    rows = [line for line in text.splitlines() if line.startswith("| ") and "AL@1" not in line]
    assert [r.split("|")[1].strip() for r in rows] == ["Base (SmolLM2-135M-Instruct)", "SFT (preferred)", "SFT + DPO"]
    assert "| 3.00 | 2.00 | 1.00 |" in rows[2] and "-0.5000" in rows[2]  # AL per turn, then IR = slope -0.5
    assert "AL@3" in text and "N_IR" in text and "cannot tell" in text
    counts = {"judge_picked_preferred": 22, "judge_picked_rejected": 26}
    text = reproduce_section(ReproduceConfig(), results, None, 600.0, data_counts=counts)
    assert "22 times of 48 (46%)" in text and "10 minutes of wall time" in text


@pytest.mark.slow
def test_tiny_reproduce_runs_every_step_writes_the_card_and_resumes(tmp_path, capsys):
    """The whole pipeline on the embedded model at smoke size; a re-run redoes nothing and changes no number."""
    from aloe_bench.commands.main import main

    work, card = tmp_path / "run", tmp_path / "model_card.md"
    args = ["reproduce", "--tiny", "--work_dir", str(work), "--card", str(card)]
    assert main(args) == 0
    summary = json.loads((work / "reproduce.json").read_text())
    assert set(summary["metrics"]) == {"base", "sft", "dpo"}
    assert all(len(m["AL"]) == 2 for m in summary["metrics"].values())
    assert summary["generation"]["conversations"] == 4
    for stage in ("sft", "dpo"):
        assert (work / "checkpoints" / stage / "model.safetensors").is_file()
    rounds = [json.loads(x) for x in (work / "pools" / "profiles_rounds.jsonl").read_text().splitlines()]
    assert rounds[0]["requests"] == 2 and rounds[0]["candidates"] + rounds[0]["unparsed"] == 2
    text = card.read_text()
    table = [line for line in text.split("## Small-scale reproduction")[1].splitlines() if line.startswith("| ")]
    assert [row.split("|")[1].strip() for row in table[1:4]] == [
        "Base (SmolLM2-135M-Instruct)", "SFT (preferred)", "SFT + DPO"]
    assert "AL@2" in table[0] and "\n# smollm2-135m-instruct-aloe-sft-dpo\n" in text
    capsys.readouterr()

    checkpoint_mtime = (work / "checkpoints" / "dpo" / "model.safetensors").stat().st_mtime
    assert main(args) == 0
    log = capsys.readouterr().out
    assert "[reproduce:sft] done already" in log and "[reproduce:dpo] done already" in log
    again = json.loads((work / "reproduce.json").read_text())
    assert again["metrics"] == summary["metrics"]
    assert (work / "checkpoints" / "dpo" / "model.safetensors").stat().st_mtime == checkpoint_mtime


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
