"""`aloe train sft|dpo|kto|card|pairs`: TRL training from YAML recipes (CLI flags override), cards and uploads."""

from __future__ import annotations

import argparse

from aloe_bench.core.config import dataclass_from_args
from aloe_bench.core.errors import ConfigError


def _bool_or_repo(value):
    """`--push_to_hub` takes a repo id (ORG/NAME); plain booleans keep TrainingArguments' meaning."""
    text = str(value).strip()
    if text.lower() in ("true", "yes", "1"):
        return True
    if text.lower() in ("false", "no", "0", "none", ""):
        return False
    return text


def _retype_push_flag(parser) -> None:
    for action in parser._actions:
        if action.dest == "push_to_hub":
            action.type = _bool_or_repo
            action.metavar = "ORG/NAME"
            action.help = "Upload the final checkpoint (with the project's model card) to this Hub repo, in one commit."


def _push_target(args) -> str | None:
    value = getattr(args, "push_to_hub", False)
    if value is True:
        if not getattr(args, "hub_model_id", None):
            raise ConfigError("--push_to_hub needs a repo id: --push_to_hub ORG/NAME")
        return args.hub_model_id
    return value or None


def _train(args, config_cls, method: str) -> int:
    from trl import ModelConfig, ScriptArguments

    from .card import build_push_folder, push_checkpoint
    from .sft import AloeArguments, run_sft

    repo = _push_target(args)
    args.push_to_hub = False
    script = dataclass_from_args(args, ScriptArguments)
    if not script.dataset_name:
        raise ConfigError("name the training data with --dataset_name (a Hub id or a dataset folder)")
    aloe = dataclass_from_args(args, AloeArguments)
    model_args = dataclass_from_args(args, ModelConfig)
    if not model_args.model_name_or_path:
        raise ConfigError("name the model with --model_name_or_path (embedded, a Hub id or a folder)")
    training_args = dataclass_from_args(args, config_cls)
    if method == "sft":
        run_sft(script, aloe, training_args, model_args, recipe=args.effective_recipe)
    else:
        from .preference import run_preference

        run_preference(script, aloe, training_args, model_args, method=method, recipe=args.effective_recipe)
    folder = build_push_folder(training_args.output_dir, repo_id=repo, eval_source=aloe.eval_results)
    print(f"checkpoint: {training_args.output_dir} (loads with AutoModelForCausalLM); push folder: {folder}")
    if repo:  # a failed upload raises HubUploadError (exit 1); the checkpoint and push folder stay
        url = push_checkpoint(training_args.output_dir, repo, private=bool(training_args.hub_private_repo),
                              eval_source=aloe.eval_results)
        print(f"uploaded: {url}")
    return 0


def _sft(args) -> int:
    from trl import SFTConfig

    return _train(args, SFTConfig, "sft")


def _dpo(args) -> int:
    from trl import DPOConfig

    return _train(args, DPOConfig, "dpo")


def _kto(args) -> int:
    from trl import KTOConfig

    return _train(args, KTOConfig, "kto")


def _card(args) -> int:
    from .card import build_push_folder, push_checkpoint

    if args.push_to_hub:
        print(f"uploaded: {push_checkpoint(args.checkpoint, args.push_to_hub, args.private, args.eval_results)}")
        return 0
    folder = build_push_folder(args.checkpoint, repo_id=args.repo_id, eval_source=args.eval_results)
    print(f"card: {folder / 'README.md'}\npush folder: {folder}")
    return 0


def _pairs(args) -> int:
    import json

    from .preference import preference_eval, print_preference_eval
    from .sft import load_split, resolve_model

    pairs = load_split(args.dataset_name, args.dataset_config, args.split)
    if args.max_samples:
        pairs = pairs.select(range(min(args.max_samples, len(pairs))))
    result = preference_eval(resolve_model(args.model)[0], resolve_model(args.reference)[0], pairs, args.beta)
    print_preference_eval(result)
    if args.output:
        with open(args.output, "w") as fh:
            json.dump(result, fh, indent=2)
    return 0


