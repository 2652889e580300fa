"""Entry point of the Hugging Face Space (and of `python app.py` locally): builds the app and serves it.

Settings come from `ALOE_SPACE_<FIELD>` variables (see space_config.py); secrets such as OPENAI_API_KEY and
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

from aloe_bench.space.space_config import SpaceConfig
from aloe_bench.space.ui import build_demo, launch_options


# The functions that run a local model: on ZeroGPU each must carry @spaces.GPU (a Space without one is refused).
GPU_METHODS = ("_generate_batch", "_score_options_batch", "stream")


def decorate_for_zerogpu(gpu=None) -> list[str]:
    """With the `spaces` package present, wrap the local-model methods in `spaces.GPU`; elsewhere change nothing."""
    gpu = spaces if gpu is None else gpu
    if gpu is None:
        return []
    from aloe_bench.core.backends import BACKEND_KINDS

    TransformersBackend = BACKEND_KINDS["transformers"].load()
    done = []
    for name in GPU_METHODS:
        method = TransformersBackend.__dict__.get(name)
        if method is not None and not getattr(method, "_aloe_gpu", False):
            wrapped = gpu.GPU(method)
            wrapped._aloe_gpu = True
            setattr(TransformersBackend, name, wrapped)
            done.append(name)
    return done


def create_app(config: SpaceConfig | None = None):
    """The Blocks app; inside a Space it listens on all interfaces as the Space runtime expects."""
    decorate_for_zerogpu()
    if config is None:
        overrides = {"host": "0.0.0.0"} if os.environ.get("SPACE_ID") else {}
        config = SpaceConfig.from_env(**overrides)
    return config, build_demo(config)


if __name__ == "__main__":
    config, demo = create_app()
    demo.launch(server_name=os.environ.get("GRADIO_SERVER_NAME", config.host),
                server_port=int(os.environ.get("GRADIO_SERVER_PORT", os.environ.get("PORT", config.port))),
                share=config.share, **launch_options(config))
