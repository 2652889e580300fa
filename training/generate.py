"""`aloe generate`: the run that produces ALOE's preference conversations, resumable in one output folder.

Each persona pair (`persona_pairs`) is played turn by turn by five roles (`pair_conversation`) under the free or
lockstep schedule of `core.schedule`, and appended whole to `conversations.jsonl` when it ends
(`generated_files`): a re-run skips finished conversations, and a folder that holds a run with other settings is
refused. What each role does is in docs/training.md.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

from aloe_bench.core.aio import run_sync
from aloe_bench.core.backends import BackendOptions, ChatBackend
from aloe_bench.core.backends.prefix_cache import conversation_scope
from aloe_bench.core.errors import ConfigError
from aloe_bench.core.io import append_jsonl, atomic_write_json, read_json
from aloe_bench.core.run_identity import differing, generate_identity
from aloe_bench.core.schedule import groups_of, run_each, run_turns

from .generate_config import ROLES, GenerateConfig
from .generated_files import CONVERSATIONS_FILE, META_FILE, count_conversations, load_finished
from .pair_conversation import ConversationGenerator, PairConversation
from .persona_pairs import persona_pairs, pool_provenance

PROMPT_NAMES = ("user_simulator", "induction", "responder_preferred", "responder_rejected", "pair_judge",
                "pair_judge_direct")


def build_backends(cfg: GenerateConfig, options: BackendOptions | None = None) -> dict[str, ChatBackend]:
    """One backend per role, built with that role's options (shared when roles name the same model)."""
    from aloe_bench.core.backends import build_backend

    options = options or BackendOptions()
    options.check_roles(ROLES)
    return {role: build_backend(text, options.for_role(role), base_url=cfg.base_url)
            for role, text in cfg.role_specs().items()}


def run_meta(cfg: GenerateConfig, options: BackendOptions, backends: dict[str, ChatBackend], prompts) -> dict:
    """`generation.json`: the models, prompts and pools of the run, and its identity settings
    (`core.run_identity.GENERATE_SETTINGS`), which a resumed run must repeat."""
    return {
        "models": {role: backends[role].describe() for role in ROLES},
        "prompts": {"version": prompts.version, "sha256": prompts.hashes(list(PROMPT_NAMES))},
        "pools": {"profiles": pool_provenance(cfg.profiles, "seed_profiles.jsonl"),
                  "personalities": pool_provenance(cfg.personalities, "seed_personalities.jsonl")},
        "settings": generate_identity(asdict(options) | asdict(cfg)),
    }


def recorded_settings(meta: dict) -> dict:
    """A folder's recorded settings; one from before `pair_order` existed judged pairs once."""
    return {"pair_order": "once", **(meta.get("settings") or {})}


def resolve_pair_order(cfg: GenerateConfig, before: dict | None) -> GenerateConfig:
    """`cfg` with its pair order settled: as given, else the folder's recorded one, else `both` (a new run)."""
    if cfg.pair_order is not None:
        return cfg
    return replace(cfg, pair_order=recorded_settings(before)["pair_order"] if before else "both")


