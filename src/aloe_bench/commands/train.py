"""`aloe train sft|dpo|kto|online|card|pairs`: TRL training from YAML recipes (CLI flags override), cards and uploads.

`run_stage` runs one stage from a list of flags: `aloe reproduce` trains through it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aloe_bench.core.errors import ConfigError
from aloe_bench.core.recipes import (RecipeParser, add_command_group, add_recipe_command, dataclass_from_args,
                                     read_recipe)


@dataclass
class CardConfig:
    """`aloe train card`: the checkpoint whose card and push folder to (re)write, and an optional upload."""

    checkpoint: str = field(metadata={"positional": True, "help": "A checkpoint folder `aloe train` wrote."})
    repo_id: str | None = field(default=None, metadata={"help": "Repo id to name in the card (no upload)."})
    eval_results: str | None = field(default=None, metadata={"help": "Harness output folder or results_*.json."})
    push_to_hub: str | None = field(default=None, metadata={"metavar": "ORG/NAME", "help": "Upload in one commit."})
    private: bool = field(default=False, metadata={"switch": True})


@dataclass
class PairsConfig:
    """`aloe train pairs`: a model, its reference and the held-out preference pairs to score them on."""

    model: str
    reference: str
    dataset_name: str
    dataset_config: str = "dpo"
    split: str = "test"
    beta: float = 0.1
    max_samples: int | None = None
    output: str | None = field(default=None, metadata={"help": "Write the JSON result here."})


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

    from aloe_bench.training.card import build_push_folder, push_checkpoint
    from aloe_bench.training.common import AloeArguments
    from aloe_bench.training.stage_configs import STAGE_CONFIGS

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
        from aloe_bench.training.sft import run_sft

        run_sft(script, aloe, training_args, model_args, recipe=recipe)
    else:
        from aloe_bench.training.preference import run_preference

        run_preference(script, aloe, training_args, model_args, method=method, recipe=recipe)
    folder = build_push_folder(training_args.output_dir, repo_id=repo, eval_source=aloe.eval_results)
    print(f"checkpoint: {training_args.output_dir} (loads with AutoModelForCausalLM); push folder: {folder}")
    if repo:  # a failed upload raises HubUploadError (exit 1); the checkpoint and push folder stay
        url = push_checkpoint(training_args.output_dir, repo, private=bool(training_args.hub_private_repo),
                              eval_source=aloe.eval_results)
        print(f"uploaded: {url}")
    return 0


def _card(args) -> int:
    from aloe_bench.training.card import build_push_folder, push_checkpoint

    cfg = dataclass_from_args(args, CardConfig)
    if cfg.push_to_hub:
        print(f"uploaded: {push_checkpoint(cfg.checkpoint, cfg.push_to_hub, cfg.private, cfg.eval_results)}")
        return 0
    folder = build_push_folder(cfg.checkpoint, repo_id=cfg.repo_id, eval_source=cfg.eval_results)
    print(f"card: {folder / 'README.md'}\npush folder: {folder}")
    return 0


def _pairs(args) -> int:
    from aloe_bench.core.io import atomic_write_json

    from aloe_bench.training.common import load_split, resolve_model
    from aloe_bench.training.preference import preference_eval, print_preference_eval

    cfg = dataclass_from_args(args, PairsConfig)
    pairs = load_split(cfg.dataset_name, cfg.dataset_config, cfg.split)
    if cfg.max_samples:
        pairs = pairs.select(range(min(cfg.max_samples, len(pairs))))
    result = preference_eval(resolve_model(cfg.model)[0], resolve_model(cfg.reference)[0], pairs, cfg.beta)
    print_preference_eval(result)
    if cfg.output:
        atomic_write_json(cfg.output, result)
    return 0


def _online_types() -> list:
    from aloe_bench.core.backends import BackendOptions
    from aloe_bench.training.online import OnlineConfig
    from aloe_bench.training.online_grpo import GrpoArguments

    return [OnlineConfig, GrpoArguments, BackendOptions]


def _eval_options(options):
    """The online run's backend options for the harness: the policy's overrides are the evaluated model's."""
    from dataclasses import replace

    roles = dict(options.role_options or {})
    roles.pop("teacher", None)
    if "policy" in roles:
        roles["model"] = roles.pop("policy")
    return replace(options, role_options=roles or None)


