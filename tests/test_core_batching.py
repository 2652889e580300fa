"""The transformers backend's dynamic batcher on the embedded model: requests from conversations at different
turns, started concurrently, share padded `generate` calls and get the same greedy answers as one at a time."""

import asyncio
import time

import pytest

from aloe_bench.core.backends import BackendOptions, GenerationConfig, build_backend

pytestmark = pytest.mark.slow
GREEDY = GenerationConfig(max_new_tokens=16, temperature=0.0)


def conversation(turns: int, topic: str) -> list[dict]:
    """A conversation at turn `turns`: earlier exchanges, then a new user message."""
    messages = []
    for k in range(1, turns):
        messages += [{"role": "user", "content": f"Tell me one thing about {topic}, part {k}."},
                     {"role": "assistant", "content": f"Here is part {k} about {topic}: it is interesting."}]
    return messages + [{"role": "user", "content": f"And what else about {topic}?"}]


@pytest.fixture(scope="module")
def backend():
    return build_backend("embedded", BackendOptions(batch_size=8))  # its own instance (other options than the shared fixture)


@pytest.fixture
def generate_calls(backend):
    """Batch sizes of every `model.generate` call while the test runs."""
    calls = []
    original = backend.model.generate

    def counting(*args, **kwargs):
        calls.append(kwargs["input_ids"].shape[0])
        return original(*args, **kwargs)

    backend.model.generate = counting
    yield calls
    del backend.model.generate


def test_requests_at_different_turns_share_a_batch_and_match_one_at_a_time(backend, generate_calls):
    prompts = [conversation(1, "bees"), conversation(3, "jazz in Lyon"), conversation(2, "sourdough"),
               conversation(4, "marathon training")]
    lengths = {len(backend.encode_prompt(p, 16)) for p in prompts}
    assert len(lengths) == 4  # really different lengths

    async def concurrently():
        return await asyncio.gather(*(backend.agenerate(p, GREEDY) for p in prompts))

    batched = asyncio.run(concurrently())
    assert generate_calls == [4]  # one padded generate call served all four
    single = [backend.generate([p], GREEDY)[0] for p in prompts]
    assert all(c.ok and 0 < c.tokens <= 16 for c in batched)
    assert [c.text for c in batched] == [c.text for c in single]


def test_requests_arriving_during_a_batch_form_the_next_one(backend, generate_calls):
    early, late = conversation(1, "tea"), [conversation(2, "chess"), conversation(3, "kayaks"), conversation(1, "owls")]

    async def staggered():
        first = asyncio.create_task(backend.agenerate(early, GREEDY))
        while not generate_calls:  # the first batch has started
            await asyncio.sleep(0.01)
        rest = await asyncio.gather(*(backend.agenerate(p, GREEDY) for p in late))
        return [await first, *rest]

    results = asyncio.run(staggered())
    assert generate_calls == [1, 3] and backend.worker.stats.to_dict()["largest"] >= 3
    assert [c.text for c in results] == [backend.generate([p], GREEDY)[0].text for p in [early, *late]]


def test_different_settings_are_not_mixed_and_a_bad_request_fails_alone(backend, generate_calls):
    other = GenerationConfig(max_new_tokens=4, temperature=0.0)
    bad = [{"role": "user", "content": None}]  # the chat template cannot render it

    async def mixed():
        return await asyncio.gather(backend.agenerate(conversation(1, "a"), GREEDY),
                                    backend.agenerate(conversation(2, "b"), other),
                                    backend.agenerate(bad, GREEDY),
                                    backend.agenerate(conversation(3, "c"), GREEDY))

    a, b, failed, c = asyncio.run(mixed())
    assert a.ok and b.ok and c.ok and b.tokens <= 4
    assert failed.text is None and failed.error
    assert sorted(generate_calls) == [1, 2]  # the 16-token pair together, the 4-token request alone


def test_async_option_scores_batch_and_equal_the_sync_ones(backend):
    options = ["1", "2", "3", "4", "5"]
    prompts = [conversation(1, "rate this from 1 to 5"), conversation(2, "rate it"), conversation(3, "score it")]

    async def concurrently():
        return await asyncio.gather(*(backend.ascore_options(p, options) for p in prompts))

    before = backend.worker.stats.batches
    scores = asyncio.run(concurrently())
    single = [backend.score_options([p], options)[0] for p in prompts]
    for got, want in zip(scores, single):
        assert got.error is None and sum(got.probs.values()) == pytest.approx(1.0)
        assert got.probs == pytest.approx(want.probs, abs=1e-4)
    assert backend.worker.stats.batches - before <= len(prompts)


def test_sync_scoring_uses_length_sorted_micro_batches(backend):
    """Very different lengths are not padded into one forward pass (the judge got slower batched than alone)."""
    shapes = []
    original = backend.model.forward

    def recording(*args, **kwargs):
        shapes.append(tuple(kwargs["input_ids"].shape))
        return original(*args, **kwargs)

    backend.model.forward = recording
    try:
        prompts = [conversation(1, "x"), conversation(6, "y"), conversation(1, "z"), conversation(6, "w")]
        began = time.perf_counter()
        scores = backend.score_options(prompts, ["1", "2", "3", "4", "5"])
        assert time.perf_counter() - began < 60
    finally:
        del backend.model.forward
    assert all(s.error is None for s in scores)
    assert sorted(b for b, _ in shapes) == [2, 2]  # the two short ones together, the two long ones together
