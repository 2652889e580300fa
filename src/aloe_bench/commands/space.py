"""`aloe space`: serve the Gradio Space locally (offline on the embedded model by default), from `SpaceConfig`."""

from __future__ import annotations


def register(sub) -> None:
    from aloe_bench.core.recipes import add_recipe_command
    from aloe_bench.space.space_config import SpaceConfig

    add_recipe_command(sub, "space", [SpaceConfig], _run_space,
                       "Serve the ALOE chat Space (persona chat, per-turn judge scores, leaderboard).")


def _run_space(args) -> int:
    from aloe_bench.core.recipes import dataclass_from_args
    from aloe_bench.space.space_config import SpaceConfig
    from aloe_bench.space.ui import build_demo, launch_options

    config = dataclass_from_args(args, SpaceConfig)
    print(f"aloe space: assistant={config.model} compare={config.compare_model} user={config.user_model} "
          f"judge={config.judge_model} on http://{config.host}:{config.port}")
    build_demo(config).launch(server_name=config.host, server_port=config.port, share=config.share,
                              **launch_options(config))
    return 0
