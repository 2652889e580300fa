"""OpenAI-compatible backend (OpenAI, vLLM, TGI, `transformers serve`, HF Inference Providers).

A batch becomes concurrent async requests, bounded by `max_concurrency` and an optional
requests-per-minute limit. Single awaitable requests (`agenerate`, `ascore_options`, one task per
conversation) take the same path: per event loop one `AsyncOpenAI` client and one semaphore of
`max_concurrency`, and one rate limiter for the whole backend, so thousands of concurrent conversation
tasks share a bounded number of connections. Two layers of retries, both bounded and with exponential backoff:
- the `openai` client's own, for timeouts, dropped connections, 408/409/429/5xx (honouring Retry-After);
- ours, for what the client accepts as a success but is not one: a 200 whose body is not valid JSON
  or not a completion (malformed), a completion with empty content, a stream cut off before its
  finish_reason.
What still fails comes back as a Completion with `error` set (never as made-up text), and is counted in
`stats`. Every logical request carries an `X-Aloe-Request-Id` header, the same on all its retries, so a
proxy or server log can tell retries from new requests (see `aloe_bench.testing.fault_proxy`).
Awaitable requests go through the client's low-level `post` with a plain JSON body (the one `create` would send)
and read the answer as plain JSON: the typed transform and models were most of the event loop's CPU.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import math
import os
import random
import threading
import time
import uuid
import weakref

from .base import BackendError, ChatBackend, Completion, GenerationConfig, Messages, OptionScores

REQUEST_ID_HEADER = "X-Aloe-Request-Id"


@functools.cache
def _client_knows_security() -> bool:
    """Whether this `openai` version takes per-request auth options (its `create` then asks for the API key only)."""
    try:
        from openai._types import RequestOptions
    except ImportError:
        return False
    return "security" in getattr(RequestOptions, "__annotations__", {})


class _RateLimiter:
    """Spaces request starts at least `60 / rpm` seconds apart (no limit when rpm is falsy).

    One per backend, shared by every event loop and thread that uses it (slots are handed out under a
    thread lock; the wait itself is an `asyncio.sleep`).
    """

    def __init__(self, rpm: float | None):
        self.interval = 60.0 / rpm if rpm else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    async def wait(self):
        if not self.interval:
            return
        with self._lock:
            now = time.monotonic()
            delay = self._next - now
            self._next = max(now, self._next) + self.interval
        if delay > 0:
            await asyncio.sleep(delay)


class _LoopState:
    """What one event loop holds for one backend: its client and its concurrency gate."""

    def __init__(self, client, max_concurrency: int):
        self.client = client
        self.gate = asyncio.Semaphore(max_concurrency)


class _Retryable(Exception):
    """An answer the `openai` client took for a success but that is not one: worth asking again."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class RetryStats:
    """What one backend did (thread-safe): logical requests, our retries by reason, final failures by reason.

    The `openai` client's own retries (timeouts, 429, 5xx, dropped connections) happen inside one of our
    attempts and are not counted here; a proxy in front of the server sees them (`aloe_bench.testing.fault_proxy`).
    """

    def __init__(self):
        self._lock = threading.Lock()
        self.requests = 0
        self.succeeded = 0
        self.failed = 0
        self.retries: dict[str, int] = {}
        self.failures: dict[str, int] = {}
        self.failed_request_ids: set[str] = set()

    def retried(self, reason: str) -> None:
        with self._lock:
            self.retries[reason] = self.retries.get(reason, 0) + 1

    def finished(self, request_id: str, failure: str | None) -> None:
        with self._lock:
            self.requests += 1
            if failure is None:
                self.succeeded += 1
            else:
                self.failed += 1
                self.failures[failure] = self.failures.get(failure, 0) + 1
                self.failed_request_ids.add(request_id)

    def to_dict(self) -> dict:
        with self._lock:
            return {"requests": self.requests, "succeeded": self.succeeded, "failed": self.failed,
                    "retries": dict(self.retries), "failures": dict(self.failures)}


def _malformed(exc: Exception) -> _Retryable:
    return _Retryable("malformed_json", f"malformed response: {type(exc).__name__}: {exc}")