def generate_conversations(cfg: GenerateConfig, backends: dict[str, ChatBackend] | None = None,
                           options: BackendOptions | None = None) -> dict:
    """Run (or resume) generation; returns counts. Refuses to mix runs with different settings in one folder.

    `backends` replaces the ones `cfg` names (tests); `options` builds them otherwise.
    """
    from tqdm.auto import tqdm

    from aloe_bench.core.backends.cache import CachedBackend, RequestCache
    from aloe_bench.core.prompts import load_prompts

    prompts = load_prompts()
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta_path = out / META_FILE
    before = read_json(meta_path) if meta_path.exists() else None
    cfg = resolve_pair_order(cfg, before)
    options = options or BackendOptions()
    backends = backends or build_backends(cfg, options)
    meta = run_meta(cfg, options, backends, prompts)
    if before is not None:
        changed = differing({k: before.get(k) for k in ("prompts", "pools")}, {k: meta[k] for k in ("prompts", "pools")})
        changed += differing(recorded_settings(before), meta["settings"])
        if changed:
            raise ConfigError(f"{out} holds a generation run with other settings, pools or prompts "
                              f"({', '.join(changed)} differ; see {meta_path}); use another --output_dir")
    atomic_write_json(meta_path, {**meta, "status": "running"})
    cache = RequestCache(out / "cache.sqlite") if cfg.cache else None
    if cache is not None:
        backends = {role: CachedBackend(b, cache) for role, b in backends.items()}
    generator = ConversationGenerator(cfg, backends, prompts)
    conv_path = out / CONVERSATIONS_FILE
    finished = load_finished(conv_path)
    todo = [PairConversation(i, p, cfg.seed * 1_000_003 + i) for i, p in enumerate(persona_pairs(cfg), start=1)]
    todo = [c for c in todo if c.id not in finished]
    models_json = json.dumps(cfg.role_specs(), sort_keys=True)
    prompts_json = json.dumps(meta["prompts"]["sha256"], sort_keys=True)
    bar = tqdm(total=cfg.n_conversations, initial=cfg.n_conversations - len(todo), unit="conv", desc="generate",
               disable=not cfg.progress)

    def write(conv: PairConversation) -> None:
        record = conv.to_record(models_json, prompts_json)
        append_jsonl(conv_path, [record])
        finished[conv.id] = record
        bar.update(1)

    try:
        _play(generator, todo, cfg, write, bar)
    finally:
        bar.close()
    counts = count_conversations(finished.values())
    if cache is not None:
        counts["cache"] = {"hits": cache.hits, "misses": cache.misses}
        cache.close()
    meta["resolved"] = {"judge_scoring": generator.judge_scoring, "induction_parse": generator.induction_parse}
    atomic_write_json(meta_path, {**meta, "status": "finished", "counts": counts})
    return {**counts, "conversations_file": str(conv_path), "judge_scoring": generator.judge_scoring,
            "induction_parse": generator.induction_parse, "pair_order": cfg.pair_order}


def _play(generator: ConversationGenerator, todo: list[PairConversation], cfg: GenerateConfig,
          write: Callable[[PairConversation], None], bar) -> None:
    """Play every conversation of `todo` under `cfg.schedule`, writing each whole when it ends.

    free: one task per conversation (core `run_each`); one that raises or is cancelled writes nothing (a re-run
    redoes it). lockstep: groups of `group_size`, turn by turn (core `run_turns`).

    Prompt-prefix cache scopes (`core/backends/prefix_cache.py`), as `aloe eval` has them: under free each
    conversation reads and leaves entries in a scope of its own, released on every backend when it ends however it
    ends; under lockstep a group's batched calls share the group's scope, released when the group is done.
    """
    backends = list({id(b): b for b in generator.backends.values()}.values())
    if cfg.schedule == "free":
        async def play_then_write(conv: PairConversation) -> None:
            with conversation_scope(backends, "generate"):
                await generator.converse(conv, cfg.turns)
            write(conv)

        run_sync(run_each((play_then_write(conv) for conv in todo), generator.backends.values()))
        return

    def play_turn(group: list[PairConversation], turn: int) -> Callable[[], list[PairConversation]]:
        playing = [conv for conv in group if not conv.ended(cfg.turns)]
        generator.step(group, turn)
        return lambda: [conv for conv in playing if conv.ended(cfg.turns)]

    def write_ended(ended: list[PairConversation]) -> None:
        for conv in ended:
            write(conv)

    def show_turn(turn: int) -> None:
        ties = {"order_ties": generator.order_ties} if generator.order_ties else {}
        bar.set_postfix(turn=f"{turn}/{cfg.turns}", **{f"{k}_fail": v for k, v in generator.failures.items() if v},
                        **ties)

    run_turns(groups_of(todo, cfg.group_size), cfg.turns, play_turn, write_ended, on_turn=show_turn,
              backends=backends)
