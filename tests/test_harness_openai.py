"""The `openai:` path against a real OpenAI-compatible server (`transformers serve`) on 127.0.0.1.

The `server` fixture (one `transformers serve` per session) is in conftest.py."""

import socket

import pytest

from aloe_bench.core.backends import BackendError, GenerationConfig, build_backend
from aloe_bench.core.backends import BackendOptions
from aloe_bench.core.specs import ModelSpec
from aloe_bench.harness import EvalConfig, evaluate_model
from aloe_bench.harness.protocol import resolve_run

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def spec(server):
    return ModelSpec.parse(f"openai:{server['model']}", base_url=server["base_url"])


def test_concurrent_batch_and_stream(server):
    backend = build_backend(spec(server), BackendOptions(max_concurrency=4))
    config = GenerationConfig(max_new_tokens=16, temperature=0.0)
    replies = backend.generate([[{"role": "user", "content": q}] for q in ("Hi!", "Name a bird.", "2+2?")], config)
    assert all(r.ok and r.text for r in replies), [r.error for r in replies]
    assert all(0 < r.tokens <= 16 for r in replies)
    pieces = list(backend.stream([{"role": "user", "content": "Say something about tea."}], config))
    assert pieces and pieces[-1].strip()


def test_missing_logprobs_is_a_recorded_failure(server):
    backend = build_backend(spec(server))
    (scores,) = backend.score_options([[{"role": "user", "content": "Rate 1-5"}]], ["1", "2", "3", "4", "5"])
    assert scores.error and not scores.probs


def test_unreachable_endpoint_gives_errors_not_text(tmp_path):
    backend = build_backend(ModelSpec.parse("openai:m", base_url=f"http://127.0.0.1:{free_port()}/v1"),
                            BackendOptions(request_max_retries=0, request_timeout_s=5))
    (reply,) = backend.generate([[{"role": "user", "content": "hi"}]], GenerationConfig(max_new_tokens=4))
    assert not reply.ok and "Connection" in reply.error


def test_missing_key_names_the_variable_only(monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("ALOE_TEST_KEY", raising=False)
    with pytest.raises(BackendError, match="set ALOE_TEST_KEY"):
        build_backend(ModelSpec.parse("openai:gpt-4o-mini", api_key_env="ALOE_TEST_KEY"))


def test_eval_through_the_server(server, tmp_path, upstream_dir, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-do-not-leak")
    cfg = EvalConfig(protocol="smoke", model=f"openai:{server['model']}", base_url=server["base_url"],
                     judge_model=f"openai:{server['model']}", judge_base_url=server["base_url"],
                     personas=str(upstream_dir), max_personas=2, turns=2, output_dir=str(tmp_path),
                     reply_max_new_tokens=24, user_max_new_tokens=24, bootstrap_resamples=50, progress=False)
    results = evaluate_model(resolve_run(cfg))
    assert results["judge"].endswith("(paper, text)")
    assert results["counts"]["rows"] == 4 and results["counts"]["generation_failures"] == 0
    assert results["counts"]["scored"] + results["counts"]["judge_failures"] == 4
    for path in tmp_path.iterdir():
        if path.is_file():
            assert b"sk-test-do-not-leak" not in path.read_bytes(), path
