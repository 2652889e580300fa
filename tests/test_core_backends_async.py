"""Single awaitable requests without a model: the worker's gathering, the vLLM engine seam (a fake `vllm`
module), and the request cache / profiler wrappers' async paths."""

import asyncio
import sys
import threading
import time
import types

import pytest

from aloe_bench.core.backends import BackendOptions, GenerationConfig, build_backend
from aloe_bench.core.backends.base import Completion, OptionScores
from aloe_bench.core.backends.batching import ModelWorker, length_buckets
from aloe_bench.core.backends.cache import CachedBackend, RequestCache
from aloe_bench.core.backends.profiled import ProfiledBackend
from aloe_bench.core.specs import ModelSpec
from aloe_bench.testing.backends import ScriptedBackend

GREEDY = GenerationConfig(max_new_tokens=8)


def chat(text):
    return [{"role": "user", "content": text}]


# -- length buckets and the worker --------------------------------------------------------------------------
def test_length_buckets_sort_cap_and_limit_padding():
    lengths = [100, 10, 105, 12, 400, 11]
    assert length_buckets(lengths, max_batch=16) == [[1, 5, 3, 0, 2, 4]]
    assert length_buckets(lengths, max_batch=2) == [[1, 5], [3, 0], [2, 4]]
    # 10% padding at most: the short prompts, the ~100 ones and the long one each go alone
    assert length_buckets(lengths, max_batch=16, max_padding=0.1) == [[1, 5, 3], [0, 2], [4]]


class Recorder:
    """A fake model call: sleeps, records each batch, fails any payload that is 'bad'."""

    def __init__(self, delay=0.05):
        self.delay, self.batches, self.threads = delay, [], set()

    def __call__(self, key, payloads):
        self.threads.add(threading.current_thread().name)
        self.batches.append((key, list(payloads)))
        time.sleep(self.delay)
        if "bad" in payloads:
            raise ValueError("bad prompt")
        return [Completion(f"{key}:{p}") for p in payloads]


def failed(key, payload, exc):
    return Completion(None, error=f"{type(exc).__name__}: {exc}")


def test_worker_gathers_requests_that_arrive_while_a_batch_runs():
    run = Recorder(delay=0.2)
    worker = ModelWorker(run, failed, max_batch=8, debounce_s=0.01)
    first = worker.submit("g", 5, "first")
    time.sleep(0.05)  # the first batch is running now
    later = [worker.submit("g", n, f"p{n}") for n in (30, 10, 20)]
    other = worker.submit("h", 1, "other-settings")
    results = [f.result(5) for f in [first, *later, other]]
    assert [r.text for r in results] == ["g:first", "g:p30", "g:p10", "g:p20", "h:other-settings"]
    assert run.batches == [("g", ["first"]), ("g", ["p10", "p20", "p30"]), ("h", ["other-settings"])]
    assert worker.stats.batches == 3 and worker.stats.to_dict()["largest"] == 3
    assert len(run.threads) == 1  # one thread owns the model


def test_worker_caps_batches_and_keeps_the_oldest_with_its_length_neighbours():
    run = Recorder(delay=0.1)
    worker = ModelWorker(run, failed, max_batch=2, debounce_s=0.01)
    blocker = worker.submit("g", 1, "blocker")
    time.sleep(0.03)
    futures = [worker.submit("g", n, f"p{n}") for n in (50, 10, 11, 51)]
    for f in [blocker, *futures]:
        f.result(5)
    # p50 is the oldest waiting: it goes with its closest neighbour by length (p51), then p10 + p11
    assert [b for _, b in run.batches[1:]] == [["p50", "p51"], ["p10", "p11"]]


def test_one_bad_request_fails_alone():
    run = Recorder(delay=0.01)
    worker = ModelWorker(run, failed, max_batch=8, debounce_s=0.05)
    futures = [worker.submit("g", i, p) for i, p in enumerate(["a", "bad", "c"])]
    results = [f.result(5) for f in futures]
    assert [r.text for r in results] == ["g:a", None, "g:c"]
    assert results[1].error == "ValueError: bad prompt"
    assert worker.stats.split_after_error == 1


