"""`aloe train sft|dpo|kto|card|pairs`: TRL training from YAML recipes (CLI flags override), cards and uploads."""

from __future__ import annotations

from aloe_bench.core.errors import ConfigError
from aloe_bench.core.recipes import RecipeParser, dataclass_from_args, read_recipe


def _bool_or_repo(value):
    """`--push_to_hub` takes a repo id (ORG/NAME); plain booleans keep TrainingArguments' meaning."""
    text = str(value).strip()
    if text.lower() in ("true", "yes", "1"):
        return True
    if text.lower() in ("false", "no", "0", "none", ""):
        return False
    return text


def _push_target(args) -> str | None:
    value = _bool_or_repo(getattr(args, "push_to_hub", None))
    if value is True:
        if not getattr(args, "hub_model_id", None):
            raise ConfigError("--push_to_hub needs a repo id: --push_to_hub ORG/NAME")
        return args.hub_model_id
    return value or None


def _train(args, method: str) -> int:
    from trl import ModelConfig, ScriptArguments

    from .card import build_push_folder, push_checkpoint
    from .common import AloeArguments
    from .stage_configs import STAGE_CONFIGS

    repo = _push_target(args)
    recipe = effective_recipe(args, stage_types(method))
    args.push_to_hub = None
    script = dataclass_from_args(args, ScriptArguments)
    if not script.dataset_name:
        raise ConfigError("name the training data with --dataset_name (a Hub id or a dataset folder)")
    aloe = dataclass_from_args(args, AloeArguments)
    model_args = dataclass_from_args(args, ModelConfig)
    if not model_args.model_name_or_path:
        raise ConfigError("name the model with --model_name_or_path (embedded, a Hub id or a folder)")
    training_args = dataclass_from_args(args, STAGE_CONFIGS[method])
    if method == "sft":
        from .sft import run_sft

        run_sft(script, aloe, training_args, model_args, recipe=recipe)
    else:
        from .preference import run_preference

        run_preference(script, aloe, training_args, model_args, method=method, recipe=recipe)
    folder = build_push_folder(training_args.output_dir, repo_id=repo, eval_source=aloe.eval_results)
    print(f"checkpoint: {training_args.output_dir} (loads with AutoModelForCausalLM); push folder: {folder}")
    if repo:  # a failed upload raises HubUploadError (exit 1); the checkpoint and push folder stay
        url = push_checkpoint(training_args.output_dir, repo, private=bool(training_args.hub_private_repo),
                              eval_source=aloe.eval_results)
        print(f"uploaded: {url}")
    return 0


def _card(args) -> int:
    from .card import build_push_folder, push_checkpoint

    if args.push_to_hub:
        print(f"uploaded: {push_checkpoint(args.checkpoint, args.push_to_hub, args.private, args.eval_results)}")
        return 0
    folder = build_push_folder(args.checkpoint, repo_id=args.repo_id, eval_source=args.eval_results)
    print(f"card: {folder / 'README.md'}\npush folder: {folder}")
    return 0


def _pairs(args) -> int:
    from aloe_bench.core.io import atomic_write_json

    from .common import load_split, resolve_model
    from .preference import preference_eval, print_preference_eval

    pairs = load_split(args.dataset_name, args.dataset_config, args.split)
    if args.max_samples:
        pairs = pairs.select(range(min(args.max_samples, len(pairs))))
    result = preference_eval(resolve_model(args.model)[0], resolve_model(args.reference)[0], pairs, args.beta)
    print_preference_eval(result)
    if args.output:
        atomic_write_json(args.output, result)
    return 0


def register(sub) -> None:
    train = sub.add_parser("train", help="Train with TRL: SFT, then DPO / IPO (--loss_type ipo) / KTO.")
    stages = train.add_subparsers(dest="train_command", metavar="STAGE", required=True)
    for name, text in STAGE_HELP.items():
        # the stage's dataclasses (TRL's configs import torch) load only when the stage is parsed or its help shown
        stage = stages.add_parser(name, lazy_types=lambda name=name: stage_types(name), help=text, description=text)
        stage.set_defaults(handler=lambda args, name=name: _train(args, name))
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
    from trl import ModelConfig, ScriptArguments

    from .common import AloeArguments
    from .stage_configs import STAGE_CONFIGS

    return [ScriptArguments, AloeArguments, ModelConfig, STAGE_CONFIGS[name]]


def effective_recipe(args, dataclass_types: list) -> dict:
    """The recipe as run: the YAML's fields, then every field the command line set away from its default.

    "Default" is what the stage's flags give with nothing on the command line (HfArgumentParser's defaults are
    not always the dataclass's: TrainingArguments' `debug` parses to None, for one).
    """
    recipe = {key: getattr(args, key) for key in read_recipe(args.config, dataclass_types)} if args.config else {}
    defaults = vars(RecipeParser(dataclass_types).parse_args([]))
    for name, default in defaults.items():
        if name not in recipe and name != "config" and hasattr(args, name) and getattr(args, name) != default:
            recipe[name] = getattr(args, name)
    return recipe


def parse_stage(name: str, argv: list[str]):
    """Parse a stage's flags with `--config recipe.yaml` as defaults (flags win; unknown recipe keys are errors)."""
    parser = RecipeParser(stage_types(name), prog=f"aloe train {name}", description=STAGE_HELP[name])
    args = parser.parse_args(argv)
    args.effective_recipe = effective_recipe(args, stage_types(name))
    return args


def run_stage(name: str, argv: list[str]) -> int:
    args = parse_stage(name, argv)  # a bad recipe raises ConfigError: `aloe` prints it
    return _train(args, name)
