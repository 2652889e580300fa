"""Supervised fine-tuning on the ALOE dataset with TRL's SFTTrainer, plus the pieces every training stage shares.

The recipe is three dataclasses: TRL's `ScriptArguments` (which dataset), `AloeArguments` (what this project adds:
SFT source, mix dataset, Hub upload) and TRL's `SFTConfig`, with TRL's `ModelConfig` for the model and LoRA.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from aloe_bench.core.errors import AloeError, ConfigError, MissingFileError

TRAINING_INFO = "aloe_training.json"
RECIPE_FILE = "aloe_recipe.yaml"
EMBEDDED_MARKER = "aloe_embedded.json"


@dataclass
class AloeArguments:
    """What a recipe adds to TRL's arguments: the SFT data source, an optional mix dataset and the upload target."""

    sft_source: str = field(default="preferred", metadata={
        "help": "SFT targets: 'preferred' (the sft config) or 'rejected' (the dpo config's rejected replies)."})
    mix_dataset: str | None = field(default=None, metadata={
        "help": "Optional general multi-turn dataset (Hub id or folder) with a messages column, mixed into SFT."})
    mix_dataset_config: str | None = field(default=None, metadata={"help": "Config name of the mix dataset."})
    mix_split: str = field(default="train", metadata={"help": "Split of the mix dataset."})
    mix_messages_field: str = field(default="messages", metadata={"help": "Column holding the mix conversations."})
    mix_role_field: str = field(default="role", metadata={"help": "Key of a message's speaker in the mix dataset."})
    mix_content_field: str = field(default="content", metadata={"help": "Key of a message's text in the mix dataset."})
    mix_role_map: str | None = field(default=None, metadata={
        "help": "Speaker names to chat roles, e.g. 'human:user,gpt:assistant' (names already system/user/assistant "
                "need no entry)."})
    mix_max_samples: int | None = field(default=None, metadata={"help": "Use at most this many mix conversations."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Train on the first N rows only."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Evaluate on the first N test rows only."})
    base_model_id: str | None = field(default=None, metadata={
        "help": "The Hub id the model derives from, for the card (found automatically for embedded/Hub/ALOE models)."})
    merge_lora: bool = field(default=True, metadata={
        "help": "Merge LoRA adapters into the saved model so it loads with AutoModelForCausalLM."})
    eval_results: str | None = field(default=None, metadata={
        "help": "ALOE harness output folder or results_*.json to put in the model card."})


class TrainingDataError(AloeError, ValueError):
    """The training dataset is missing a config, split or column; the message names it."""


def resolve_model(name_or_path: str) -> tuple[str, str]:
    """Return (path or id to load, true Hub base model id) for `embedded`, a Hub id, or a local folder."""
    if name_or_path == "embedded":
        from aloe_bench.core.embedded import EMBEDDED_MODEL_ID, embedded_model_dir

        return str(embedded_model_dir()), EMBEDDED_MODEL_ID
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise MissingFileError(f"model folder {path}: no config.json")
        return str(path.resolve()), base_model_of(path)
    return name_or_path, name_or_path


def base_model_of(folder: Path) -> str | None:
    """The Hub id a local folder derives from: recorded by our training, the embedded conversion, or its config."""
    folder = Path(folder)
    for marker, key in ((TRAINING_INFO, "base_model"), (EMBEDDED_MARKER, "source_model")):
        if (folder / marker).exists():
            return json.loads((folder / marker).read_text())[key]
    config = json.loads((folder / "config.json").read_text()) if (folder / "config.json").exists() else {}
    name = config.get("_name_or_path") or ""
    return name if name.count("/") == 1 and not Path(name).exists() and not name.startswith((".", "/")) else None


def load_split(dataset: str, config: str, split: str, revision: str | None = None):
    """Load one split of one config from a Hub dataset id or a local dataset folder (same layout)."""
    from aloe_bench.core.hub_folder import load_dataset_source

    try:
        return load_dataset_source(dataset, config, split=split, revision=revision)
    except ValueError as exc:
        raise TrainingDataError(f"dataset {dataset!r}, config {config!r}, split {split!r}: {exc}") from exc


def _require_columns(ds, columns, where: str) -> None:
    missing = [c for c in columns if c not in ds.column_names]
    if missing:
        raise TrainingDataError(f"{where}: missing column(s) {', '.join(missing)} (has {', '.join(ds.column_names)})")


def _head(ds, n: int | None):
    return ds if n is None else ds.select(range(min(n, len(ds))))


def sft_rows(dataset: str, source: str, split: str, revision: str | None = None, limit: int | None = None):
    """Prompt/completion rows: the sft config for 'preferred', the dpo config's `rejected` for 'rejected'."""
    if source == "preferred":
        ds = load_split(dataset, "sft", split, revision)
        _require_columns(ds, ["prompt", "completion"], f"{dataset} [sft/{split}]")
    elif source == "rejected":
        ds = load_split(dataset, "dpo", split, revision)
        _require_columns(ds, ["prompt", "rejected"], f"{dataset} [dpo/{split}]")
        ds = ds.select_columns(["prompt", "rejected"]).rename_column("rejected", "completion")
    else:
        raise ConfigError(f"sft_source must be 'preferred' or 'rejected', got {source!r}")
    return _head(ds.select_columns(["prompt", "completion"]), limit)


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
    _require_columns(ds, [aloe.mix_messages_field], where)
    ds = _head(ds, aloe.mix_max_samples)
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
    """Train (ALOE rows, optionally mixed and shuffled with the general dataset) and test splits for SFT."""
    from datasets import concatenate_datasets

    train = sft_rows(script.dataset_name, aloe.sft_source, script.dataset_train_split, limit=aloe.max_train_samples)
    if aloe.mix_dataset:
        train = concatenate_datasets([train, mix_rows(aloe, train.features)]).shuffle(seed=seed)
    try:
        test = sft_rows(script.dataset_name, aloe.sft_source, script.dataset_test_split, limit=aloe.max_eval_samples)
    except TrainingDataError:
        test = None  # a dataset without a test split trains all the same
    return train, test


