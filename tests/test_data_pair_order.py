"""The pair judge asked in both orders: agreeing verdicts make a pair, disagreeing ones are order ties (counted
apart from judge failures, left out of the dpo rows); a folder started before `pair_order` resumes as `once`."""

from __future__ import annotations

import json

import pytest

from aloe_bench.training.dataset import BuildConfig, build_dataset
from aloe_bench.training.generate import generate_conversations
from aloe_bench.training.generate_config import GenerateConfig
from test_data_generate import RoleBackend, _role_of, _roles


def _cfg(tmp_path, **kw):
    base = dict(output_dir=str(tmp_path / "run"), n_conversations=3, turns=2, progress=False, cache=False,
                judge_scoring="text")
    return GenerateConfig(**{**base, **kw})


def _turns(tmp_path):
    lines = (tmp_path / "run" / "conversations.jsonl").read_text().splitlines()
    return [t for line in lines for t in json.loads(line)["turns"]]


def by_content(messages) -> str:
    """A judge that reads the replies: the informed one wins wherever it is shown."""
    text = messages[-1]["content"]
    return "[[A]]" if text.index("preferred reply") < text.index("rejected reply") else "[[B]]"


class ContentJudge(RoleBackend):
    def _answer(self, messages, config):
        return by_content(messages) if _role_of(messages) == "judge" else super()._answer(messages, config)


@pytest.mark.parametrize("schedule", ["free", "lockstep"])
@pytest.mark.parametrize("scoring", ["text", "logprobs"])
def test_a_judge_that_always_prefers_position_a_is_never_consistent_and_makes_no_pair(tmp_path, schedule, scoring):
    backend = RoleBackend(judge_answer="Reply A. [[A]]")
    backend.options = {"A": 0.7, "B": 0.3}  # the probability judge: A likelier, whatever the replies
    counts = generate_conversations(_cfg(tmp_path, schedule=schedule, judge_scoring=scoring, pair_order="both"),
                                    backends=_roles(backend))
    assert counts["pair_order"] == "both" and counts["turns"] == 6
    assert counts["position_consistency"] == 0 and counts["order_tie_share"] == 1 and counts["order_ties"] == 6
    assert counts["judge_failures"] == 0
    assert counts["judge_picked_preferred"] == counts["judge_picked_rejected"] == 0
    for turn in _turns(tmp_path):
        assert turn["order_tie"] is True and turn["judge_choice"] is None and turn["error"] is None
        first = "preferred" if turn["preferred_position"] == "A" else "rejected"
        assert turn["judge_choice_swapped"] == ("rejected" if first == "preferred" else "preferred")


@pytest.mark.parametrize("schedule", ["free", "lockstep"])
def test_a_judge_that_reads_the_replies_is_fully_consistent(tmp_path, schedule):
    counts = generate_conversations(_cfg(tmp_path, schedule=schedule), backends=_roles(ContentJudge()))
    assert counts["pair_order"] == "both"  # the default of a new folder
    assert counts["position_consistency"] == 1 and counts["order_ties"] == 0 and counts["order_tie_share"] == 0
    assert counts["judge_picked_preferred"] == 6
    assert all(t["judge_choice"] == t["judge_choice_swapped"] == "preferred" for t in _turns(tmp_path))
    meta = json.loads((tmp_path / "run" / "generation.json").read_text())
    assert meta["settings"]["pair_order"] == "both" and meta["counts"]["position_consistency"] == 1


def test_free_and_lockstep_judge_both_orders_alike(tmp_path):
    from test_data_generate_schedule import VaryingBackend

    a = generate_conversations(_cfg(tmp_path / "a", n_conversations=4, turns=3), backends=_roles(VaryingBackend()))
    b = generate_conversations(_cfg(tmp_path / "b", n_conversations=4, turns=3, schedule="lockstep"),
                               backends=_roles(VaryingBackend()))
    assert sorted((tmp_path / "a" / "run" / "conversations.jsonl").read_text().splitlines()) == \
        sorted((tmp_path / "b" / "run" / "conversations.jsonl").read_text().splitlines())
    assert {k: a[k] for k in ("order_ties", "position_consistency", "judge_failures")} == \
        {k: b[k] for k in ("order_ties", "position_consistency", "judge_failures")}
    assert 0 < a["order_ties"] < a["turns"]


