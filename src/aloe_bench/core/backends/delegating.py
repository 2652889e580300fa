"""`DelegatingBackend`: the base of wrappers (request cache, profiler) that pass every call on to `inner`."""

from __future__ import annotations

from .base import ChatBackend, Completion, GenerationConfig, Messages, OptionScores


class DelegatingBackend(ChatBackend):
    """Looks like `inner` (identity, template, description, streaming) and forwards sync and async work to it.

    Subclasses override the four work methods they change and call `self.inner`'s for the rest.
    """

    def __init__(self, inner: ChatBackend):
        super().__init__(inner.spec)
        self.inner = inner
        self.is_remote = inner.is_remote

    model_id = property(lambda self: self.inner.model_id)
    resolved_revision = property(lambda self: self.inner.resolved_revision)
    chat_template = property(lambda self: self.inner.chat_template)

    def describe(self) -> dict:
        return self.inner.describe()

    def stream(self, messages, config):
        return self.inner.stream(messages, config)

    def _generate_batch(self, conversations: list[Messages], config: GenerationConfig) -> list[Completion]:
        return self.inner.generate(conversations, config)

    def _score_options_batch(self, conversations: list[Messages], options: list[str]) -> list[OptionScores]:
        return self.inner.score_options(conversations, options)

    async def agenerate(self, messages: Messages, config: GenerationConfig) -> Completion:
        return await self.inner.agenerate(messages, config)

    async def ascore_options(self, messages: Messages, options: list[str]) -> OptionScores:
        return await self.inner.ascore_options(messages, options)

    def expecting(self):
        return self.inner.expecting()

    def release_prefixes(self, scope: str) -> int:
        return self.inner.release_prefixes(scope)

    async def aclose(self) -> None:
        await self.inner.aclose()


__all__ = ["DelegatingBackend"]