def _completion_body(data) -> dict:
    """The JSON body of a 200 as a dict; `_Retryable` when it is no JSON object (e.g. text under a non-JSON type)."""
    if isinstance(data, str):  # the client hands back text when the Content-Type is not JSON
        try:
            data = json.loads(data)
        except ValueError as exc:
            raise _malformed(exc) from exc
    if not isinstance(data, dict):
        raise _malformed(TypeError(f"the body is a {type(data).__name__}, not an object"))
    return data


def _first_choice_of(body: dict) -> dict | None:
    """The first choice of a completion (a dict), None when there is none; `_Retryable` when it is not a completion."""
    choices = body.get("choices")  # absent like null: no choice (an empty answer, as the typed client read it)
    if choices is not None and not isinstance(choices, list):
        raise _malformed(TypeError(f"choices is a {type(choices).__name__}"))
    choice = choices[0] if choices else None
    if choice is None:
        return None
    if not isinstance(choice, dict) or not isinstance(choice.get("message"), dict):
        raise _malformed(TypeError("the first choice has no message object"))
    return choice


def _content_of(choice: dict | None):
    return choice["message"].get("content") if choice is not None else None


def _field(value, name: str):
    """`value[name]` when `value` is a JSON object, else None (an absent or mistyped field reads as missing)."""
    return value.get(name) if isinstance(value, dict) else None


