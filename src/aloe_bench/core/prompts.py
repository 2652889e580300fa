"""Prompts are data: they live in `prompts.yaml`, carry a version, and are hashed into every result."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import yaml


@dataclass(frozen=True)
class Prompt:
    """One named prompt: its fields (system, user, ...) and a content hash."""

    name: str
    fields: dict

    @property
    def sha256(self) -> str:
        payload = json.dumps({"name": self.name, **self.fields}, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(payload.encode()).hexdigest()

    def __getitem__(self, key: str) -> str:
        return self.fields[key]

    def render(self, key: str, **values) -> str:
        try:
            return self.fields[key].format(**values)
        except KeyError as exc:
            raise KeyError(f"prompt {self.name}.{key} needs value {exc}") from None


@dataclass(frozen=True)
class PromptBook:
    version: str
    prompts: dict[str, Prompt]
    source: str

    def __getitem__(self, name: str) -> Prompt:
        try:
            return self.prompts[name]
        except KeyError:
            raise KeyError(f"no prompt named {name!r} in {self.source}") from None

    def hashes(self, names: list[str] | None = None) -> dict[str, str]:
        """`{name: sha256[:16]}` for the named prompts (all when None) — what result files record."""
        chosen = names or sorted(self.prompts)
        return {name: self[name].sha256[:16] for name in chosen}


@lru_cache(maxsize=8)
def load_prompts(path: str | None = None) -> PromptBook:
    """Load the packaged prompt book, or a user's own YAML file of the same shape."""
    if path is None:
        text = resources.files("aloe_bench.core").joinpath("prompts.yaml").read_text(encoding="utf-8")
        source = "aloe_bench/core/prompts.yaml"
    else:
        text, source = Path(path).read_text(encoding="utf-8"), str(path)
    data = yaml.safe_load(text)
    if not isinstance(data, dict) or "version" not in data or not isinstance(data.get("prompts"), dict):
        raise ValueError(f"{source}: a prompt book needs top-level 'version' and a 'prompts' mapping")
    prompts = {}
    for name, fields in data["prompts"].items():
        if not isinstance(fields, dict):
            raise ValueError(f"{source}: prompt {name!r} must be a mapping of fields")
        prompts[name] = Prompt(name, {k: str(v) for k, v in fields.items()})
    return PromptBook(str(data["version"]), prompts, source)
