"""`aloe personas grow|overlap`: grow a persona pool by self-generation; compare two pools (closest pairs)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field


@dataclass
class OverlapConfig:
    """`aloe personas overlap`: the two pools and what counts as too close."""

    a: str = field(metadata={"positional": True,
                             "help": "Pool file (.jsonl) or folder of pools, or 'default' for the packaged eval set."})
    b: str = field(metadata={"positional": True,
                             "help": "Second pool file or folder, or 'seeds' for the packaged training seeds."})
    top: int = 10
    embedder: str | None = field(default=None, metadata={
        "help": "sentence-transformers model (default: bundled MiniLM)."})
    threshold: float = field(default=0.6, metadata={"help": "Exit 1 when any pair is above it."})


def register(sub) -> None:
    from aloe_bench.core.recipes import add_command_group, add_recipe_command
    from aloe_bench.training.persona_pools import GrowConfig

    actions = add_command_group(sub, "personas", "Persona pools: grow one by self-generation, compare two.",
                                metavar="ACTION")
    add_recipe_command(actions, "grow", [GrowConfig], _grow,
                       "Expand a profile or personality pool by self-generation with embedding de-duplication.")
    add_recipe_command(actions, "overlap", [OverlapConfig], _overlap,
                       "Closest pairs between two pools (e.g. eval vs training).")


def _grow(args) -> int:
    from aloe_bench.core.recipes import dataclass_from_args
    from aloe_bench.training.persona_pools import GrowConfig, grow_pool

    summary = grow_pool(dataclass_from_args(args, GrowConfig))
    summary.pop("config", None)
    print(json.dumps(summary, indent=2))
    return 0


def _resolve_pool(source: str, prefix: str):
    from aloe_bench.core.personas import packaged_data, read_pool
    from aloe_bench.training.persona_pools import read_any_pool

    if source == "default":
        return (read_pool(packaged_data("eval_profiles.jsonl"), "eval-profile:")
                + read_pool(packaged_data("eval_personalities.jsonl"), "eval-personality:"))
    if source == "seeds":
        return (read_pool(packaged_data("seed_profiles.jsonl"), "seed-profile:")
                + read_pool(packaged_data("seed_personalities.jsonl"), "seed-personality:"))
    return read_any_pool(source, prefix)


def _overlap(args) -> int:
    from aloe_bench.core.recipes import dataclass_from_args
    from aloe_bench.training.persona_pools import load_embedder, pool_overlap

    cfg = dataclass_from_args(args, OverlapConfig)
    a, b = _resolve_pool(cfg.a, "a:"), _resolve_pool(cfg.b, "b:")
    report = pool_overlap(a, b, load_embedder(cfg.embedder), top=cfg.top)
    report["threshold"] = cfg.threshold
    report["pairs_above_threshold"] = sum(p["similarity"] > cfg.threshold for p in report["closest_pairs"])
    print(json.dumps(report, indent=2, ensure_ascii=False))
    return 1 if report["max_similarity"] > cfg.threshold else 0
