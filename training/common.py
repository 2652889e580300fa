"""What every training stage (SFT, DPO/IPO, KTO) shares: the project's recipe fields, model and data loading,
the trainer run itself (PEFT, dtype, resume, throughput, a loadable save) and the run record next to the checkpoint.

TRL is imported inside the functions only: `aloe train card` and the model card code read the constants here
without loading torch.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from aloe_bench.core.errors import AloeError, ConfigError, MissingFileError
from aloe_bench.core.io import atomic_write_json, atomic_write_text, read_json

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


# --- model ------------------------------------------------------------------------------------------------------

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
            return read_json(folder / marker)[key]
    config = read_json(folder / "config.json") if (folder / "config.json").exists() else {}
    name = config.get("_name_or_path") or ""
    return name if name.count("/") == 1 and not Path(name).exists() and not name.startswith((".", "/")) else None


# --- data -------------------------------------------------------------------------------------------------------

def load_split(dataset: str, config: str, split: str, revision: str | None = None):
    """Load one split of one config from a Hub dataset id or a local dataset folder (same layout).

    Through `load_dataset_source`, whose content-addressed cache keeps a rebuilt local folder from being served
    from a stale `datasets` build.
    """
    from aloe_bench.core.dataset_folder import load_dataset_source

    try:
        return load_dataset_source(dataset, config, split=split, revision=revision)
    except ValueError as exc:
        raise TrainingDataError(f"dataset {dataset!r}, config {config!r}, split {split!r}: {exc}") from exc


def require_columns(ds, columns, where: str) -> None:
    """Raise TrainingDataError naming `where` and the missing columns."""
    missing = [c for c in columns if c not in ds.column_names]
    if missing:
        raise TrainingDataError(f"{where}: missing column(s) {', '.join(missing)} (has {', '.join(ds.column_names)})")


def head(ds, n: int | None):
    """The first `n` rows (all with None)."""
    return ds if n is None else ds.select(range(min(n, len(ds))))


# --- the trainer run --------------------------------------------------------------------------------------------

def prepare_run(aloe: AloeArguments, training_args, model_args) -> tuple[str, str]:
    """Resolve the model and settle the project defaults the recipe cannot express; return (model path, base id).

    The Trainer counts non-padding tokens (for throughput) and never pushes with its own card (we upload in
    one commit with ours); the model loads in `model_args.dtype` unless the recipe set `model_init_kwargs`.
    """
    model_path, base_model = resolve_model(model_args.model_name_or_path)
    base_model = aloe.base_model_id or base_model
    if base_model is None:
        raise ConfigError(f"{model_args.model_name_or_path}: cannot tell its Hub base model; pass --base_model_id")
    if training_args.include_num_input_tokens_seen in (False, "no", None):
        training_args.include_num_input_tokens_seen = "non_padding"
    training_args.push_to_hub = False
    training_args.hub_model_id = None
    if training_args.model_init_kwargs is None and model_args.dtype:
        training_args.model_init_kwargs = {"dtype": model_args.dtype}
    return model_path, base_model


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


def report_throughput(stage: str, stats: dict) -> None:
    print(f"[{stage}] {stats['steps']} steps, {stats['input_tokens']} tokens in {stats['train_runtime_s']} s: "
          f"{stats['tokens_per_second']} tokens/s", flush=True)


def train_and_save(stage: str, trainer_cls, model_path: str, train, eval_data, training_args, model_args,
                   aloe: AloeArguments, eval_key: str = "eval") -> dict:
    """Run one TRL trainer and save a loadable checkpoint; return the metrics (train, throughput, eval).

    With no eval rows evaluation is switched off; LoRA comes from `model_args` (TRL's `get_peft_config`);
    an interrupted run resumes from the newest checkpoint in output_dir.
    """
    from trl import get_peft_config

    if eval_data is None:
        training_args.eval_strategy = "no"
    trainer = trainer_cls(
        model=model_path,
        args=training_args,
        train_dataset=train,
        eval_dataset=eval_data if training_args.eval_strategy != "no" else None,
        peft_config=get_peft_config(model_args),
    )
    result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint
                           or last_checkpoint(training_args.output_dir))
    stats = throughput(trainer, result)
    metrics = {"train": result.metrics, "throughput": stats}
    if eval_data is not None and len(eval_data):
        metrics[eval_key] = trainer.evaluate(eval_data)
    save_final(trainer, training_args.output_dir, aloe.merge_lora)
    report_throughput(stage, stats)
    return metrics


def run_record(stage: str, base_model: str, script, dataset_config: str, model_args, train, metrics: dict,
               **stage_fields) -> dict:
    """What every stage records about its run (the fields the model card reads), with the stage's own fields."""
    return {"stage": stage, **stage_fields, "base_model": base_model, "parent_model": model_args.model_name_or_path,
            "dataset": script.dataset_name, "dataset_config": dataset_config, "lora": bool(model_args.use_peft),
            "train_rows": len(train), "metrics": metrics}


def write_run_info(output_dir: str, info: dict, recipe: dict | None) -> None:
    """Record what produced the checkpoint (stage, true base model, dataset, command) and the recipe as run."""
    import yaml

    out = Path(output_dir)
    info = {**info, "command": ["aloe", *sys.argv[1:]] if sys.argv and sys.argv[0].endswith("aloe") else None,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    atomic_write_json(out / TRAINING_INFO, info, default=str)
    if recipe:
        plain = {k: v if isinstance(v, (str, int, float, bool, list, dict, type(None))) else str(v)
                 for k, v in recipe.items()}
        text = yaml.safe_dump(plain, sort_keys=False, default_flow_style=None)
        atomic_write_text(out / RECIPE_FILE, "# The recipe as run: the YAML recipe with command-line overrides applied.\n" + text)