def test_jobs_run_in_order_on_the_same_thread_and_reraise():
    run = Recorder(delay=0.01)
    worker = ModelWorker(run, failed, max_batch=4)
    assert worker.call(lambda: threading.current_thread().name) == worker.name
    with pytest.raises(ZeroDivisionError):
        worker.call(lambda: 1 / 0)
    assert worker.submit("g", 1, "x").result(5).text == "g:x"


def test_cancelled_requests_are_dropped_before_they_run():
    run = Recorder(delay=0.2)
    worker = ModelWorker(run, failed, max_batch=8, debounce_s=0.01)
    busy = worker.submit("g", 1, "busy")
    time.sleep(0.05)
    gone, kept = worker.submit("g", 1, "gone"), worker.submit("g", 2, "kept")
    assert gone.cancel()
    assert kept.result(5).text == "g:kept" and busy.result(5).text == "g:busy"
    assert all("gone" not in batch for _, batch in run.batches)


# -- the vLLM engine seam -------------------------------------------------------------------------------------
class FakeEngineArgs:
    def __init__(self, **kwargs):
        self.kwargs = kwargs


class FakeSamplingParams:
    def __init__(self, max_tokens, temperature, top_p, seed, logprobs=None, top_k=-1):
        self.max_tokens, self.temperature, self.top_p, self.seed, self.logprobs, self.top_k = (
            max_tokens, temperature, top_p, seed, logprobs, top_k)


class FakeTokensPrompt(dict):
    def __init__(self, prompt_token_ids):
        super().__init__(prompt_token_ids=prompt_token_ids)


class FakeAsyncEngine:
    """Answers like vLLM's async engine: an async generator of cumulative outputs per request id."""

    built: list = []
    score_token = None

    def __init__(self, args):
        self.args, self.requests, self.loops, self.aborted = args, [], set(), []
        self.in_flight = self.max_in_flight = 0
        self.shut = False
        # what vLLM reads from the model's generation_config.json (its "diff" over SamplingParams' defaults)
        self.model_config = types.SimpleNamespace(get_diff_sampling_param=lambda: {"temperature": 0.6, "top_p": 0.9,
                                                                                  "top_k": 20})

    @classmethod
    def from_engine_args(cls, args):
        engine = cls(args)
        cls.built.append(engine)
        return engine

    async def generate(self, prompt, params, request_id):
        self.loops.add(asyncio.get_running_loop())
        self.requests.append((prompt["prompt_token_ids"], params, request_id))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.1)
            if params.logprobs:
                top = {FakeAsyncEngine.score_token: types.SimpleNamespace(logprob=-0.1),
                       999_999: types.SimpleNamespace(logprob=-3.0)}
                yield types.SimpleNamespace(outputs=[types.SimpleNamespace(text="4", token_ids=[1], logprobs=[top])])
                return
            yield types.SimpleNamespace(outputs=[types.SimpleNamespace(text=" par", token_ids=[1], logprobs=None)])
            yield types.SimpleNamespace(outputs=[types.SimpleNamespace(text=f" reply {len(self.requests)} ",
                                                                       token_ids=[1, 2, 3], logprobs=None)])
        except asyncio.CancelledError:
            self.aborted.append(request_id)
            raise
        finally:
            self.in_flight -= 1

    def shutdown(self):
        self.shut = True


@pytest.fixture
def fake_vllm(monkeypatch):
    module = types.SimpleNamespace(AsyncEngineArgs=FakeEngineArgs, AsyncLLMEngine=FakeAsyncEngine,
                                   SamplingParams=FakeSamplingParams, TokensPrompt=FakeTokensPrompt)
    monkeypatch.setitem(sys.modules, "vllm", module)
    FakeAsyncEngine.built = []
    return module


def vllm_backend(**options):
    from aloe_bench.core.backends.vllm_backend import VLLMBackend

    return VLLMBackend(ModelSpec.parse("embedded", engine="vllm"), **options)


