"""The Hub dataset folder: configs load with load_dataset, rows follow the path taken, bad input is refused whole."""

from __future__ import annotations

import json

import pytest
import yaml
from aloe_bench.training.dataset import BuildConfig, DatasetBuildError, build_dataset, push_dataset
from aloe_bench.training.generate import generate_conversations
from aloe_bench.training.generate_config import GenerateConfig
from datasets import load_dataset
from test_data_generate import RoleBackend, _roles

from aloe_bench.core.io import PersonaFileError, RepairWarning


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    folder = tmp_path_factory.mktemp("generated")
    cfg = GenerateConfig(output_dir=str(folder), n_conversations=4, turns=3, progress=False, cache=False,
                         judge_scoring="text")
    answers = iter(["[[A]]", "[[B]]", "no verdict", "no verdict", "no verdict"] * 100)
    generate_conversations(cfg, backends=_roles(RoleBackend(judge_answer=lambda: next(answers))))
    return folder


@pytest.fixture(scope="module")
def built(generated, tmp_path_factory):
    out = tmp_path_factory.mktemp("hub") / "aloe-preference"
    summary = build_dataset(BuildConfig(conversations=str(generated), output_dir=str(out), test_fraction=0.25))
    return out, summary


def test_every_config_loads_and_counts_match(built):
    out, summary = built
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "conversations", "dpo", "eval.yaml", "personas", "sft"]
    for name, splits in summary["rows"].items():
        data = load_dataset(str(out), name)
        assert {s: data[s].num_rows for s in data} == splits
    assert summary["rows"]["personas"] == {"train": 4, "test": 100}
    assert summary["rows"]["dpo"]["test"] > 0 and summary["rows"]["dpo"]["train"] > 0
    verdicts = summary["judge_picked_preferred"] + summary["judge_picked_rejected"]
    assert sum(summary["rows"]["dpo"].values()) == verdicts == summary["turns"] - summary["turns_without_verdict"]
    assert summary["turns_without_verdict"] > 0


def test_dpo_and_sft_rows_follow_the_path_taken(built, generated):
    out, _ = built
    records = {json.loads(x)["id"]: json.loads(x) for x in (generated / "conversations.jsonl").read_text().splitlines()}
    dpo = load_dataset(str(out), "dpo")
    sft = {(r["conversation_id"], r["turn"]): r for split in ("train", "test")
           for r in load_dataset(str(out), "sft", split=split)}
    for row in list(dpo["train"]) + list(dpo["test"]):
        record = records[row["conversation_id"]]
        turns = record["turns"]
        turn = turns[row["turn"] - 1]
        assert turn["judge_choice"] is not None
        assert row["chosen"] == [{"role": "assistant", "content": turn[turn["judge_choice"]]}]
        other = "rejected" if turn["judge_choice"] == "preferred" else "preferred"
        assert row["rejected"][0]["content"] == turn[other]
        expected = []
        for earlier in turns[:row["turn"] - 1]:
            expected += [{"role": "user", "content": earlier["user_message"]},
                         {"role": "assistant", "content": earlier[earlier["continued_with"]]}]
        expected.append({"role": "user", "content": turn["user_message"]})
        assert row["prompt"] == expected
        assert sft[(row["conversation_id"], row["turn"])]["completion"] == row["chosen"]
    tests = {r["conversation_id"] for r in dpo["test"]}
    assert tests and not tests & {r["conversation_id"] for r in dpo["train"]}


def test_card_declares_configs_and_provenance(built):
    out, _ = built
    text = (out / "README.md").read_text()
    front = yaml.safe_load(text.split("---")[1])
    configs = {c["config_name"]: c for c in front["configs"]}
    assert set(configs) == {"personas", "conversations", "sft", "dpo"} and configs["dpo"].get("default") is True
    for name, config in configs.items():
        for entry in config["data_files"]:
            assert list(out.glob(entry["path"])), entry
    for needle in ("pair_judge", "induction", "hand-written seed pool", "`dpo` (", "`personas` (", "fake/model",
                   "turns without a judge verdict"):
        assert needle in text, needle


