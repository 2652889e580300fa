"""`aloe bench personas`: de-duplicating candidates against a pool by embedding every text once and taking one
matrix product, against the paper's way of encoding both texts anew for every pair (timed on a sample)."""

from __future__ import annotations

import random
import re
import time

from aloe_bench.core.personas import packaged_data, read_pool
from aloe_bench.training.persona_pools import embed, load_embedder, select_novel


def bench_texts(n: int, seed: int) -> list[str]:
    """`n` distinct persona-like texts made from sentences of the packaged pools (no network, no model)."""
    sentences = []
    for name in ("seed_profiles.jsonl", "seed_personalities.jsonl", "eval_profiles.jsonl", "eval_personalities.jsonl"):
        for item in read_pool(packaged_data(name), "x"):
            sentences += [s.strip() for s in re.split(r"(?<=[.!?])\s+", item.text) if len(s.strip()) > 20]
    rng = random.Random(seed)
    texts, seen = [], set()
    while len(texts) < n:
        text = " ".join(rng.sample(sentences, 2))
        if text not in seen:
            seen.add(text)
            texts.append(text)
    return texts


def bench_dedup(n_candidates: int = 100, pool_size: int = 100, naive_pairs: int = 200, threshold: float = 0.6,
                embedder=None, seed: int = 0) -> dict:
    """Time both ways of deciding which candidates to keep on the same texts; the naive loop is sampled."""
    import torch

    embedder = embedder or load_embedder()
    texts = bench_texts(n_candidates + pool_size, seed)
    pool, candidates = texts[:pool_size], texts[pool_size:]
    embed(embedder, texts[:8])  # warm-up so neither side pays first-call costs

    began = time.perf_counter()
    pool_emb, cand_emb = embed(embedder, pool), embed(embedder, candidates)
    decisions = select_novel(candidates, cand_emb, [f"p{i}" for i in range(pool_size)], pool_emb, threshold)
    fast_s = time.perf_counter() - began

    all_pairs = [(i, j) for i in range(n_candidates) for j in range(pool_size)]
    rng = random.Random(seed)
    sample = all_pairs if naive_pairs >= len(all_pairs) else rng.sample(all_pairs, naive_pairs)
    max_gap = 0.0
    began = time.perf_counter()
    for i, j in sample:  # the paper's way: encode both texts anew for every pair
        a = embedder.encode(candidates[i], convert_to_tensor=True)
        b = embedder.encode(pool[j], convert_to_tensor=True)
        naive = float(torch.nn.functional.cosine_similarity(a, b, dim=0))
        max_gap = max(max_gap, abs(naive - float(cand_emb[i] @ pool_emb[j])))
    sampled_s = time.perf_counter() - began
    naive_s = sampled_s * len(all_pairs) / len(sample)
    return {
        "candidates": n_candidates, "pool": pool_size, "pairs": len(all_pairs),
        "embedder": getattr(embedder, "aloe_name", "sentence-transformers"),
        "fast_s": round(fast_s, 4),
        "naive_s": round(naive_s, 2),
        "naive_pairs_timed": len(sample),
        "naive_timed_s": round(sampled_s, 3),
        "naive_extrapolated": len(sample) < len(all_pairs),
        "speedup": round(naive_s / fast_s, 1),
        "max_abs_similarity_difference": round(max_gap, 6),
        "kept_by_fast": sum(d.kept for d in decisions),
        "threshold": threshold,
        "torch_threads": torch.get_num_threads(),
    }
