"""OpenAI-compatible backend (OpenAI, vLLM, TGI, `transformers serve`, HF Inference Providers).

A batch becomes concurrent async requests, bounded by `max_concurrency` and an optional
requests-per-minute limit. Retries with exponential backoff (honouring Retry-After) are the
`openai` client's own; what still fails comes back as a Completion with `error` set.
"""

from __future__ import annotations

import asyncio
import math
import os
import time

from .base import BackendError, ChatBackend, Completion, GenerationConfig, Messages, OptionScores


class _RateLimiter:
    """Spaces request starts at least `60 / rpm` seconds apart (no limit when rpm is falsy)."""

    def __init__(self, rpm: float | None):
        self.interval = 60.0 / rpm if rpm else 0.0
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self):
        if not self.interval:
            return
        async with self._lock:
            now = time.monotonic()
            delay = self._next - now
            self._next = max(now, self._next) + self.interval
        if delay > 0:
            await asyncio.sleep(delay)


class OpenAIBackend(ChatBackend):
    is_remote = True

    def __init__(
        self,
        spec,
        max_concurrency: int = 16,
        requests_per_minute: float | None = None,
        timeout_s: float = 120.0,
        max_retries: int = 4,
    ):
        super().__init__(spec)
        self.api_key = os.environ.get(spec.api_key_env)
        if not self.api_key:
            if spec.base_url:  # local servers (vLLM, transformers serve) accept any key
                self.api_key = "not-needed"
            else:
                raise BackendError(f"{spec.label}: set {spec.api_key_env} (or pass --base-url for a local server)")
        self.max_concurrency = max_concurrency
        self.requests_per_minute = requests_per_minute
        self.timeout_s = timeout_s
        self.max_retries = max_retries

    def describe(self) -> dict:
        info = super().describe()
        info.update(base_url=self.spec.base_url, max_concurrency=self.max_concurrency)
        return info

    def _client_kwargs(self) -> dict:
        return dict(api_key=self.api_key, base_url=self.spec.base_url, timeout=self.timeout_s,
                    max_retries=self.max_retries)

    def _request_kwargs(self, config: GenerationConfig) -> dict:
        kwargs = dict(model=self.spec.name, max_tokens=config.max_new_tokens,
                      temperature=config.temperature, seed=config.seed)
        if config.top_p < 1.0:
            kwargs["top_p"] = config.top_p
        return kwargs

    def _run(self, coroutine_factory, items):
        """Run one coroutine per item concurrently on a private event loop; keep order."""
        from openai import AsyncOpenAI

        async def main():
            limiter = _RateLimiter(self.requests_per_minute)
            gate = asyncio.Semaphore(self.max_concurrency)
            async with AsyncOpenAI(**self._client_kwargs()) as client:
                async def one(item):
                    async with gate:
                        await limiter.wait()
                        return await coroutine_factory(client, item)

                return await asyncio.gather(*(one(item) for item in items))

        return asyncio.run(main())

    def _generate_batch(self, conversations: list[Messages], config: GenerationConfig) -> list[Completion]:
        kwargs = self._request_kwargs(config)

        async def call(client, messages):
            began = time.perf_counter()
            try:
                response = await client.chat.completions.create(messages=messages, **kwargs)
                choice = response.choices[0] if response.choices else None
                text = choice.message.content if choice is not None else None
                if not text or not text.strip():
                    return Completion(None, latency_s=time.perf_counter() - began, error="empty content")
                usage = getattr(response, "usage", None)
                tokens = getattr(usage, "completion_tokens", None) or 0
                return Completion(text.strip(), tokens=tokens, latency_s=time.perf_counter() - began)
            except Exception as exc:  # recorded per request, never turned into text
                return Completion(None, latency_s=time.perf_counter() - began, error=f"{type(exc).__name__}: {exc}")

        return self._run(call, conversations)

    def _score_options_batch(self, conversations: list[Messages], options: list[str]) -> list[OptionScores]:
        kwargs = dict(model=self.spec.name, max_tokens=1, temperature=0.0, logprobs=True, top_logprobs=20)

        async def call(client, messages):
            try:
                response = await client.chat.completions.create(messages=messages, **kwargs)
                content = response.choices[0].logprobs.content if response.choices[0].logprobs else None
                if not content:
                    return OptionScores(error="no logprobs in response")
                probs: dict[str, float] = {}
                for entry in content[0].top_logprobs:
                    token = entry.token.strip()
                    if token in options:
                        probs[token] = probs.get(token, 0.0) + math.exp(entry.logprob)
                mass = sum(probs.values())
                if mass <= 0:
                    return OptionScores(error="none of the options among the top logprobs")
                return OptionScores(probs={o: probs.get(o, 0.0) / mass for o in options}, mass=mass)
            except Exception as exc:
                return OptionScores(error=f"{type(exc).__name__}: {exc}")

        return self._run(call, conversations)

    def stream(self, messages: Messages, config: GenerationConfig):
        from openai import OpenAI

        client = OpenAI(**self._client_kwargs())
        text = ""
        try:
            for chunk in client.chat.completions.create(messages=messages, stream=True, **self._request_kwargs(config)):
                if chunk.choices and chunk.choices[0].delta and chunk.choices[0].delta.content:
                    text += chunk.choices[0].delta.content
                    yield text
        except Exception as exc:
            raise BackendError(f"{self.spec.label}: {type(exc).__name__}: {exc}") from exc
        if not text.strip():
            raise BackendError(f"{self.spec.label}: empty content")
