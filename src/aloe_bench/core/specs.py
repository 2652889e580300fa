"""Model specs: one string names a model wherever the project takes one.

- `embedded`                 the bundled SmolLM2-135M-Instruct (offline default)
- `ORG/NAME` (+ revision)    a Hugging Face Hub model, run locally with transformers (or vLLM)
- `./path` or `/abs/path`    a local model folder laid out like a Hub repo
- `openai:NAME`              any OpenAI-compatible endpoint (`base_url`, key from `api_key_env`)
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import ConfigError, MissingFileError

OPENAI_PREFIX = "openai:"


def looks_local(text: str) -> bool:
    """Whether a spec text names a folder on this machine: what `ModelSpec.parse` reads as one (`embedded` and
    `openai:` specs never are, whatever folders exist)."""
    text = (text or "").strip()
    if text == "embedded" or text.startswith(OPENAI_PREFIX):
        return False
    return text.startswith((".", "/", "~")) or Path(text).expanduser().exists()


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model reference; `kind` is `embedded`, `hf` or `openai`."""

    kind: str
    name: str
    revision: str | None = None
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    engine: str = "transformers"

    @classmethod
    def parse(
        cls,
        spec: "str | ModelSpec",
        revision: str | None = None,
        base_url: str | None = None,
        api_key_env: str | None = None,
        engine: str | None = None,
    ) -> "ModelSpec":
        if isinstance(spec, ModelSpec):
            return spec
        text = (spec or "").strip()
        if not text:
            raise ConfigError("empty model spec: use 'embedded', a Hub id, a local folder or 'openai:<name>'")
        key_env = api_key_env or "OPENAI_API_KEY"
        if text.startswith(OPENAI_PREFIX):
            name = text[len(OPENAI_PREFIX):]
            if not name:
                raise ConfigError(f"model spec {spec!r}: 'openai:' needs a model name, e.g. openai:gpt-4o-mini")
            url = base_url or os.environ.get("OPENAI_BASE_URL")
            return cls("openai", name, revision, url, key_env, "openai")
        if text == "embedded":
            return cls("embedded", "embedded", None, None, key_env, engine or "transformers")
        if engine not in (None, "transformers", "vllm"):
            raise ConfigError(f"engine {engine!r}: choose 'transformers' or 'vllm'")
        path = Path(text).expanduser()
        if looks_local(text):
            if not (path / "config.json").exists():
                raise MissingFileError(f"model folder {path}: no config.json (is it a transformers model folder?)")
            return cls("hf", str(path.resolve()), revision, None, key_env, engine or "transformers")
        if text.count("/") != 1:
            raise ConfigError(
                f"model spec {spec!r} is neither 'embedded', an existing folder, 'ORG/NAME' nor 'openai:<name>'"
            )
        return cls("hf", text, revision, None, key_env, engine or "transformers")

    @property
    def is_remote(self) -> bool:
        return self.kind == "openai"

    @property
    def label(self) -> str:
        """Human label used in result files and the Space."""
        if self.kind == "openai":
            return f"openai:{self.name}"
        if self.revision:
            return f"{self.name}@{self.revision}"
        return self.name

    def to_dict(self) -> dict:
        """JSON-safe description; never contains the key itself, only the env var's name."""
        return asdict(self)