class OpenAIBackend(ChatBackend):
    """A model behind an OpenAI-compatible `/v1/chat/completions` endpoint (vLLM, TGI, `transformers serve`, a
    provider), on the operator's key (`api_key_env`); requests are retried, rate-limited and bounded in
    concurrency per backend, and the key never reaches a log or a result file."""

    is_remote = True

    def __init__(
        self,
        spec,
        max_concurrency: int = 16,
        requests_per_minute: float | None = None,
        request_timeout_s: float = 120.0,
        request_max_retries: int = 4,
        retry_backoff_s: float = 0.5,
        max_backoff_s: float = 8.0,
    ):
        super().__init__(spec)
        # Import the client now, not on the first request: a missing package fails here, and the import (about a
        # second) does not stall the event loop while every conversation waits for its first message.
        import openai  # noqa: F401

        _client_knows_security()  # (cached) worked out here, not on the event loop
        self.api_key = os.environ.get(spec.api_key_env)
        if not self.api_key:
            if spec.base_url:  # local servers (vLLM, transformers serve) accept any key
                self.api_key = "not-needed"
            else:
                raise BackendError(f"{spec.label}: set {spec.api_key_env} (or pass --base-url for a local server)")
        self.max_concurrency = max_concurrency
        self.requests_per_minute = requests_per_minute
        self.timeout_s = request_timeout_s
        self.max_retries = request_max_retries  # per layer: the client's retries, then ours
        self.retry_backoff_s = retry_backoff_s
        self.max_backoff_s = max_backoff_s
        self.stats = RetryStats()
        self._id_prefix = uuid.uuid4().hex[:12]
        self._ids = itertools.count(1)
        self._limiter = _RateLimiter(requests_per_minute)
        self._loops: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._loops_lock = threading.Lock()

    def describe(self) -> dict:
        info = super().describe()
        info.update(base_url=self.spec.base_url, max_concurrency=self.max_concurrency)
        return info

    def _client_kwargs(self) -> dict:
        return dict(api_key=self.api_key, base_url=self.spec.base_url, timeout=self.timeout_s,
                    max_retries=self.max_retries)

    def _request_kwargs(self, config: GenerationConfig) -> dict:
        """The request's fields besides `messages` (the JSON body `create(...)` would send for them)."""
        kwargs = dict(model=self.spec.name, max_tokens=config.max_new_tokens, seed=config.seed)
        if config.temperature is not None:  # None: the server's default sampling
            kwargs["temperature"] = config.temperature
        if config.top_p is not None and config.top_p < 1.0:
            kwargs["top_p"] = config.top_p
        return kwargs

    def _new_request_id(self) -> str:
        return f"{self._id_prefix}-{next(self._ids)}"

    def _backoff(self, attempt: int) -> float:
        """Like the `openai` client's: exponential from `retry_backoff_s`, capped, minus up to 25% jitter."""
        return min(self.retry_backoff_s * 2.0 ** attempt, self.max_backoff_s) * (1 - 0.25 * random.random())

    async def _attempts(self, once):
        """Await `once()` until it returns; a `_Retryable` is retried up to `max_retries` times with backoff."""
        for attempt in range(self.max_retries + 1):
            try:
                return await once()
            except _Retryable as exc:
                if attempt == self.max_retries:
                    raise _Retryable(exc.reason, f"{exc} (after {attempt + 1} attempts)") from exc
                self.stats.retried(exc.reason)
                await asyncio.sleep(self._backoff(attempt))

    async def _create(self, client, request_id: str, body: dict) -> dict:
        """POST `body` to /chat/completions; the answer's JSON object.

        The body goes out as the plain dict it is and the answer comes back as plain JSON: the client's typed
        request transform and response models cost milliseconds of event-loop CPU per request (most of the CPU
        of a run with thousands of concurrent conversations) and change nothing in what is sent. Everything
        else is the client's own: auth header, timeout, its retries, its errors.
        """
        from openai import APIResponseValidationError

        options = {"headers": {REQUEST_ID_HEADER: request_id}}
        if _client_knows_security():
            options["security"] = {"bearer_auth": True}  # the API key only, as `create` sends it
        try:
            data = await client.post("/chat/completions", cast_to=object, body=body, options=options)
        except (json.JSONDecodeError, APIResponseValidationError) as exc:  # a 200 the client could not read
            raise _malformed(exc) from exc
        return _completion_body(data)

    # -- per event loop -----------------------------------------------------------------------------
    def _state(self) -> _LoopState:
        """The running loop's client and gate, made on first use (an `AsyncOpenAI` client is bound to one loop)."""
        from openai import AsyncOpenAI

        loop = asyncio.get_running_loop()
        with self._loops_lock:
            state = self._loops.get(loop)
            if state is None:
                state = self._loops[loop] = _LoopState(AsyncOpenAI(**self._client_kwargs()), self.max_concurrency)
            return state

    async def aclose(self) -> None:
        """Close the running loop's client (the next request on this loop makes a new one)."""
        with self._loops_lock:
            state = self._loops.pop(asyncio.get_running_loop(), None)
        if state is not None:
            await state.client.close()

    async def _gated(self, call, messages, *args):
        state = self._state()
        async with state.gate:
            await self._limiter.wait()
            return await call(state.client, messages, *args)

    def _run(self, coroutine_factory, items):
        """Run one request per item concurrently on a private event loop; keep order."""

        async def main():
            try:
                return await asyncio.gather(*(self._gated(coroutine_factory, item) for item in items))
            finally:
                await self.aclose()

        return asyncio.run(main())

    # -- one request ----------------------------------------------------------------------------------
    async def _completion(self, client, messages: Messages, kwargs: dict) -> Completion:
        request_id = self._new_request_id()
        began = time.perf_counter()

        body = {"model": kwargs["model"], "messages": messages, **kwargs}

        async def once():
            response = await self._create(client, request_id, body)
            text = _content_of(_first_choice_of(response))
            if not isinstance(text, str) or not text.strip():
                raise _Retryable("empty_content", "empty content")
            tokens = _field(response.get("usage"), "completion_tokens")
            return Completion(text.strip(), tokens=tokens if isinstance(tokens, int) else 0)

        try:
            completion = await self._attempts(once)
        except _Retryable as exc:  # recorded per request, never turned into text
            failure, error = exc.reason, str(exc)
        except Exception as exc:  # what the client gave up on after its own retries
            failure, error = type(exc).__name__, f"{type(exc).__name__}: {exc}"
        else:
            completion.latency_s = time.perf_counter() - began
            self.stats.finished(request_id, None)
            return completion
        self.stats.finished(request_id, failure)
        return Completion(None, latency_s=time.perf_counter() - began, error=error)

    async def _option_scores(self, client, messages: Messages, options: list[str]) -> OptionScores:
        kwargs = dict(model=self.spec.name, max_tokens=1, temperature=0.0, logprobs=True, top_logprobs=20)
        request_id = self._new_request_id()

        body = {"model": kwargs["model"], "messages": messages, **kwargs}

        async def once():
            response = await self._create(client, request_id, body)
            choice = _first_choice_of(response)
            content = _field(_field(choice, "logprobs"), "content")
            if not content:
                text = _content_of(choice)
                if not isinstance(text, str) or not text.strip():
                    raise _Retryable("empty_content", "empty content and no logprobs")
                return OptionScores(error="no logprobs in response")  # the server does not give them
            probs: dict[str, float] = {}
            for entry in content[0]["top_logprobs"] or []:
                token = entry["token"].strip()
                if token in options:
                    probs[token] = probs.get(token, 0.0) + math.exp(entry["logprob"])
            mass = sum(probs.values())
            if mass <= 0:
                return OptionScores(error="none of the options among the top logprobs")
            return OptionScores(probs={o: probs.get(o, 0.0) / mass for o in options}, mass=mass)

        try:
            scores = await self._attempts(once)
        except _Retryable as exc:
            scores, failure = OptionScores(error=str(exc)), exc.reason
        except Exception as exc:
            scores, failure = OptionScores(error=f"{type(exc).__name__}: {exc}"), type(exc).__name__
        else:
            failure = None if scores.error is None else "no_scores"
        self.stats.finished(request_id, failure)
        return scores

    # -- the interface ----------------------------------------------------------------------------------
    async def agenerate(self, messages: Messages, config: GenerationConfig) -> Completion:
        return await self._gated(self._completion, messages, self._request_kwargs(config))

    async def ascore_options(self, messages: Messages, options: list[str]) -> OptionScores:
        return await self._gated(self._option_scores, messages, list(options))

    def _generate_batch(self, conversations: list[Messages], config: GenerationConfig) -> list[Completion]:
        kwargs = self._request_kwargs(config)
        return self._run(lambda client, messages: self._completion(client, messages, kwargs), conversations)

    def _score_options_batch(self, conversations: list[Messages], options: list[str]) -> list[OptionScores]:
        return self._run(lambda client, messages: self._option_scores(client, messages, options), conversations)

    def stream(self, messages: Messages, config: GenerationConfig):
        """Yield the reply's text as it grows. A stream cut off before its finish_reason, or malformed, or
        empty, is asked again (bounded, with backoff); the text then grows again from the start."""
        from openai import APIResponseValidationError, OpenAI

        client = OpenAI(**self._client_kwargs())
        request_id = self._new_request_id()
        problem: _Retryable | None = None
        for attempt in range(self.max_retries + 1):
            if problem is not None:
                self.stats.retried(problem.reason)
                time.sleep(self._backoff(attempt - 1))
            try:
                response = client.chat.completions.create(messages=messages, stream=True,
                                                          extra_headers={REQUEST_ID_HEADER: request_id},
                                                          **self._request_kwargs(config))
            except (json.JSONDecodeError, APIResponseValidationError) as exc:
                problem = _malformed(exc)
                continue
            except Exception as exc:  # the client already retried what it could
                self.stats.finished(request_id, type(exc).__name__)
                raise BackendError(f"{self.spec.label}: {type(exc).__name__}: {exc}") from exc
            text, finished = "", False
            try:
                with response:
                    for chunk in response:
                        choice = chunk.choices[0] if chunk.choices else None
                        if choice is None:
                            continue
                        if choice.delta is not None and choice.delta.content:
                            text += choice.delta.content
                            yield text
                        if choice.finish_reason:
                            finished = True
            except (json.JSONDecodeError, APIResponseValidationError) as exc:
                problem = _malformed(exc)
                continue
            except Exception as exc:  # the connection dropped mid-stream, or the server sent an error event
                problem = _Retryable("cut_stream", f"stream cut off: {type(exc).__name__}: {exc}")
                continue
            if not finished:
                problem = _Retryable("cut_stream", "stream ended before its finish_reason")
            elif not text.strip():
                problem = _Retryable("empty_content", "empty content")
            else:
                self.stats.finished(request_id, None)
                return
        self.stats.finished(request_id, problem.reason)
        raise BackendError(f"{self.spec.label}: {problem} (after {self.max_retries + 1} attempts)")