def register(sub, bench_sub) -> None:
    train = sub.add_parser("train", help="Train with TRL: SFT, then DPO / IPO (--loss_type ipo) / KTO.")
    stages = train.add_subparsers(dest="train_command", metavar="STAGE", required=True,
                                  parser_class=argparse.ArgumentParser)
    for name, text in STAGE_HELP.items():
        # TRL is imported only when a stage runs: the stage parses its own flags (see `parse_stage`).
        stage = stages.add_parser(name, help=text, add_help=False, prefix_chars="\x00")
        stage.add_argument("rest", nargs=argparse.REMAINDER)
        stage.set_defaults(handler=lambda args, name=name: run_stage(name, args.rest))
    card = stages.add_parser("card", help="(Re)write a checkpoint's model card and push folder; optionally upload.")
    card.add_argument("checkpoint")
    card.add_argument("--repo_id", default=None, help="Repo id to name in the card (no upload).")
    card.add_argument("--eval_results", default=None, help="Harness output folder or results_*.json.")
    card.add_argument("--push_to_hub", "--push-to-hub", default=None, metavar="ORG/NAME", help="Upload in one commit.")
    card.add_argument("--private", action="store_true")
    card.set_defaults(handler=_card)
    pairs = stages.add_parser("pairs", help="Held-out preference accuracy/margins of a model against a reference.")
    pairs.add_argument("--model", required=True)
    pairs.add_argument("--reference", required=True)
    pairs.add_argument("--dataset_name", required=True)
    pairs.add_argument("--dataset_config", default="dpo")
    pairs.add_argument("--split", default="test")
    pairs.add_argument("--beta", type=float, default=0.1)
    pairs.add_argument("--max_samples", type=int, default=None)
    pairs.add_argument("--output", default=None, help="Write the JSON result here.")
    pairs.set_defaults(handler=_pairs)


STAGE_HELP = {
    "sft": "Supervised fine-tuning (TRL SFTTrainer) on preferred (or rejected) replies, optionally mixed.",
    "dpo": "DPO from an SFT checkpoint (TRL DPOTrainer); --loss_type ipo gives IPO.",
    "kto": "KTO from an SFT checkpoint (TRL KTOTrainer), chosen/rejected as desirable/undesirable.",
}


def stage_types(name: str) -> list:
    """The recipe dataclasses of a stage: TRL's ScriptArguments, ours, TRL's ModelConfig and the trainer config."""
    from trl import DPOConfig, KTOConfig, ModelConfig, ScriptArguments, SFTConfig

    from .sft import AloeArguments

    return [ScriptArguments, AloeArguments, ModelConfig, {"sft": SFTConfig, "dpo": DPOConfig, "kto": KTOConfig}[name]]


def parse_stage(name: str, argv: list[str]):
    """Parse a stage's flags with `--config recipe.yaml` as defaults (flags win; unknown recipe keys are errors)."""
    from transformers import HfArgumentParser

    from aloe_bench.core.config import add_recipe_parser, apply_recipe

    root = argparse.ArgumentParser(prog="aloe train")
    stages = root.add_subparsers(dest="stage", required=True, parser_class=HfArgumentParser)
    parser = add_recipe_parser(stages, name, stage_types(name), None, STAGE_HELP[name])
    _retype_push_flag(parser)
    full = [name, *argv]
    args = apply_recipe(root, root.parse_args(full), full)
    args.effective_recipe = effective_recipe(parser, args, argv)
    return args


def effective_recipe(parser, args, argv: list[str]) -> dict:
    """The recipe as run: the YAML's keys and every flag given on the command line, with their final values."""
    from aloe_bench.core.config import read_recipe

    keys = list(read_recipe(args.config, args.recipe_types)) if args.config else []
    given = {token.split("=", 1)[0] for token in argv if token.startswith("--")}
    for action in parser._actions:
        if given & set(action.option_strings) and action.dest not in keys and action.dest not in ("config", "help"):
            keys.append(action.dest.removeprefix("no_") if action.dest.startswith("no_") else action.dest)
    return {k: getattr(args, k) for k in keys if hasattr(args, k)}


def run_stage(name: str, argv: list[str]) -> int:
    args = parse_stage(name, argv)  # a bad recipe raises ConfigError: `aloe` prints it
    return {"sft": _sft, "dpo": _dpo, "kto": _kto}[name](args)
