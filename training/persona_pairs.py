"""Which personas `aloe generate` talks as: (profile, personality) pairs drawn from two pools, and where the pools
came from (recorded in `generation.json`, so a dataset can be traced to the pools that made it)."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

from aloe_bench.core.errors import ConfigError
from aloe_bench.core.io import read_json
from aloe_bench.core.personas import Persona, PoolItem, packaged_data, read_pool

from .generate_config import GenerateConfig

PROFILE_SEEDS = "seed_profiles.jsonl"
PERSONALITY_SEEDS = "seed_personalities.jsonl"


def _read_pool_or_seeds(path: str | None, seeds: str) -> tuple[list[PoolItem], str]:
    """The pool at `path`, or the packaged seed pool `seeds` when no path is given; with the file read."""
    source = Path(path) if path else packaged_data(seeds)
    return read_pool(source, "profile" if "profile" in seeds else "personality"), str(source)


def persona_pairs(cfg: GenerateConfig) -> list[Persona]:
    """`n_conversations` distinct (profile, personality) pairs; a larger n extends the same list (prefix-stable)."""
    profiles, _ = _read_pool_or_seeds(cfg.profiles, PROFILE_SEEDS)
    personalities, _ = _read_pool_or_seeds(cfg.personalities, PERSONALITY_SEEDS)
    pairs = [(p, q) for p in profiles for q in personalities]
    if cfg.n_conversations > len(pairs):
        raise ConfigError(f"asked for {cfg.n_conversations} conversations but the pools make only {len(pairs)} pairs")
    random.Random(cfg.seed).shuffle(pairs)
    return [Persona(f"{p.id}__{q.id}", p.text, q.text, p.id, q.id) for p, q in pairs[:cfg.n_conversations]]


def pool_provenance(path: str | None, default: str) -> dict:
    """Where a pool came from; a grown pool's `<name>_meta.json` (threshold, embedder, generator) is copied in."""
    items, source = _read_pool_or_seeds(path, default)
    info = {"source": source if path else f"packaged:{default}", "items": len(items),
            "sha256": hashlib.sha256(Path(source).read_bytes()).hexdigest()[:16]}
    meta = Path(source).with_name(Path(source).name.removesuffix(".jsonl") + "_meta.json")
    if path and meta.exists():
        grown = read_json(meta)
        info["grown"] = {k: grown.get(k) for k in ("generator", "embedder", "threshold", "rounds", "kept",
                                                   "rejected", "seeds", "prompt_sha256")}
    return info