def _round_evaluator(cfg, options, hidden_block: bool = False):
    """Evaluate a round's checkpoint with the harness under one protocol: same user, judge, personas and seed, on
    the same backends' settings as the rollouts; with the profile reward, the policy's profile block is cut from
    its replies as in the rollouts (`reply_hidden_block`)."""
    def evaluate(checkpoint: str, folder) -> dict:
        from aloe_bench.harness import EvalConfig, evaluate_model, resolve_run

        return evaluate_model(resolve_run(EvalConfig(
            model=checkpoint, user_model=cfg.user_model, user_base_url=cfg.user_base_url,
            judge_model=cfg.judge_model, judge_base_url=cfg.judge_base_url, personas=cfg.eval_personas,
            max_personas=cfg.eval_max_personas or 0, turns=cfg.eval_turns, judge_preset=cfg.judge_preset,
            reply_max_new_tokens=cfg.eval_max_new_tokens, user_max_new_tokens=cfg.eval_max_new_tokens,
            temperature=0.0, seed=cfg.seed, output_dir=str(folder), progress=False, reply_hidden_block=hidden_block),
            _eval_options(options)))
    return evaluate


def _online(args) -> int:
    from aloe_bench.core.backends import BackendOptions
    from aloe_bench.training.online import OnlineConfig, run_online
    from aloe_bench.training.online_grpo import GrpoArguments

    cfg = dataclass_from_args(args, OnlineConfig)
    options = dataclass_from_args(args, BackendOptions)
    grpo = dataclass_from_args(args, GrpoArguments)
    hidden = cfg.method == "grpo" and grpo.profile_reward
    table = run_online(cfg, evaluate_fn=_round_evaluator(cfg, options, hidden), grpo=grpo, options=options)
    trained = sum(entry["round"] > 0 for entry in table)
    print(f"rounds trained: {trained}" + (" (plus round 0, the starting policy's eval)" if len(table) > trained else "")
          + f"; table: {args.output_dir}/rounds.json")
    return 0


def register(sub) -> None:
    stages = add_command_group(sub, "train", "Train with TRL: SFT, then DPO / IPO (--loss_type ipo) / KTO.",
                               metavar="STAGE")
    for name, text in STAGE_HELP.items():
        # the stage's dataclasses (TRL's configs import torch) load only when the stage is parsed or its help shown
        stage = stages.add_parser(name, lazy_types=lambda name=name: stage_types(name), help=text, description=text)
        stage.set_defaults(handler=lambda args, name=name: _train(args, name))
    add_recipe_command(stages, "card", [CardConfig], _card,
                       "(Re)write a checkpoint's model card and push folder; optionally upload.")
    add_recipe_command(stages, "pairs", [PairsConfig], _pairs,
                       "Held-out preference accuracy/margins of a model against a reference.")
    add_recipe_command(stages, "online", _online_types, _online,
                       "Iterative rounds on the policy's own conversations: DPO / IPO / KTO, or GRPO with the judge "
                       "as reward.")


STAGE_HELP = {
    "sft": "Supervised fine-tuning (TRL SFTTrainer) on preferred (or rejected) replies, optionally mixed.",
    "dpo": "DPO from an SFT checkpoint (TRL DPOTrainer); --loss_type ipo gives IPO.",
    "kto": "KTO from an SFT checkpoint (TRL KTOTrainer), chosen/rejected as desirable/undesirable.",
}


def stage_types(name: str) -> list:
    """The recipe dataclasses of a stage: TRL's ScriptArguments, ours, TRL's ModelConfig and the trainer config."""
    from trl import ModelConfig, ScriptArguments

    from aloe_bench.training.common import AloeArguments
    from aloe_bench.training.stage_configs import STAGE_CONFIGS

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
