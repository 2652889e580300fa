"""The latency server (attribution, deterministic delays), the critical-path bound, and the OpenAI backend's
async path against that real loopback server (no model involved: fast)."""

import asyncio
from dataclasses import replace

import pytest

from aloe_bench.core.backends import GenerationConfig
from aloe_bench.core.backends.openai_backend import OpenAIBackend
from aloe_bench.core.specs import ModelSpec
from aloe_bench.bench.schedule import DEFAULT_OPTIONS, ROLES, _run, critical_path
from aloe_bench.bench.latency_server import LatencyServer, draw_latency


@pytest.fixture(scope="module")
def server():
    with LatencyServer(seed=3, median_s=0.02, sigma=0.8) as running:
        yield running


def rec(conversation, role, turn, latency, attempt=0):
    return {"conversation": conversation, "role": ROLES[role], "turn": turn, "latency_s": latency, "attempt": attempt}


def test_critical_path_is_the_longest_dependent_chain():
    records = [rec("a", "user", 1, 1.0), rec("a", "model", 1, 2.0), rec("a", "judge", 1, 10.0),
               rec("a", "user", 2, 1.0), rec("a", "model", 2, 1.0), rec("a", "judge", 2, 0.5),
               rec("b", "user", 1, 0.5), rec("b", "user", 1, 0.5, attempt=1), rec("b", "model", 1, 0.5),
               rec("b", "judge", 1, 0.5)]
    out = critical_path(records)
    # a: max(1+2+10, 1+2+1+1+0.5) = 13; b: the retried user message adds up: 0.5+0.5+0.5+0.5 = 2
    assert out["bound_s"] == 13.0 and out["mean_chain_s"] == 7.5
    assert out["paper_loop_s"] == pytest.approx(17.5) and out["conversations"] == 2


def test_latency_draws_are_log_normal_and_deterministic():
    draws = sorted(draw_latency(0, f"k{i}", "aloe-user", 1, 0, 0.5, 0.8) for i in range(4000))
    assert draws[2000] == pytest.approx(0.5, rel=0.08)  # the median
    assert draw_latency(0, "k", "r", 1, 0, 0.5, 0.8) == draw_latency(0, "k", "r", 1, 0, 0.5, 0.8)
    assert draw_latency(0, "k", "r", 1, 0, 0.5, 0.8) != draw_latency(1, "k", "r", 1, 0, 0.5, 0.8)


def test_server_attributes_requests_and_schedules_wait_the_same_latencies(server, upstream_dir):
    lock = _run(server, "lockstep", 3, 2, replace(DEFAULT_OPTIONS, max_concurrency=8), str(upstream_dir))
    lock_records = server.records()
    seq = _run(server, "sequential", 3, 2, replace(DEFAULT_OPTIONS, max_concurrency=8), str(upstream_dir))
    seq_records = server.records()
    for run in (lock, seq):
        assert run["scored"] == 6 and run["judge_failures"] == 0 and run["conversations"] == 3
        assert run["requests_by_role"] == {"aloe-judge": 6, "aloe-model": 6, "aloe-user": 6}
    # every conversation has each role at turns 1 and 2, once
    keys = {(r["conversation"], r["role"], r["turn"], r["attempt"]) for r in lock_records}
    assert len(keys) == 18 and {t for _, _, t, _ in keys} == {1, 2}
    # the same request waits the same latency under both schedules, so the bound and the paper loop agree
    by_key = lambda records: sorted((r["conversation"], r["role"], r["turn"], r["latency_s"]) for r in records)
    assert by_key(lock_records) == by_key(seq_records)
    assert lock["bound_s"] == seq["bound_s"] and lock["paper_loop_s"] == seq["paper_loop_s"]
    assert seq["wall_s"] >= seq["paper_loop_s"] * 0.9  # one request at a time waits (about) all of them


def backend(server, **options):
    return OpenAIBackend(ModelSpec.parse("openai:aloe-model", base_url=server.base_url), **options)


def test_openai_async_path_shares_a_bounded_pool_across_tasks(server):
    client = backend(server, max_concurrency=4)
    server.reset()

    async def many():
        results = await asyncio.gather(*(client.agenerate([{"role": "user", "content": f"q{i}"}], GenerationConfig(8))
                                         for i in range(20)))
        await client.aclose()
        return results

    results = asyncio.run(many())
    assert all(r.ok and r.text.endswith(": 4") and r.latency_s > 0 for r in results)
    records = server.records()
    assert len(records) == 20
    events = sorted([(r["start_s"], 1) for r in records] + [(r["end_s"], -1) for r in records])
    in_flight = peak = 0
    for _, step in events:
        in_flight += step
        peak = max(peak, in_flight)
    assert 2 <= peak <= 4  # concurrent, and never more than max_concurrency
    assert client.stats.to_dict()["succeeded"] == 20
    # a second event loop gets its own client; the sync batch path still works; so does streaming
    assert asyncio.run(client.agenerate([{"role": "user", "content": "again"}], GenerationConfig(8))).ok
    assert [c.ok for c in client.generate([[{"role": "user", "content": "a"}]] * 3, GenerationConfig(8))] == [True] * 3
    pieces = list(client.stream([{"role": "user", "content": "s"}], GenerationConfig(8)))
    assert pieces and pieces[-1].endswith(": 4")


def test_openai_async_rate_limit_spaces_request_starts(server):
    client = backend(server, max_concurrency=8, requests_per_minute=600)  # one start every 0.1 s
    server.reset()

    async def burst():
        return await asyncio.gather(*(client.agenerate([{"role": "user", "content": f"r{i}"}], GenerationConfig(8))
                                      for i in range(5)))

    assert all(r.ok for r in asyncio.run(burst()))
    starts = sorted(r["start_s"] for r in server.records())
    assert starts[-1] - starts[0] >= 0.35


def test_openai_async_unreachable_is_an_error_not_text():
    dead = OpenAIBackend(ModelSpec.parse("openai:x", base_url="http://127.0.0.1:9/v1"), request_max_retries=0, request_timeout_s=2)
    result = asyncio.run(dead.agenerate([{"role": "user", "content": "q"}], GenerationConfig(8)))
    assert result.text is None and "Connection" in result.error
