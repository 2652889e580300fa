"""The `openai:` backend's awaitable requests on the wire, against a recording server on 127.0.0.1.

The backend posts its body as a plain dict and reads the answer as plain JSON (no typed request transform, no
response models: they were most of the event loop's CPU). These tests pin that what goes out is exactly what
`client.chat.completions.create(...)` sends for the same arguments, that the typed transform is not on the path,
and that answers of the wrong shape are still retried as malformed (never turned into text).
"""

from __future__ import annotations

import asyncio
import json

import pytest

from aloe_bench.core.backends import GenerationConfig
from aloe_bench.core.backends.openai_backend import REQUEST_ID_HEADER, OpenAIBackend
from aloe_bench.core.specs import ModelSpec
from fakes import chat_server_thread

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi \u0130 \u00e9 \U0001f600"},
            {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Rate 1-5"}]
COMPLETION = {"id": "c", "object": "chat.completion", "created": 0, "model": "m",
              "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": " 4 "},
                           "logprobs": {"content": [{"token": "4", "logprob": -0.1, "bytes": None, "top_logprobs": [
                               {"token": "4", "logprob": -0.1, "bytes": None},
                               {"token": " 5", "logprob": -2.5, "bytes": None},
                               {"token": "x", "logprob": -3.0, "bytes": None}]}]}}],
              "usage": {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10}}


class RecordingServer:
    """Answers each chat completion with the next of `answers` ((content type, body text); the last repeats),
    and records each request's JSON body and headers."""

    def __init__(self, answers=(("application/json", json.dumps(COMPLETION)),)):
        self.answers = list(answers)
        self.requests: list[tuple[dict, dict]] = []

    def __enter__(self):
        from aiohttp import web

        async def chat(request):
            self.requests.append((await request.json(), {k.lower(): v for k, v in request.headers.items()}))
            content_type, text = self.answers[min(len(self.requests), len(self.answers)) - 1]
            return web.Response(status=200, text=text, content_type=content_type)

        self._server = chat_server_thread(chat)
        self.base_url = self._server.__enter__() + "/v1"
        return self

    def __exit__(self, *exc):
        self._server.__exit__(*exc)


def _backend(base_url, **options):
    return OpenAIBackend(ModelSpec.parse("openai:m", base_url=base_url),
                         **{"request_max_retries": 2, "request_timeout_s": 5.0, "retry_backoff_s": 0.01, **options})


def _client_create(base_url, **kwargs):
    """What the `openai` client's own typed `create` sends for `kwargs` (the reference)."""
    from openai import AsyncOpenAI

    async def go():
        client = AsyncOpenAI(api_key="not-needed", base_url=base_url, max_retries=0)
        try:
            await client.chat.completions.create(extra_headers={REQUEST_ID_HEADER: "ref-1"}, **kwargs)
        finally:
            await client.close()

    asyncio.run(go())


@pytest.mark.parametrize("config", [GenerationConfig(max_new_tokens=7, seed=3, temperature=0.2, top_p=0.9),
                                    GenerationConfig(max_new_tokens=7, seed=None, temperature=None)])
def test_generate_sends_what_the_typed_create_sends(config):
    with RecordingServer() as server:
        backend = _backend(server.base_url)
        completion = asyncio.run(backend.agenerate(MESSAGES, config))
        _client_create(server.base_url, messages=MESSAGES, **backend._request_kwargs(config))
    assert completion.ok and completion.text == "4" and completion.tokens == 1
    (ours, our_headers), (reference, reference_headers) = server.requests
    assert ours == reference and list(ours) == list(reference)  # the same fields, the same order
    assert our_headers[REQUEST_ID_HEADER.lower()].startswith(backend._id_prefix)
    assert our_headers["authorization"] == reference_headers["authorization"] == "Bearer not-needed"
    for name in ("content-type", "accept", "user-agent"):
        assert our_headers[name] == reference_headers[name], name


