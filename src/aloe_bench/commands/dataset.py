"""`aloe dataset build|push`: write the Hub dataset folder from generated conversations; upload it in one commit."""

from __future__ import annotations

import json
from dataclasses import dataclass, field


@dataclass
class DatasetPushConfig:
    """`aloe dataset push`: the built folder and the dataset repo it goes to."""

    folder: str = field(metadata={"positional": True, "help": "A folder `aloe dataset build` wrote."})
    repo_id: str = field(metadata={"help": "ORG/NAME"})
    private: bool = field(default=False, metadata={"switch": True})
    commit_message: str | None = None


def register(sub) -> None:
    from aloe_bench.core.recipes import add_command_group, add_recipe_command

    actions = add_command_group(sub, "dataset", "Build the Hub dataset folder from generated conversations; push it.",
                                metavar="ACTION")
    add_recipe_command(actions, "build", _build_types, _build,
                       "Write the dataset repo folder (personas, conversations, sft, dpo + card).")
    add_recipe_command(actions, "push", [DatasetPushConfig], _push,
                       "Upload a built dataset folder in one commit (token from HF_TOKEN).")


def _build_types() -> list:
    """`aloe dataset build`'s recipe dataclass, loaded when that command is parsed (its module imports `datasets`)."""
    from aloe_bench.training.dataset import BuildConfig

    return [BuildConfig]


def _build(args) -> int:
    from aloe_bench.core.recipes import dataclass_from_args
    from aloe_bench.training.dataset import BuildConfig, build_dataset

    summary = build_dataset(dataclass_from_args(args, BuildConfig))
    print(json.dumps(summary, indent=2))
    return 0


def _push(args) -> int:
    from aloe_bench.core.recipes import dataclass_from_args
    from aloe_bench.training.dataset import push_dataset

    cfg = dataclass_from_args(args, DatasetPushConfig)
    url = push_dataset(cfg.folder, cfg.repo_id, private=cfg.private, commit_message=cfg.commit_message)
    print(json.dumps({"repo_id": cfg.repo_id, "commit": url}))
    return 0