def test_a_failed_order_is_a_judge_failure_not_an_order_tie(tmp_path):
    def judge(messages):
        return "no verdict" if by_content(messages) == "[[B]]" else "[[A]]"

    class OneOrderFails(RoleBackend):
        def _answer(self, messages, config):
            return judge(messages) if _role_of(messages) == "judge" else super()._answer(messages, config)

    counts = generate_conversations(_cfg(tmp_path), backends=_roles(OneOrderFails()))
    assert counts["judge_failures"] == 6 and counts["order_ties"] == 0 and counts["position_consistency"] is None
    assert all("pair judge (" in t["error"] and t["judge_choice"] is None for t in _turns(tmp_path))


def test_a_folder_from_before_pair_order_resumes_judging_once(tmp_path):
    generate_conversations(_cfg(tmp_path, n_conversations=2, pair_order="once"), backends=_roles(RoleBackend()))
    meta_path = tmp_path / "run" / "generation.json"
    meta = json.loads(meta_path.read_text())
    del meta["settings"]["pair_order"]  # as written before the setting existed
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="other settings"):
        generate_conversations(_cfg(tmp_path, n_conversations=3, pair_order="both"), backends=_roles(RoleBackend()))
    counts = generate_conversations(_cfg(tmp_path, n_conversations=3), backends=_roles(RoleBackend()))
    assert counts["pair_order"] == "once" and counts["conversations"] == 3
    assert counts["position_consistency"] is None and counts["turns_judged_in_both_orders"] == 0
    assert not any("order_tie" in t for t in _turns(tmp_path))
    assert json.loads(meta_path.read_text())["settings"]["pair_order"] == "once"


def test_order_ties_stay_out_of_dpo_and_the_card_reports_the_rates(tmp_path):
    from test_data_generate_schedule import VaryingBackend

    counts = generate_conversations(_cfg(tmp_path, n_conversations=4, turns=3), backends=_roles(VaryingBackend()))
    summary = build_dataset(BuildConfig(conversations=str(tmp_path / "run"), output_dir=str(tmp_path / "hub"),
                                        test_fraction=0.25))
    agreed = sum(t["judge_choice"] is not None for t in _turns(tmp_path))
    assert sum(summary["rows"]["dpo"].values()) == agreed == counts["turns"] - counts["order_ties"]
    card = (tmp_path / "hub" / "README.md").read_text()
    assert f"position consistency of the pair judge: {counts['position_consistency']:.3f}" in card
    assert f"order ties: {counts['order_ties']}" in card and "in both orders" in card


@pytest.mark.parametrize("flag", ["--pair_order", "--pair-order"])
def test_the_command_line_names_the_pair_order_either_way(flag):
    from aloe_bench.commands.main import build_parser
    from aloe_bench.core.recipes import dataclass_from_args

    args = build_parser().parse_args(["generate", flag, "once"])
    assert dataclass_from_args(args, GenerateConfig).pair_order == "once"
    assert dataclass_from_args(build_parser().parse_args(["generate"]), GenerateConfig).pair_order is None
    with pytest.raises(SystemExit):
        build_parser().parse_args(["generate", flag, "twice"])


def test_a_folder_of_order_ties_only_builds_no_pairs_and_says_why(tmp_path):
    from aloe_bench.training.dataset import DatasetBuildError

    generate_conversations(_cfg(tmp_path), backends=_roles(RoleBackend(judge_answer="[[A]]")))
    with pytest.raises(DatasetBuildError, match=r"no rows for config\(s\) sft, dpo .*order ties: 6, judge failures: 0"):
        build_dataset(BuildConfig(conversations=str(tmp_path / "run"), output_dir=str(tmp_path / "hub")))
