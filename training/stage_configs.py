"""TRL's trainer configs as `aloe train` takes them: `--push_to_hub ORG/NAME` names the repo to upload to.

TRL's `push_to_hub` is a yes/no flag that makes the Trainer push with its own card; ours is the target of one
upload of the checkpoint with the project's card after training (`--push_to_hub` alone means `hub_model_id`).
Module-level classes, so the Trainer's pickled `training_args.bin` loads again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import DPOConfig, KTOConfig, SFTConfig


def _push_to_hub():
    return field(default=None, metadata={
        "help": "Upload the final checkpoint (with the project's model card) to this Hub repo, in one commit.",
        "metavar": "ORG/NAME", "nargs": "?", "const": "true"})


@dataclass
class AloeSFTConfig(SFTConfig):
    push_to_hub: str | None = _push_to_hub()


@dataclass
class AloeDPOConfig(DPOConfig):
    push_to_hub: str | None = _push_to_hub()


@dataclass
class AloeKTOConfig(KTOConfig):
    push_to_hub: str | None = _push_to_hub()


STAGE_CONFIGS = {"sft": AloeSFTConfig, "dpo": AloeDPOConfig, "kto": AloeKTOConfig}
