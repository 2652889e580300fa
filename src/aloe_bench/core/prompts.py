"""Prompts are data: they live in `prompts.yaml`, carry a version, and are hashed into every result."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import yaml

from .errors import ConfigError

# Untrusted text (a reply being judged, a user message) is rendered into a prompt only after these
# sequences are broken up, so it cannot close or fake the prompt's fences (`<<<REPLY ... REPLY>>>`),
# plant a delimited score (`[[5]]`, `[[A]]`) the judge might copy, or end the chat turn with a chat
# template's control tokens (`<|im_end|>`, `<|eot_id|>`, `</s>`, `[INST]`, `<end_of_turn>`), which a
# local tokenizer would otherwise read as real special tokens.
_NEUTRALISE = (
    (re.compile(r"<\|"), "< |"),
    (re.compile(r"\|>"), "| >"),
    (re.compile(r"<(/?(?:s|eos|bos|start_of_turn|end_of_turn))>"), r"< \1>"),
    (re.compile(r"\[(/?INST)\]"), r"[ \1]"),
    (re.compile(r"<{3,}|>{3,}"), lambda m: " ".join(m.group())),  # <<< -> < < <
    (re.compile(r"\[(?=\[)"), "[ "),
    (re.compile(r"\](?=\])"), "] "),
)


def neutralise(text: str) -> str:
    """`text` with fence, score-delimiter and chat-control sequences broken up by a space (visible to a
    reader, idempotent); applied to every placeholder a prompt lists in its `data_fields`."""
    for pattern, replacement in _NEUTRALISE:
        text = pattern.sub(replacement, text)
    return text


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

    @property
    def data_fields(self) -> frozenset[str]:
        """Placeholders holding untrusted text (declared in the prompt book as `data_fields`)."""
        return frozenset(self.fields.get("data_fields", "").replace(",", " ").split())

    def render(self, key: str, **values) -> str:
        """Fill the placeholders of field `key`; values of `data_fields` placeholders are neutralised first."""
        data = self.data_fields
        if data:
            values = {k: neutralise(v) if k in data and isinstance(v, str) else v for k, v in values.items()}
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
        raise ConfigError(f"{source}: a prompt book needs top-level 'version' and a 'prompts' mapping")
    prompts = {}
    for name, fields in data["prompts"].items():
        if not isinstance(fields, dict):
            raise ConfigError(f"{source}: prompt {name!r} must be a mapping of fields")
        prompts[name] = Prompt(name, {k: str(v) for k, v in fields.items()})
    return PromptBook(str(data["version"]), prompts, source)
