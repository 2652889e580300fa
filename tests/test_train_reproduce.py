"""`aloe reproduce` wiring (the full run is too long for the suite): its parser, presets and the table it writes."""

from __future__ import annotations

import argparse

from transformers import HfArgumentParser

from aloe_bench.reproduce import ReproduceConfig, register, reproduce_section


def _parser():
    parser = argparse.ArgumentParser(prog="aloe")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=HfArgumentParser)
    bench = sub.add_parser("bench").add_subparsers(dest="bench_command")
    register(sub, bench)
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
