"""The SFT mix: a general conversational dataset (code-act's shape) mixed into the ALOE rows, every assistant
turn of each mix conversation trained and nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest
from datasets import Dataset
from trl import ScriptArguments

from aloe_bench.training.common import AloeArguments, TrainingDataError
from aloe_bench.training.sft import build_sft_dataset

from test_train_e2e import write_dataset

CODEACT = [
    [{"role": "system", "content": "You can run Python."}, {"role": "user", "content": "Add 2 and 3."},
     {"role": "assistant", "content": "<execute>print(2 + 3)</execute>"}, {"role": "user", "content": "Observation: 5"},
     {"role": "assistant", "content": "The answer is 5."}],
    [{"role": "user", "content": "List a folder."}, {"role": "assistant", "content": "<execute>ls</execute>"}],
]


def write_mix(root: Path, conversations, column="conversations", split="codeact") -> Path:
    """A Hub-layout folder in code-act's shape: one `default` config, split `codeact`, column `conversations`."""
    (root / "data").mkdir(parents=True)
    Dataset.from_list([{"id": f"x{i}", column: c} for i, c in enumerate(conversations)]).to_parquet(
        str(root / "data" / f"{split}-00000-of-00001.parquet"))
    (root / "README.md").write_text(f"---\nconfigs:\n- config_name: default\n  data_files:\n  - split: {split}\n"
                                    f"    path: data/{split}-*\n---\n")
    return root


def _script(dataset_dir):
    return ScriptArguments(dataset_name=str(dataset_dir), dataset_train_split="train", dataset_test_split="test")


def test_mix_trains_every_assistant_turn_and_keeps_the_aloe_rows(tmp_path):
    aloe_dir = write_dataset(tmp_path / "aloe", configs=("sft",))
    mix = write_mix(tmp_path / "codeact", CODEACT)
    args = AloeArguments(mix_dataset=str(mix), mix_split="codeact", mix_messages_field="conversations")
    train, _ = build_sft_dataset(_script(aloe_dir), args)
    completions = [row["completion"][0]["content"] for row in train]
    assert len(train) == 6 + 3  # 6 ALOE train rows + the 3 assistant turns of the mix
    for text in ("<execute>print(2 + 3)</execute>", "The answer is 5.", "<execute>ls</execute>"):
        assert completions.count(text) == 1
    final = next(row for row in train if row["completion"][0]["content"] == "The answer is 5.")
    # the second assistant turn is trained on the whole conversation before it, the first turn included
    assert [m["content"] for m in final["prompt"]] == [m["content"] for m in CODEACT[0][:4]]
    # no user or system text is ever a target
    assert not {m["content"] for c in CODEACT for m in c if m["role"] != "assistant"} & set(completions)


def test_loss_mask_of_the_tokenised_rows_covers_exactly_the_assistant_turns(tmp_path, embedded_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(embedded_model_dir)
    aloe_dir = write_dataset(tmp_path / "aloe", configs=("sft",))
    mix = write_mix(tmp_path / "codeact", CODEACT[:1])
    train, _ = build_sft_dataset(_script(aloe_dir), AloeArguments(
        mix_dataset=str(mix), mix_split="codeact", mix_messages_field="conversations"))
    trained = []
    for row in train:
        if row["prompt"][0]["role"] != "system":
            continue  # an ALOE row
        # what TRL's prompt/completion tokenisation trains: the tokens after the templated prompt
        prompt_ids = tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=True)
        full_ids = tokenizer.apply_chat_template(row["prompt"] + row["completion"], tokenize=True)
        if not isinstance(prompt_ids, list):
            prompt_ids, full_ids = prompt_ids["input_ids"], full_ids["input_ids"]
        assert full_ids[:len(prompt_ids)] == prompt_ids
        trained.append(tokenizer.decode(full_ids[len(prompt_ids):], skip_special_tokens=True).strip())
    assert sorted(trained) == ["<execute>print(2 + 3)</execute>", "The answer is 5."]  # (rows are shuffled)


def test_field_and_role_mapping_and_clear_errors(tmp_path):
    aloe_dir = write_dataset(tmp_path / "aloe", configs=("sft",))
    sharegpt = [[{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello!"}]]
    mix = write_mix(tmp_path / "sharegpt", sharegpt, column="turns", split="train")
    args = AloeArguments(mix_dataset=str(mix), mix_messages_field="turns", mix_role_field="from",
                         mix_content_field="value", mix_role_map="human:user,gpt:assistant")
    train, _ = build_sft_dataset(_script(aloe_dir), args)
    assert [r["completion"][0]["content"] for r in train].count("Hello!") == 1
    with pytest.raises(TrainingDataError, match=r"row 0, turns\[0\]: needs fields 'role' and 'content'"):
        build_sft_dataset(_script(aloe_dir), AloeArguments(mix_dataset=str(mix), mix_messages_field="turns"))
    with pytest.raises(TrainingDataError, match="speaker 'human'.*mix_role_map"):
        build_sft_dataset(_script(aloe_dir), AloeArguments(mix_dataset=str(mix), mix_messages_field="turns",
                                                           mix_role_field="from", mix_content_field="value"))
    with pytest.raises(TrainingDataError, match="missing column"):
        build_sft_dataset(_script(aloe_dir), AloeArguments(mix_dataset=str(mix), mix_messages_field="messages"))


@pytest.mark.slow
def test_tiny_sft_run_with_the_mix_on(tmp_path, embedded_model_dir):
    import json

    from aloe_bench.commands.train import run_stage
    from test_train_e2e import COMMON

    aloe_dir = write_dataset(tmp_path / "aloe", configs=("sft",))
    mix = write_mix(tmp_path / "codeact", CODEACT)
    out = tmp_path / "sft"
    recipe = Path(__file__).resolve().parents[1] / "training/recipes/embedded/sft.yaml"
    assert run_stage("sft", ["--config", str(recipe), "--dataset_name", str(aloe_dir), "--output_dir", str(out),
                             "--mix_dataset", str(mix), "--mix_split", "codeact", "--mix_messages_field",
                             "conversations", *COMMON]) == 0
    assert (out / "config.json").exists()
    recipe_run = (out / "aloe_recipe.yaml").read_text()
    assert "mix_dataset" in recipe_run and "codeact" in recipe_run
    assert json.loads((out / "aloe_training.json").read_text())