def test_vllm_options_reach_the_engine_through_build_backend(fake_vllm):
    options = BackendOptions(engine="vllm", tensor_parallel_size=2, gpu_memory_utilization=0.75, max_model_len=4096,
                             enable_prefix_caching=False, batch_size=64, device="cuda", max_concurrency=9)
    chosen = options.for_kind("vllm")
    assert {k: chosen[k] for k in ("tensor_parallel_size", "gpu_memory_utilization", "max_model_len",
                                   "enable_prefix_caching", "batch_size")} == {
        "tensor_parallel_size": 2, "gpu_memory_utilization": 0.75, "max_model_len": 4096,
        "enable_prefix_caching": False, "batch_size": 64}
    assert "device" not in chosen and "max_concurrency" not in chosen
    backend = build_backend("embedded", options)
    try:
        args = FakeAsyncEngine.built[-1].args.kwargs
        assert {k: args[k] for k in ("tensor_parallel_size", "gpu_memory_utilization", "max_model_len",
                                     "enable_prefix_caching", "max_num_seqs")} == {
            "tensor_parallel_size": 2, "gpu_memory_utilization": 0.75, "max_model_len": 4096,
            "enable_prefix_caching": False, "max_num_seqs": 64}
        assert backend.max_context == 4096
        assert backend.describe()["engine_args"]["tensor_parallel_size"] == 2
    finally:
        backend.close()
    assert FakeAsyncEngine.built[-1].shut
    # the transformers engine takes none of them
    assert options.for_kind("transformers") == {"batch_size": 64, "device": "cuda"}


def test_vllm_with_temperature_none_samples_with_the_models_own_settings(fake_vllm):
    """The paper protocol's evaluated model: temperature None means the model's own generation config."""
    backend = vllm_backend()
    try:
        engine = FakeAsyncEngine.built[-1]
        (reply,) = backend.generate([chat("hi")], GenerationConfig(max_new_tokens=9, temperature=None, seed=4))
        assert reply.ok, reply.error
        params = engine.requests[-1][1]
        assert (params.temperature, params.top_p, params.top_k, params.max_tokens, params.seed) == (0.6, 0.9, 20, 9, 4)
        single = asyncio.run(backend.agenerate(chat("again"), GenerationConfig(max_new_tokens=5, temperature=None)))
        assert single.ok and engine.requests[-1][1].temperature == 0.6
    finally:
        backend.close()


def test_vllm_requests_go_to_the_engine_as_they_come_from_any_loop(fake_vllm):
    backend = vllm_backend(max_model_len=2048)
    try:
        engine = FakeAsyncEngine.built[-1]

        async def many(n):
            return await asyncio.gather(*(backend.agenerate(chat(f"hello {i}"), GREEDY) for i in range(n)))

        first = asyncio.run(many(5))
        second = asyncio.run(many(3))  # a second event loop: same engine, same engine loop
        assert all(c.ok and c.text.startswith("reply") and c.tokens == 3 for c in first + second)
        assert engine.max_in_flight == 5 and len(engine.loops) == 1
        ids, params, _ = engine.requests[0]
        assert ids == backend.encode_prompt(chat("hello 0"), 8)  # the model's own chat template, as token ids
        assert (params.max_tokens, params.temperature, params.seed) == (8, 0.0, 0)
        # the sync list goes in all at once too
        replies = backend.generate([chat("a"), chat("b")], GenerationConfig(max_new_tokens=7, temperature=0.5, seed=3))
        assert [r.ok for r in replies] == [True, True] and engine.requests[-1][1].seed == 3
        # option scores read the option tokens' logprobs by id
        FakeAsyncEngine.score_token = backend.option_token_ids(["4"])[0]
        (scores,) = backend.score_options([chat("rate")], ["1", "2", "3", "4", "5"])
        assert scores.error is None and scores.probs["4"] == pytest.approx(1.0)
        single = asyncio.run(backend.ascore_options(chat("rate"), ["1", "2", "3", "4", "5"]))
        assert single.probs == scores.probs and engine.requests[-1][1].logprobs == 20
        FakeAsyncEngine.score_token = None
        (none,) = backend.score_options([chat("rate")], ["1", "2", "3", "4", "5"])
        assert none.error and "none of the options" in none.error
    finally:
        backend.close()


