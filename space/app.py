"""Entry point of the Hugging Face Space (and of `python app.py` locally): builds the app and serves it.

Settings come from `ALOE_SPACE_<FIELD>` variables (see config.py); secrets such as OPENAI_API_KEY and
HF_TOKEN come from the Space's secrets and are only ever read from the environment. Everything the app
needs is installed by requirements.txt (`aloe hub build space` writes it): nothing is installed at start-up.
On the Hub (`SPACE_ID` set) it listens on all interfaces and visitors cannot change the models unless
`ALOE_SPACE_ALLOW_MODEL_CHANGE=true`. `GRADIO_SERVER_NAME` / `GRADIO_SERVER_PORT` win, as the runtime sets them.
"""

from __future__ import annotations

import os

try:  # ZeroGPU Spaces provide `spaces`; elsewhere (locally, CPU Spaces) it is absent and not needed
    import spaces
except ImportError:
    spaces = None

from aloe_bench.space.config import SpaceConfig
from aloe_bench.space.ui import build_demo, launch_options


def create_app(config: SpaceConfig | None = None):
    """The Blocks app; inside a Space it listens on all interfaces as the Space runtime expects."""
    if config is None:
        overrides = {"host": "0.0.0.0"} if os.environ.get("SPACE_ID") else {}
        config = SpaceConfig.from_env(**overrides)
    return config, build_demo(config)


if __name__ == "__main__":
    config, demo = create_app()
    demo.launch(server_name=os.environ.get("GRADIO_SERVER_NAME", config.host),
                server_port=int(os.environ.get("GRADIO_SERVER_PORT", os.environ.get("PORT", config.port))),
                share=config.share, **launch_options(config))
