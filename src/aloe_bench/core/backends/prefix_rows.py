"""From cached prefixes to model inputs, and from model outputs to cache entries, for a batch of prompts.

`TransformersBackend` keeps its dynamic batcher with the prefix cache on: the rows of one call may have different
cached lengths. Each row's uncached suffix is read on top of its cached prefix (one forward pass per row: a
prompt-only pass gains little from batching on a CPU), giving that row's keys and values for all but its last
prompt token; those are laid out left-padded like the prompts into one transformers `DynamicCache`, and one batched
`generate` reads the last prompt tokens and decodes (positions come from the attention mask, as in a full read).
Afterwards each row's prompt and reply tensors are cut out of the generation cache into a cache entry. A batch in
which no row has a cached prefix runs exactly as without the cache; only its entries are kept.
"""

from __future__ import annotations

import numpy as np
import torch

from .kv_buffer import growing_cache
from .prefix_cache import PrefixCache, PrefixEntry, common_prefix

MIN_REUSE = 32  # tokens: a shorter common prefix (a chat template's header) is read again rather than reused
MIN_SHARE = 0.25  # of a batch's prompt tokens the reused prefixes must make up to read its rows one by one


def in_batch_shares(prompts: list[list[int]], scopes: list[str]) -> list[int]:
    """For each row, the longest prefix it shares with an earlier row of the same scope in this batch (at most the
    earlier row's length - 1, what a generate prefill reads of it, and its own length - 1); 0 below MIN_REUSE."""
    arrays = [np.asarray(p, dtype=np.int64) for p in prompts]
    shares = [0] * len(prompts)
    for i in range(1, len(prompts)):
        for j in range(i):
            if scopes[j] == scopes[i]:
                share = min(common_prefix(arrays[i], arrays[j]), len(prompts[j]) - 1, len(prompts[i]) - 1)
                shares[i] = max(shares[i], share)
    return [share if share >= MIN_REUSE else 0 for share in shares]