def test_vllm_cancelled_request_is_aborted_and_a_failure_stays_its_own(fake_vllm):
    backend = vllm_backend()
    try:
        engine = FakeAsyncEngine.built[-1]

        async def cancel_one():
            task = asyncio.create_task(backend.agenerate(chat("x"), GREEDY))
            await asyncio.sleep(0.03)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await asyncio.sleep(0.05)

        asyncio.run(cancel_one())
        assert len(engine.aborted) == 1

        original = engine.generate

        async def failing(prompt, params, request_id):
            if params.max_tokens == 5:
                raise RuntimeError("engine error")
            async for out in original(prompt, params, request_id):
                yield out

        engine.generate = failing

        async def mixed():
            return await asyncio.gather(backend.agenerate(chat("a"), GenerationConfig(max_new_tokens=5)),
                                        backend.agenerate(chat("b"), GREEDY))

        bad, good = asyncio.run(mixed())
        assert bad.error == "RuntimeError: engine error" and bad.text is None and good.ok
    finally:
        backend.close()


def test_vllm_missing_is_a_clear_error(monkeypatch):
    from aloe_bench.core.extras import MissingExtra

    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(MissingExtra, match="vllm.*aloe-bench\\[vllm\\]"):
        build_backend("embedded", BackendOptions(engine="vllm"))


# -- wrappers ---------------------------------------------------------------------------------------------------
class AsyncCounting(ScriptedBackend):
    """A scripted backend whose async path is its own (not the thread default), counting requests."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.async_calls = 0

    async def agenerate(self, messages, config):
        self.async_calls += 1
        await asyncio.sleep(0.05)
        return self.generate([messages], config)[0]

    async def ascore_options(self, messages, options):
        self.async_calls += 1
        await asyncio.sleep(0.05)
        return self.score_options([messages], options)[0]


def test_cache_async_hits_answer_without_a_request(tmp_path):
    inner = AsyncCounting(fn=lambda m, c: RuntimeError("boom") if "fail" in m[-1]["content"] else "answer " + m[-1]["content"],
                          options={"1": 0.5, "2": 0.5})
    backend = CachedBackend(inner, RequestCache(tmp_path / "c.sqlite"))

    async def round_trip():
        return await asyncio.gather(*(backend.agenerate(chat(t), GREEDY) for t in ("a", "fail", "b")),
                                    backend.ascore_options(chat("s"), ["1", "2"]))

    first = asyncio.run(round_trip())
    assert [c.text for c in first[:3]] == ["answer a", None, "answer b"] and inner.async_calls == 4
    again = asyncio.run(round_trip())
    assert [getattr(c, "cached") for c in again] == [True, False, True, True]
    assert inner.async_calls == 5  # only the failed request went out again
    assert again[3].probs == {"1": 0.5, "2": 0.5}
    # the sync path sees what the async path stored
    assert backend.generate([chat("a")], GREEDY)[0].cached


def test_profiled_async_counts_requests_and_busy_time_once():
    inner = AsyncCounting(fn=lambda m, c: "two words")
    profiled = ProfiledBackend(inner)

    async def burst():
        began = time.perf_counter()
        await asyncio.gather(*(profiled.agenerate(chat(str(i)), GREEDY) for i in range(6)))
        return time.perf_counter() - began

    wall = asyncio.run(burst())
    p = profiled.profile
    assert (p.calls, p.requests, p.generated_tokens, p.prompt_tokens) == (6, 6, 12, None)
    assert p.seconds <= wall + 0.01 and p.request_seconds >= 6 * 0.05 > p.seconds  # overlapping requests count once
    profiled.generate([chat("x"), chat("y")], GREEDY)
    assert (p.calls, p.requests, p.generated_tokens) == (7, 8, 16)


def test_delegating_wrappers_keep_identity(tmp_path):
    inner = ScriptedBackend(answers=["x"], kind="openai")
    inner.is_remote = True
    for wrapper in (ProfiledBackend(inner), CachedBackend(inner, RequestCache(tmp_path / "c.sqlite"))):
        assert wrapper.is_remote and wrapper.model_id == inner.model_id and wrapper.describe() == inner.describe()
        assert asyncio.run(wrapper.agenerate(chat("q"), GREEDY)).text == "x"
        assert isinstance(asyncio.run(wrapper.ascore_options(chat("q"), ["1"])), OptionScores)
