"""The models behind a session: the assistants, the judge, the simulated user and the induction, by spec.

Every role is loaded through one `loader` (a spec -> backend callable) so that the Space's load test and the
tests can inject a factory; a model that fails to load becomes a SpaceError and the session stays usable.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aloe_bench.core.backends import ChatBackend, GenerationConfig, build_backend
from aloe_bench.core.judge import Judge, JudgeConfig
from aloe_bench.core.prompts import PromptBook, load_prompts
from aloe_bench.core.simulator import UserSimulator

from .errors import SpaceError
from .space_config import SpaceConfig

Loader = Callable[[str], ChatBackend]


@dataclass
class SpaceRoles:
    """The backends a session talks to. `loader` is `build_backend` (one shared instance per spec)."""

    config: SpaceConfig
    loader: Loader = build_backend
    prompts: PromptBook = field(default_factory=load_prompts)

    def _load(self, spec: str, role: str) -> ChatBackend:
        try:
            return self.loader(spec)
        except Exception as exc:  # shown in the UI; the session stays usable with other settings
            raise SpaceError(f"could not load the {role} model {spec!r}: {exc}") from None  # no chained secrets

    def assistant(self, spec: str) -> ChatBackend:
        return self._load(spec, "assistant")

    def judge(self) -> Judge:
        return Judge(self._load(self.config.judge_model, "judge"), JudgeConfig(preset=self.config.judge_preset),
                     self.prompts)

    def simulator(self) -> UserSimulator:
        config = GenerationConfig(max_new_tokens=self.config.user_max_new_tokens, temperature=0.7, top_p=0.95,
                                  seed=int(time.time()) % 100_000)
        return UserSimulator(self._load(self.config.user_model, "user simulator"), config, self.prompts,
                             max_chars=self.config.max_input_chars)

    def induction(self) -> ChatBackend:
        return self._load(self.config.induction_model or self.config.judge_model, "induction")

    def reply_config(self) -> GenerationConfig:
        return GenerationConfig(max_new_tokens=self.config.reply_max_new_tokens, temperature=self.config.temperature,
                                top_p=0.95 if self.config.temperature > 0 else 1.0)
