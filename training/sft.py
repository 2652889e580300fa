"""Supervised fine-tuning on the ALOE dataset with TRL's SFTTrainer (optionally mixed with a general dataset).

The recipe is four dataclasses: TRL's `ScriptArguments` (which dataset), `AloeArguments` (what this project adds:
SFT source, mix dataset, Hub upload), TRL's `SFTConfig` and TRL's `ModelConfig` for the model and LoRA.
"""

from __future__ import annotations

from aloe_bench.core.errors import ConfigError

from .common import (
    AloeArguments,
    TrainingDataError,
    head,
    load_split,
    prepare_run,
    require_columns,
    run_record,
    train_and_save,
    write_run_info,
)


def sft_rows(dataset: str, source: str, split: str, revision: str | None = None, limit: int | None = None):
    """Prompt/completion rows: the sft config for 'preferred', the dpo config's `rejected` for 'rejected'."""
    if source == "preferred":
        ds = load_split(dataset, "sft", split, revision)
        require_columns(ds, ["prompt", "completion"], f"{dataset} [sft/{split}]")
    elif source == "rejected":
        ds = load_split(dataset, "dpo", split, revision)
        require_columns(ds, ["prompt", "rejected"], f"{dataset} [dpo/{split}]")
        ds = ds.select_columns(["prompt", "rejected"]).rename_column("rejected", "completion")
    else:
        raise ConfigError(f"sft_source must be 'preferred' or 'rejected', got {source!r}")
    return head(ds.select_columns(["prompt", "completion"]), limit)


def _role_map(text: str | None) -> dict[str, str]:
    mapping = {}
    for pair in (text or "").split(","):
        if pair.strip():
            name, sep, role = pair.partition(":")
            if not sep or role.strip() not in ("system", "user", "assistant"):
                raise TrainingDataError(f"mix_role_map: {pair.strip()!r} is not NAME:system|user|assistant")
            mapping[name.strip()] = role.strip()
    return mapping


def mix_rows(aloe: AloeArguments, features):
    """The general multi-turn mix as prompt/completion rows, one per assistant turn of every conversation.

    Each assistant turn is a completion on the conversation before it, so every assistant turn of a mix
    conversation is trained (completion-only loss, as for the ALOE rows) and no user or system text is.
    """
    where = f"mix dataset {aloe.mix_dataset} [{aloe.mix_split}]"
    ds = load_split(aloe.mix_dataset, aloe.mix_dataset_config, aloe.mix_split)
    require_columns(ds, [aloe.mix_messages_field], where)
    ds = head(ds, aloe.mix_max_samples)
    roles = _role_map(aloe.mix_role_map)
    role_key, content_key = aloe.mix_role_field, aloe.mix_content_field

    def message(item, row: int, k: int) -> dict:
        if not isinstance(item, dict) or role_key not in item or content_key not in item:
            keys = sorted(item) if isinstance(item, dict) else type(item).__name__
            raise TrainingDataError(f"{where}, row {row}, {aloe.mix_messages_field}[{k}]: needs fields "
                                    f"{role_key!r} and {content_key!r} (has {keys}); set mix_role_field/mix_content_field")
        role = roles.get(item[role_key], item[role_key])
        if role not in ("system", "user", "assistant"):
            raise TrainingDataError(f"{where}, row {row}, {aloe.mix_messages_field}[{k}]: speaker {item[role_key]!r} "
                                    "is not system/user/assistant; map it with mix_role_map")
        return {"role": role, "content": item[content_key] or ""}

    def per_assistant_turn(batch, indices):
        out = {"prompt": [], "completion": []}
        for row, conversation in zip(indices, batch[aloe.mix_messages_field]):
            messages = [message(item, row, k) for k, item in enumerate(conversation or [])]
            for k, msg in enumerate(messages):
                if msg["role"] == "assistant" and any(m["role"] == "user" for m in messages[:k]):
                    out["prompt"].append(messages[:k])
                    out["completion"].append([msg])
        return out

    return ds.map(per_assistant_turn, batched=True, with_indices=True, remove_columns=ds.column_names,
                  features=features)


def build_sft_dataset(script, aloe: AloeArguments, seed: int = 42):
    """Train (ALOE rows, optionally mixed and shuffled with the general dataset) and test splits for SFT.

    Not TRL's `get_dataset(DatasetMixtureConfig)`: it loads each source with `datasets.load_dataset` itself,
    bypassing `load_dataset_source` (whose content-addressed cache of local folders exists because `datasets`
    served stale builds of a rebuilt folder), and it concatenates sources as they come, while the mix must first
    become per-assistant-turn prompt/completion rows to share the ALOE rows' columns. What mixing is left is
    `concatenate_datasets` and a seeded shuffle.
    """
    from datasets import concatenate_datasets

    train = sft_rows(script.dataset_name, aloe.sft_source, script.dataset_train_split, limit=aloe.max_train_samples)
    if aloe.mix_dataset:
        train = concatenate_datasets([train, mix_rows(aloe, train.features)]).shuffle(seed=seed)
    try:
        test = sft_rows(script.dataset_name, aloe.sft_source, script.dataset_test_split, limit=aloe.max_eval_samples)
    except TrainingDataError:
        test = None  # a dataset without a test split trains all the same
    return train, test


def run_sft(script, aloe: AloeArguments, training_args, model_args, recipe: dict | None = None) -> dict:
    """Train with SFTTrainer and save a loadable checkpoint with its run info; return the run info."""
    from trl import SFTTrainer

    model_path, base_model = prepare_run(aloe, training_args, model_args)
    train, test = build_sft_dataset(script, aloe, seed=training_args.seed)
    metrics = train_and_save("sft", SFTTrainer, model_path, train, test, training_args, model_args, aloe)
    info = run_record("sft", base_model, script, "sft" if aloe.sft_source == "preferred" else "dpo", model_args,
                      train, metrics, sft_source=aloe.sft_source, mix_dataset=aloe.mix_dataset)
    write_run_info(training_args.output_dir, info, recipe)
    return info