def prepare_training_args(training_args) -> None:
    """Project defaults the recipe cannot express: count non-padding tokens (for throughput), never let the
    Trainer push with its own card (we upload in one commit with ours)."""
    if training_args.include_num_input_tokens_seen in (False, "no", None):
        training_args.include_num_input_tokens_seen = "non_padding"
    training_args.push_to_hub = False
    training_args.hub_model_id = None


def last_checkpoint(output_dir: str) -> str | None:
    """The newest `checkpoint-N` in output_dir, to resume an interrupted run."""
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(output_dir) if Path(output_dir).is_dir() else None


def throughput(trainer, train_output) -> dict:
    """Training tokens per second (non-padding input tokens over wall time of `train`)."""
    runtime = float(train_output.metrics.get("train_runtime") or 0.0)
    tokens = int(getattr(trainer.state, "num_input_tokens_seen", 0) or 0)
    return {"train_runtime_s": round(runtime, 2), "input_tokens": tokens,
            "tokens_per_second": round(tokens / runtime, 2) if runtime > 0 else None,
            "steps": int(trainer.state.global_step)}


def save_final(trainer, output_dir: str, merge_lora: bool) -> None:
    """Save a folder that `AutoModelForCausalLM.from_pretrained` loads: LoRA adapters merged unless asked not to."""
    model = trainer.model
    if merge_lora and hasattr(model, "merge_and_unload"):
        merged = model.merge_and_unload()
        merged.save_pretrained(output_dir)
    else:
        trainer.save_model(output_dir)
    trainer.processing_class.save_pretrained(output_dir)


def write_run_info(output_dir: str, info: dict, recipe: dict | None) -> None:
    """Record what produced the checkpoint (stage, true base model, dataset, command) and the recipe as run."""
    import yaml

    out = Path(output_dir)
    info = {**info, "command": ["aloe", *sys.argv[1:]] if sys.argv and sys.argv[0].endswith("aloe") else None,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    (out / TRAINING_INFO).write_text(json.dumps(info, indent=2, default=str))
    if recipe:
        plain = {k: v if isinstance(v, (str, int, float, bool, list, dict, type(None))) else str(v)
                 for k, v in recipe.items()}
        text = yaml.safe_dump(plain, sort_keys=False, default_flow_style=None)
        (out / RECIPE_FILE).write_text("# The recipe as run: the YAML recipe with command-line overrides applied.\n" + text)


def report_throughput(stage: str, stats: dict) -> None:
    print(f"[{stage}] {stats['steps']} steps, {stats['input_tokens']} tokens in {stats['train_runtime_s']} s: "
          f"{stats['tokens_per_second']} tokens/s", flush=True)


def run_sft(script, aloe: AloeArguments, training_args, model_args, recipe: dict | None = None) -> dict:
    """Train with SFTTrainer and save a loadable checkpoint with its run info; return the run info."""
    from trl import SFTTrainer, get_peft_config

    model_path, base_model = resolve_model(model_args.model_name_or_path)
    base_model = aloe.base_model_id or base_model
    if base_model is None:
        raise ConfigError(f"{model_args.model_name_or_path}: cannot tell its Hub base model; pass --base_model_id")
    prepare_training_args(training_args)
    train, test = build_sft_dataset(script, aloe, seed=training_args.seed)
    if training_args.model_init_kwargs is None and model_args.dtype:
        training_args.model_init_kwargs = {"dtype": model_args.dtype}
    if test is None and training_args.eval_strategy != "no":
        training_args.eval_strategy = "no"
    trainer = SFTTrainer(
        model=model_path,
        args=training_args,
        train_dataset=train,
        eval_dataset=test if training_args.eval_strategy != "no" else None,
        peft_config=get_peft_config(model_args),
    )
    result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint
                           or last_checkpoint(training_args.output_dir))
    stats = throughput(trainer, result)
    metrics = {"train": result.metrics, "throughput": stats}
    if test is not None and len(test):
        metrics["eval"] = trainer.evaluate(test)
    save_final(trainer, training_args.output_dir, aloe.merge_lora)
    info = {"stage": "sft", "base_model": base_model, "parent_model": model_args.model_name_or_path,
            "dataset": script.dataset_name, "dataset_config": "sft" if aloe.sft_source == "preferred" else "dpo",
            "sft_source": aloe.sft_source, "mix_dataset": aloe.mix_dataset, "lora": bool(model_args.use_peft),
            "train_rows": len(train), "metrics": metrics}
    write_run_info(training_args.output_dir, info, recipe)
    report_throughput("sft", stats)
    return info
