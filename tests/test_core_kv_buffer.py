"""The reserved-room key/value layer (`core/backends/kv_buffer.py`): the same numbers as transformers' own
concatenating layer, no copy of the cache per decoded token, and outside edits (crop) still honoured. A tiny
randomly initialised Llama stands in for a model (no weights are loaded)."""

from __future__ import annotations

import pytest
import torch

from aloe_bench.core.backends.kv_buffer import GrowingLayer, growing_cache

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def tiny():
    config = transformers.LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                                      initializer_range=0.2)  # large weights: attention matters to the logits
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(config).eval()


def _generate(model, cache=None, **sampling):
    ids = torch.tensor([[0, 0, 5, 7, 9, 11], [3, 4, 5, 6, 7, 8]])
    mask = (torch.arange(6) >= torch.tensor([[2], [0]])).long()
    torch.manual_seed(1)
    with torch.inference_mode():
        return model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=12, min_new_tokens=12,
                              pad_token_id=0, return_dict_in_generate=True, output_logits=True,
                              **({} if cache is None else {"cache": cache}), **sampling)


@pytest.mark.parametrize("sampling", [dict(do_sample=False), dict(do_sample=True, temperature=0.7)])
def test_generation_is_bit_for_bit_the_concatenating_layers(tiny, sampling):
    plain = _generate(tiny, **sampling)
    buffered = _generate(tiny, growing_cache(tiny.config, 6 + 12), **sampling)
    assert torch.equal(plain.sequences, buffered.sequences)
    for a, b in zip(plain.logits, buffered.logits):
        assert torch.equal(a, b)
    assert buffered.cache.get_seq_length() == plain.cache.get_seq_length() == 6 + 11
    for a, b in zip(plain.cache.layers, buffered.cache.layers):
        assert torch.equal(a.keys, b.keys) and torch.equal(a.values, b.values)


def test_decoding_writes_in_place_without_copying_the_cache():
    layer = GrowingLayer(capacity=10)
    first = torch.randn(2, 3, 4, 8)
    layer.update(first, first + 1)
    buffer = layer._keys_buffer
    for step in range(6):
        token = torch.full((2, 3, 1, 8), float(step))
        keys, values = layer.update(token, token + 1)
        assert layer._keys_buffer is buffer  # no new allocation while the room lasts
        assert keys.data_ptr() == buffer.data_ptr() and keys.shape[-2] == 5 + step
    assert torch.equal(keys[:, :, :4], first) and torch.equal(values[:, :, 4], torch.full((2, 3, 8), 1.0))
    assert layer.get_seq_length() == 10
    layer.update(torch.ones(2, 3, 1, 8), torch.ones(2, 3, 1, 8))  # past the room: grows, keeps what it held
    assert layer._keys_buffer.shape[-2] >= 11 and torch.equal(layer.keys[:, :, :4], first)


def test_a_crop_from_outside_is_the_new_contents():
    layer = GrowingLayer(capacity=8)
    data = torch.arange(2 * 1 * 5 * 2, dtype=torch.float32).reshape(2, 1, 5, 2)
    layer.update(data, data)
    layer.crop(-2)
    assert layer.get_seq_length() == 3
    extra = torch.full((2, 1, 1, 2), -1.0)
    keys, _ = layer.update(extra, extra)
    assert keys.shape[-2] == 4 and torch.equal(keys[:, :, :3], data[:, :, :3]) and torch.equal(keys[:, :, 3], extra[:, :, 0])


def test_seeded_layer_continues_after_the_seeded_length():
    layer = GrowingLayer()
    buffer = torch.zeros(1, 2, 6, 4)
    buffer[:, :, :3] = 1.0
    layer.seed(buffer, buffer.clone(), 3)
    assert layer.get_seq_length() == 3
    keys, _ = layer.update(torch.full((1, 2, 2, 4), 2.0), torch.full((1, 2, 2, 4), 2.0))
    assert keys.shape[-2] == 5 and keys.data_ptr() == buffer.data_ptr() and float(buffer[0, 0, 4, 0]) == 2.0