def test_option_scores_send_what_the_typed_create_sends_and_read_the_logprobs():
    with RecordingServer() as server:
        backend = _backend(server.base_url)
        scores = asyncio.run(backend.ascore_options(MESSAGES, ["3", "4", "5"]))
        _client_create(server.base_url, messages=MESSAGES, model="m", max_tokens=1, temperature=0.0, logprobs=True,
                       top_logprobs=20)
    (ours, _), (reference, _) = server.requests
    assert ours == reference
    assert scores.error is None and scores.probs["3"] == 0.0 and scores.probs["4"] > 0.9 > scores.probs["5"] > 0


def test_the_typed_request_transform_is_not_on_the_path(monkeypatch):
    import openai.resources.chat.completions.completions as completions

    async def refuse(*_args, **_kwargs):
        raise AssertionError("the typed request transform ran")

    monkeypatch.setattr(completions, "async_maybe_transform", refuse)
    with RecordingServer() as server:
        completion = asyncio.run(_backend(server.base_url).agenerate(MESSAGES, GenerationConfig(max_new_tokens=4)))
    assert completion.ok and completion.text == "4", completion.error


WRONG_SHAPES = [
    ("application/json", '{"choices": [{"index": 0, "message": {"role": "assistant", "cont'),  # cut short
    ("application/json", "null"),
    ("application/json", "[1, 2]"),
    ("application/json", '{"choices": {"0": {}}}'),
    ("application/json", '{"choices": ["text"]}'),
    ("application/json", '{"choices": [{"index": 0}]}'),  # no message
    ("application/json", '{"choices": [{"index": 0, "message": null}]}'),
    ("text/plain", "not json at all"),
]


@pytest.mark.parametrize("answer", WRONG_SHAPES, ids=[text[:24] for _, text in WRONG_SHAPES])
def test_a_body_of_the_wrong_shape_is_malformed_retried_then_recorded(answer):
    good = ("application/json", json.dumps(COMPLETION))
    with RecordingServer([answer, good]) as server:  # once wrong, then right: retried, answered
        backend = _backend(server.base_url)
        completion = asyncio.run(backend.agenerate(MESSAGES, GenerationConfig(max_new_tokens=4)))
    assert completion.ok and completion.text == "4"
    assert backend.stats.to_dict()["retries"] == {"malformed_json": 1}
    with RecordingServer([answer]) as server:  # always wrong: a recorded failure, never text
        backend = _backend(server.base_url)
        completion = asyncio.run(backend.agenerate(MESSAGES, GenerationConfig(max_new_tokens=4)))
        scores = asyncio.run(backend.ascore_options(MESSAGES, ["1", "2"]))
    assert completion.text is None and "malformed response" in completion.error
    assert "(after 3 attempts)" in completion.error
    assert scores.error and not scores.probs and "malformed response" in scores.error
    assert backend.stats.to_dict()["failures"] == {"malformed_json": 2}


@pytest.mark.parametrize("answer", [
    ("application/json", '{"choices": []}'), ("application/json", '{"choices": null}'), ("application/json", "{}"),
    ("application/json", '{"choices": [{"index": 0, "message": {"role": "assistant"}}]}'),
    ("application/json", '{"choices": [{"index": 0, "message": {"role": "assistant", "content": 7}}]}'),
    ("application/json", '{"choices": [{"index": 0, "message": {"role": "assistant", "content": "  "}}]}'),
])
def test_a_completion_without_text_is_empty_content(answer):
    with RecordingServer([answer]) as server:
        backend = _backend(server.base_url)
        completion = asyncio.run(backend.agenerate(MESSAGES, GenerationConfig(max_new_tokens=4)))
    assert completion.text is None and completion.error.startswith("empty content")
    assert backend.stats.to_dict()["failures"] == {"empty_content": 1}


def test_json_under_another_content_type_is_still_read():
    with RecordingServer([("text/plain", json.dumps(COMPLETION))]) as server:
        completion = asyncio.run(_backend(server.base_url).agenerate(MESSAGES, GenerationConfig(max_new_tokens=4)))
    assert completion.ok and completion.text == "4" and completion.tokens == 1