class PrefixRows:
    """The prefix-cache side of one model's work (on its worker thread); every method is a no-op without a cache."""

    def __init__(self, model, cache: PrefixCache | None, forward_kwargs: dict, buffered: bool = False):
        self.model = model
        self.cache = cache
        self.forward_kwargs = forward_kwargs  # e.g. logits_to_keep=1
        self.buffered = buffered or cache is not None  # decode into reserved room (`kv_buffer`), cache on or off

    @staticmethod
    def supports(model) -> bool:
        """Whether every layer keeps plain full-attention keys and values (sliding windows drop old ones)."""
        from transformers import DynamicCache
        from transformers.cache_utils import DynamicLayer

        try:
            layers = DynamicCache(config=model.config).layers
        except Exception:  # a model whose config the cache classes do not read
            return False
        return bool(layers) and all(type(layer) is DynamicLayer for layer in layers)

    def positions(self, attention_mask: torch.Tensor) -> dict:
        """With the cache on, position ids that start at each row's first real token (as `generate` makes them): the
        keys a left-padded forward pass leaves must sit at the positions a later request continues from. Without
        the cache, nothing (the model's own positions, as before)."""
        if self.cache is None:
            return {}
        return {"position_ids": (attention_mask.long().cumsum(-1) - 1).clamp(min=0)}

    # -- reading prompts on top of cached prefixes ---------------------------------------------------------------
    def _lookup(self, prompts: list[list[int]], scopes: list[str]) -> list[tuple[PrefixEntry | None, int]] | None:
        """Each row's cached entry and reusable length; None when the batch is better read in full as one padded
        call: no row has a prefix worth reusing (in the cache, or in an earlier row of this batch and scope), or
        the prefixes are too small a share of the batch's tokens to pay for reading the rows one by one (a shared
        chat-template header alone is no reason). A batch read in full is counted here; rows read one by one are
        counted as they are read (`_rows`)."""
        found = [(None, 0)] * len(prompts)
        shared = [0] * len(prompts)
        if min(len(p) for p in prompts) >= 2:  # a one-token prompt has no prefix to reuse
            found = [self.cache.match(scope, prompt, len(prompt) - 1) for scope, prompt in zip(scopes, prompts)]
            found = [(entry, length) if length >= MIN_REUSE else (None, 0) for entry, length in found]
            shared = in_batch_shares(prompts, scopes)
        reusable = sum(max(length, share) for (_, length), share in zip(found, shared))
        if not reusable or reusable < MIN_SHARE * sum(len(p) for p in prompts):
            for prompt in prompts:
                self.cache.record(len(prompt), 0)
            return None
        return [(entry, length, share) for (entry, length), share in zip(found, shared)]

    def _rows(self, prompts: list[list[int]], scopes: list[str], found, upto_last: bool) -> list[tuple]:
        """Each row's keys and values (of its whole prompt, or all but its last token) and last logits, read one by
        one on top of its cached prefix. A row that shares more with an earlier row of this batch reads on top of
        that row's tensors, kept in the cache for it: K samples of one prompt, a persona's judge requests, a
        lockstep group's common instructions are read once."""
        out = []
        for i, (scope, prompt) in enumerate(zip(scopes, prompts)):
            entry, reused, share = found[i]
            upto = len(prompt) if upto_last else len(prompt) - 1
            if share > reused:  # an earlier row of this batch, kept below, holds more of this prompt
                better, length = self.cache.match(scope, prompt, len(prompt) - 1)
                if length > reused:
                    entry, reused = better, length
            self.cache.record(len(prompt), reused)
            layers, last = self._extend(prompt, entry, reused, upto)
            if any(found[k][2] and scopes[k] == scope for k in range(i + 1, len(prompts))):
                self.cache.add(scope, prompt[:upto], layers)
            out.append((layers, last))
        return out

    def _extend(self, prompt: list[int], entry: PrefixEntry | None, reused: int, upto: int):
        """Keys and values of `prompt[:upto]` per layer (reusing the entry's first `reused`), and the last logits."""
        past = growing_cache(self.model.config, upto)  # the suffix is written after the prefix, not concatenated
        if reused:
            for layer, (k, v) in zip(past.layers, entry.layers):
                layer.update(k[:, :, :reused], v[:, :, :reused])
        logits = None
        if upto > reused:
            device = self.model.device
            ids = torch.tensor([prompt[reused:upto]], device=device)
            positions = torch.arange(reused, upto, device=device).unsqueeze(0)
            out = self.model(input_ids=ids, position_ids=positions, cache=past, use_cache=True,
                             **self.forward_kwargs)
            past, logits = out.cache, out.logits[:, -1, :]
        return [(layer.keys, layer.values) for layer in past.layers], logits

    def prefill_for_generate(self, prompts: list[list[int]], scopes: list[str], width: int,
                             new_tokens: int) -> dict:
        """`generate` keywords for the left-padded batch of `prompts` (padded to `width`), which may add up to
        `new_tokens`: a batched cache of every row but its last token when some row has a reusable prefix, else an
        empty one (the batch is read in full, as without the cache), both with room for the whole generation."""
        room = width + (new_tokens or 0)
        found = None if self.cache is None else self._lookup(prompts, scopes)
        if found is None:
            return {"cache": growing_cache(self.model.config, room)} if self.buffered else {}
        rows = [layers for layers, _ in self._rows(prompts, scopes, found, upto_last=False)]
        return {"cache": self._left_padded(rows, width - 1, room)}

    def _left_padded(self, rows: list[list[tuple]], width: int, room: int):
        """One cache holding each row's tensors right-aligned in `width` positions (zeros before), with room for
        `room` positions in all."""
        cache = growing_cache(self.model.config, room)
        for index, layer in enumerate(cache.layers):
            key, value = rows[0][index]
            keys = key.new_zeros((len(rows), key.shape[1], room, key.shape[3]))
            values = value.new_zeros((len(rows), value.shape[1], room, value.shape[3]))
            for row, row_layers in enumerate(rows):
                k, v = row_layers[index]
                keys[row, :, width - k.shape[2]:width] = k[0]
                values[row, :, width - v.shape[2]:width] = v[0]
            layer.seed(keys, values, width)
        return cache

    def last_logits(self, prompts: list[list[int]], scopes: list[str]) -> torch.Tensor | None:
        """Next-token logits of each prompt read on top of its cached prefix (its entry kept), or None when no row
        has one: the caller then reads the batch in one padded pass and hands its cache to `keep_prompts`."""
        if self.cache is None:
            return None
        found = self._lookup(prompts, scopes)
        if found is None:
            return None
        logits = []
        for scope, prompt, (layers, last) in zip(scopes, prompts, self._rows(prompts, scopes, found, upto_last=True)):
            self.cache.add(scope, prompt, layers)
            logits.append(last[0])
        return torch.stack(logits).float()

    # -- keeping what was computed -------------------------------------------------------------------------------
    def keep_generated(self, prompts: list[list[int]], scopes: list[str], sequences: torch.Tensor, width: int,
                       generated: list[int], cache) -> None:
        """Keep each row's prompt (left-padded to `width` in `sequences`) and its first `generated[i]` new tokens,
        as far as `cache` holds them (the last token drawn was never read back)."""
        if self.cache is None or cache is None:
            return
        held = cache.get_seq_length() - width
        for row, (scope, prompt) in enumerate(zip(scopes, prompts)):
            keep = max(0, min(generated[row], held))
            tokens = prompt + sequences[row, width:width + keep].tolist()
            self._keep_row(cache, row, width - len(prompt), width + keep, scope, tokens)

    def keep_prompts(self, prompts: list[list[int]], scopes: list[str], cache) -> None:
        """Keep each row's prompt from the cache of one left-padded pass over them."""
        if self.cache is None or cache is None:
            return
        width = cache.get_seq_length()
        for row, (scope, prompt) in enumerate(zip(scopes, prompts)):
            self._keep_row(cache, row, width - len(prompt), width, scope, list(prompt))

    def _keep_row(self, cache, row: int, start: int, end: int, scope: str, tokens: list[int]) -> None:
        layers = [(layer.keys[row:row + 1, :, start:end].clone(), layer.values[row:row + 1, :, start:end].clone())
                  for layer in cache.layers]
        self.cache.add(scope, tokens, layers)


__all__ = ["PrefixRows"]