def test_prefix_rows_on_reserved_room_give_the_full_reads_tokens(tiny):
    """A batch mixing a row with a cached prefix and one without, through `PrefixRows` (the per-row suffix read on
    reserved room, the left-padded batch cache with room for the generation): the same greedy tokens as a plain
    padded `generate`, and near-identical logits."""
    from aloe_bench.core.backends.prefix_cache import PrefixCache
    from aloe_bench.core.backends.prefix_rows import PrefixRows

    rows = PrefixRows(tiny, PrefixCache(64 * 2**20), {"logits_to_keep": 1}, buffered=True)
    generator = torch.Generator().manual_seed(3)
    first = torch.randint(1, 97, (48,), generator=generator).tolist()
    other = torch.randint(1, 97, (40,), generator=generator).tolist()

    def run(prompts, cached: bool):
        width = max(map(len, prompts))
        ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
        extra = rows.prefill_for_generate(prompts, ["s"] * len(prompts), width, 8) if cached else {}
        with torch.inference_mode():
            out = tiny.generate(input_ids=ids, attention_mask=mask, max_new_tokens=8, min_new_tokens=8, do_sample=False,
                                pad_token_id=0, return_dict_in_generate=True, output_logits=True, **extra)
        if cached:
            rows.keep_generated(prompts, ["s"] * len(prompts), out.sequences, width, [8] * len(prompts), out.cache)
        return out

    warm = run([first], cached=True)  # a miss: read in full, its prompt and reply kept
    assert rows.cache.stats.misses == 1 and rows.cache.stats.hits == 0
    follow = first + warm.sequences[0, 48:].tolist() + torch.randint(1, 97, (6,), generator=generator).tolist()
    plain, cached = run([follow, other], cached=False), run([follow, other], cached=True)
    assert rows.cache.stats.hits == 1 and rows.cache.stats.reused_tokens >= 48
    assert torch.equal(plain.sequences, cached.sequences)
    assert max(float((a - b).abs().max()) for a, b in zip(plain.logits, cached.logits)) < 1e-4


def test_rows_of_one_batch_share_their_common_prefix_within_a_scope(tiny):
    """K samples of one prompt and prompts with common instructions, in one batch on a cold cache: the first row is
    read in full and the others on top of its tensors (counted as reused), with the full read's greedy tokens; rows
    of different scopes (two Space visitors) share nothing."""
    from aloe_bench.core.backends.prefix_cache import PrefixCache
    from aloe_bench.core.backends.prefix_rows import PrefixRows

    generator = torch.Generator().manual_seed(5)
    shared = torch.randint(1, 97, (50,), generator=generator).tolist()
    prompts = [shared, list(shared), shared[:40] + torch.randint(1, 97, (9,), generator=generator).tolist()]

    def run(prompts, scopes, rows=None):
        width = max(map(len, prompts))
        ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
        extra = rows.prefill_for_generate(prompts, scopes, width, 8) if rows else {}
        with torch.inference_mode():
            return tiny.generate(input_ids=ids, attention_mask=mask, max_new_tokens=8, min_new_tokens=8,
                                 do_sample=False, pad_token_id=0, return_dict_in_generate=True, output_logits=True,
                                 **extra)

    rows = PrefixRows(tiny, PrefixCache(64 * 2**20), {"logits_to_keep": 1}, buffered=True)
    plain, cached = run(prompts, ["s"] * 3), run(prompts, ["s"] * 3, rows)
    stats = rows.cache.stats
    assert (stats.misses, stats.hits) == (1, 2) and stats.reused_tokens == 49 + 40
    assert stats.computed_tokens == sum(map(len, prompts)) - 89
    assert torch.equal(plain.sequences, cached.sequences)
    assert max(float((a - b).abs().max()) for a, b in zip(plain.logits, cached.logits)) < 1e-4

    apart = PrefixRows(tiny, PrefixCache(64 * 2**20), {"logits_to_keep": 1}, buffered=True)
    run(prompts[:2], ["visitor-a", "visitor-b"], apart)
    assert (apart.cache.stats.misses, apart.cache.stats.hits, apart.cache.stats.reused_tokens) == (2, 0, 0)
