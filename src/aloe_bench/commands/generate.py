"""`aloe generate`: preference conversation trees by multi-LLM collaboration (resumable), from `GenerateConfig`."""

from __future__ import annotations

import json


def register(sub) -> None:
    from aloe_bench.core.recipes import add_recipe_command
    from aloe_bench.training.generate_config import GenerateConfig

    add_recipe_command(sub, "generate", [GenerateConfig], _generate,
                       "Generate preference conversation trees (multi-LLM collaboration), resumable.")


def _generate(args) -> int:
    from aloe_bench.core.recipes import dataclass_from_args
    from aloe_bench.training.generate import generate_conversations
    from aloe_bench.training.generate_config import GenerateConfig

    print(json.dumps(generate_conversations(dataclass_from_args(args, GenerateConfig)), indent=2))
    return 0
