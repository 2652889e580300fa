"""A tagged block the evaluated model writes for itself (RLPA's profile inference: `<profile>...</profile>`), cut
out of each reply before anyone else reads it.

`aloe train online` with `profile_reward` teaches the policy to open its replies with what it infers about the
user; `aloe eval --reply_hidden_block` evaluates such a model fairly: the role-play user, the judge and the history
see the reply without the block, and the samples row keeps the block as `reply_hidden`. `HiddenBlockBackend` does
the cutting for any backend; it sits outside the request cache, so a cached reply is cut the same way.
"""

from __future__ import annotations

import re
from dataclasses import replace

from .backends.base import Completion, GenerationConfig, Messages
from .backends.delegating import DelegatingBackend


class HiddenBlock:
    """Cuts every `open_tag ... close_tag` block out of a text (an unclosed block runs to the end: a reply cut by
    the token limit), and stray closing tags with it."""

    def __init__(self, open_tag: str, close_tag: str):
        self.open, self.close = open_tag, close_tag
        self._block = re.compile(re.escape(open_tag) + r"(.*?)(?:" + re.escape(close_tag) + r"|\Z)",
                                 re.IGNORECASE | re.DOTALL)
        self._stray = re.compile(re.escape(close_tag), re.IGNORECASE)

    @classmethod
    def of_prompt(cls, prompt) -> "HiddenBlock":
        """The block a prompt of the book declares with its `open_tag` / `close_tag` (e.g. `profile_inference`)."""
        return cls(prompt["open_tag"], prompt["close_tag"])

    def split(self, text: str | None) -> tuple[str | None, str | None]:
        """(the text without its blocks, the blocks' texts joined, or None when it has none)."""
        if text is None:
            return None, None
        blocks = [m.group(1).strip() for m in self._block.finditer(text)]
        reply = self._stray.sub("", self._block.sub("", text)).strip()
        return reply, ("\n".join(b for b in blocks if b) if blocks else None)


class HiddenBlockBackend(DelegatingBackend):
    """`inner` with the block cut out of every generated text; the cut block rides on the completion (`hidden`)."""

    def __init__(self, inner, block: HiddenBlock):
        super().__init__(inner)
        self.block = block

    def _cut(self, completion: Completion) -> Completion:
        if not completion.ok:
            return completion
        text, hidden = self.block.split(completion.text)
        return replace(completion, text=text, hidden=hidden)

    def _generate_batch(self, conversations: list[Messages], config: GenerationConfig) -> list[Completion]:
        return [self._cut(c) for c in self.inner.generate(conversations, config)]

    async def agenerate(self, messages: Messages, config: GenerationConfig) -> Completion:
        return self._cut(await self.inner.agenerate(messages, config))

    def stream(self, messages, config):
        raise NotImplementedError("a reply whose hidden block is cut cannot be streamed before it is complete")
