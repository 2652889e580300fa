"""TRL's trainer configs as `aloe train` takes them: `--push_to_hub ORG/NAME` names the repo to upload to.

TRL's `push_to_hub` is a yes/no flag that makes the Trainer push with its own card; ours is the target of one
upload of the checkpoint with the project's card after training (`--push_to_hub` alone means `hub_model_id`).
Module-level classes, so the Trainer's pickled `training_args.bin` loads again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import DPOConfig, KTOConfig, SFTConfig


def _push_to_hub_field():
    """The `push_to_hub` field each stage config declares in place of TRL's flag."""
    return field(default=None, metadata={
        "help": "Upload the final checkpoint (with the project's model card) to this Hub repo, in one commit.",
        "metavar": "ORG/NAME", "nargs": "?", "const": "true"})


@dataclass
class AloeSFTConfig(SFTConfig):
    """TRL's `SFTConfig` with `push_to_hub` naming the Hub repo the project uploads to after training."""

    push_to_hub: str | None = _push_to_hub_field()


@dataclass
class AloeDPOConfig(DPOConfig):
    """TRL's `DPOConfig` with `push_to_hub` naming the Hub repo the project uploads to after training."""

    push_to_hub: str | None = _push_to_hub_field()


@dataclass
class AloeKTOConfig(KTOConfig):
    """TRL's `KTOConfig` with `push_to_hub` naming the Hub repo the project uploads to after training."""

    push_to_hub: str | None = _push_to_hub_field()


STAGE_CONFIGS = {"sft": AloeSFTConfig, "dpo": AloeDPOConfig, "kto": AloeKTOConfig}
