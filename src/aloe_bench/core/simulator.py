"""The role-play user: writes the next user message from the full persona and the conversation so far."""

from __future__ import annotations

import re
from dataclasses import replace

from .backends import ChatBackend, Completion, GenerationConfig
from .personas import Persona
from .prompts import PromptBook, load_prompts
from .reask import RETRY_TEMPERATURE, Answer, Reasker, Unparsable

_ASTERISKS = re.compile(r"\*[^*\n]*\*")
_LABEL = re.compile(r"^\s*(?:user|me|you|message)\s*:\s*", re.IGNORECASE)


def clean_user_message(text: str | None) -> str:
    """Strip stage directions (`*smiles*`), a leading speaker label and wrapping quotes."""
    if not text:
        return ""
    text = _ASTERISKS.sub("", text)
    text = _LABEL.sub("", text.strip())
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1]
    return re.sub(r"[ \t]+", " ", text).strip()


def role_play_messages(persona: Persona, history: list[dict], prompts: PromptBook | None = None) -> list[dict]:
    """Messages asking a model to speak as `persona`.

    The simulator sees the conversation with roles swapped (its own earlier messages are `assistant`),
    and every request ends on a `user` instruction, so templates that demand strict alternation work.
    """
    prompt = (prompts or load_prompts())["user_simulator"]
    messages = [
        {"role": "system", "content": prompt.render("system", profile=persona.profile, personality=persona.personality)},
        {"role": "user", "content": prompt["opening"]},
    ]
    for turn in history:
        if turn["role"] == "user":
            messages.append({"role": "assistant", "content": turn["content"]})
        else:
            messages.append({"role": "user", "content": f"The assistant replied: {turn['content']}\n\n{prompt['continue']}"})
    return messages


class UserSimulator:
    """Batched role-play user; empty messages (after cleaning) are retried with a new seed, then failed.

    `max_chars` clips each message (the Space bounds a simulated message like one typed by a person)."""

    def __init__(self, backend: ChatBackend, config: GenerationConfig, prompts: PromptBook | None = None,
                 max_retries: int = 2, max_chars: int | None = None):
        self.backend = backend
        self.config = config
        self.prompts = prompts or load_prompts()
        self.max_retries = max_retries
        self.max_chars = max_chars

    def describe(self) -> dict:
        info = {"generation": self.config.to_dict(), "max_retries": self.max_retries,
                "prompt_sha256": self.prompts["user_simulator"].sha256[:16], "model": self.backend.describe()}
        return info if self.max_chars is None else {**info, "max_chars": self.max_chars}

    def _reasker(self) -> Reasker:
        return Reasker(self.max_retries, RETRY_TEMPERATURE)

    def _parse(self, text: str) -> str:
        cleaned = clean_user_message(text)[:self.max_chars].strip()
        if not cleaned:
            raise Unparsable("empty user message after cleaning")
        return cleaned

    @staticmethod
    def _completion(answer: Answer) -> Completion:
        """The answer as the simulator's callers read it: the last completion, its text cleaned or its error."""
        last = answer.last or Completion(None, error="not run")
        if not last.ok:
            return last
        return replace(last, text=answer.value) if answer.ok else replace(last, text=None, error=answer.error)

    def next_messages(self, personas: list[Persona], histories: list[list[dict]],
                      config: GenerationConfig | None = None) -> list[Completion]:
        """The next user message of each conversation, in one batch per attempt; `config` as in `anext_message`."""
        requests = [role_play_messages(p, h, self.prompts) for p, h in zip(personas, histories)]
        answers = self._reasker().ask(self.backend, requests, config or self.config, self._parse)
        return [self._completion(a) for a in answers]

    async def anext_message(self, persona: Persona, history: list[dict],
                            config: GenerationConfig | None = None) -> Completion:
        """`next_messages` for one conversation, awaitable: same request, same retries and seeds.

        `config` replaces the simulator's own for this call (a caller that seeds each turn differently)."""
        request = role_play_messages(persona, history, self.prompts)
        answer = await self._reasker().aask(self.backend, request, config or self.config, self._parse)
        return self._completion(answer)