def _write(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("mutate,message", [
    (lambda lines: lines[:1] + ["{not json"] + lines[1:], r":2: malformed JSON"),
    (lambda lines: lines[:1] + [""] + lines[1:], r":2: empty line"),
    (lambda lines: [json.dumps({k: v for k, v in json.loads(lines[0]).items() if k != "profile"})] + lines[1:],
     r":1: field 'profile'"),
    (lambda lines: lines + [lines[0]], r"duplicate conversation id"),
])
def test_bad_input_names_file_and_line_and_writes_nothing(generated, tmp_path, mutate, message):
    lines = (generated / "conversations.jsonl").read_text().splitlines()
    bad = _write(tmp_path / "conversations.jsonl", mutate(lines))
    out = tmp_path / "out"
    with pytest.raises(PersonaFileError, match=message):
        build_dataset(BuildConfig(conversations=str(bad), output_dir=str(out)))
    assert not out.exists() and not list(tmp_path.glob(".out.*"))


def test_bad_turn_field_is_named(generated, tmp_path):
    first = json.loads((generated / "conversations.jsonl").read_text().splitlines()[0])
    first["turns"][1]["judge_choice"] = "maybe"
    bad = _write(tmp_path / "c.jsonl", [json.dumps(first)])
    with pytest.raises(PersonaFileError, match=r"c.jsonl:1: turns\[1\]: field 'judge_choice'"):
        build_dataset(BuildConfig(conversations=str(bad), output_dir=str(tmp_path / "out")))


def test_glued_lines_are_split_with_a_warning(generated, tmp_path):
    lines = (generated / "conversations.jsonl").read_text().splitlines()
    glued = _write(tmp_path / "conversations.jsonl", [lines[0] + lines[1]] + lines[2:])
    with pytest.warns(RepairWarning, match=r"conversations.jsonl:1"):
        summary = build_dataset(BuildConfig(conversations=str(glued), output_dir=str(tmp_path / "out")))
    assert summary["conversations"] == 4


def test_existing_output_needs_overwrite(built, generated):
    out, _ = built
    with pytest.raises(DatasetBuildError, match="--overwrite"):
        build_dataset(BuildConfig(conversations=str(generated), output_dir=str(out)))
    build_dataset(BuildConfig(conversations=str(generated), output_dir=str(out), overwrite=True, test_fraction=0.25))
    assert load_dataset(str(out), "personas", split="test").num_rows == 100


def test_push_gives_clear_errors_offline(built, monkeypatch, tmp_path):
    out, _ = built
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(DatasetBuildError, match="HF_TOKEN"):
        push_dataset(out, "someone/aloe-data")
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DatasetBuildError, match="HF_HUB_OFFLINE") as info:
        push_dataset(out, "someone/aloe-data")
    assert "hf_not_a_real_token" not in str(info.value)
    with pytest.raises(DatasetBuildError, match="not a built dataset folder"):
        push_dataset(tmp_path, "someone/aloe-data")


def test_empty_splits_are_left_out_and_empty_configs_refused(generated, tmp_path):
    out = tmp_path / "no-test"
    summary = build_dataset(BuildConfig(conversations=str(generated), output_dir=str(out), test_fraction=0.0))
    assert summary["rows"]["dpo"]["test"] == 0 and not (out / "dpo" / "test-00000-of-00001.parquet").exists()
    assert list(load_dataset(str(out), "dpo")) == ["train"]
    front = yaml.safe_load((out / "README.md").read_text().split("---")[1])
    assert [f["split"] for c in front["configs"] if c["config_name"] == "sft" for f in c["data_files"]] == ["train"]

    records = [json.loads(x) for x in (generated / "conversations.jsonl").read_text().splitlines()]
    for record in records:
        for turn in record["turns"]:
            turn["judge_choice"] = None
    no_verdicts = _write(tmp_path / "conversations.jsonl", [json.dumps(r) for r in records])
    with pytest.raises(DatasetBuildError, match=r"no rows for config\(s\) sft, dpo"):
        build_dataset(BuildConfig(conversations=str(no_verdicts), output_dir=str(tmp_path / "none")))
    assert not (tmp_path / "none").exists()


def test_a_rebuilt_or_same_named_folder_is_never_served_from_a_stale_cache(tmp_path):
    """`datasets` keys a local folder's cache by base name and config: the project's loader must not."""
    from datasets import Dataset

    from aloe_bench.core.dataset_folder import load_dataset_source

    card = "---\nconfigs:\n- config_name: c\n  data_files:\n  - split: train\n    path: c/train-*.parquet\n---\n"

    def write(folder, n):
        (folder / "c").mkdir(parents=True, exist_ok=True)
        (folder / "README.md").write_text(card)
        Dataset.from_list([{"x": i} for i in range(n)]).to_parquet(str(folder / "c" / "train-00000-of-00001.parquet"))

    first, second = tmp_path / "one" / "data", tmp_path / "two" / "data"  # same base name, as two runs' folders
    write(first, 3)
    write(second, 5)
    assert load_dataset_source(str(first), "c", split="train").num_rows == 3
    assert load_dataset_source(str(second), "c", split="train").num_rows == 5
    write(first, 7)  # rebuilt in place
    assert load_dataset_source(str(first), "c", split="train")["x"] == list(range(7))
