"""`aloe generate`: the run that produces ALOE's preference conversations, resumable in one output folder.

Each persona pair (`persona_pairs`) is played turn by turn by five roles (`pair_conversation`) under the free or
lockstep schedule of `core.schedule`, and appended whole to `conversations.jsonl` when it ends
(`generated_files`): a re-run skips finished conversations, and a folder that holds a run with other settings is
refused. What each role does is in docs/training.md.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from aloe_bench.core.aio import run_sync
from aloe_bench.core.backends import ChatBackend
from aloe_bench.core.errors import ConfigError
from aloe_bench.core.io import append_jsonl, atomic_write_json, read_json
from aloe_bench.core.schedule import groups_of, run_each, run_turns

from .generate_config import ROLES, GenerateConfig
from .generated_files import CONVERSATIONS_FILE, META_FILE, count_conversations, load_finished
from .pair_conversation import ConversationGenerator, PairConversation
from .persona_pairs import persona_pairs, pool_provenance

PROMPT_NAMES = ("user_simulator", "induction", "responder_preferred", "responder_rejected", "pair_judge",
                "pair_judge_direct")


def build_backends(cfg: GenerateConfig, **remote_options) -> dict[str, ChatBackend]:
    """One backend per role (shared when roles name the same model); `remote_options` (e.g. `request_timeout_s`,
    `request_max_retries`) go to OpenAI-compatible backends only."""
    from aloe_bench.core.backends import BackendOptions, build_backend

    remote = dict(request_timeout_s=cfg.request_timeout_s, request_max_retries=cfg.request_max_retries)
    options = BackendOptions(api_key_env=cfg.api_key_env, **(remote | remote_options))
    return {role: build_backend(text, options, base_url=cfg.base_url) for role, text in cfg.role_specs().items()}


# Settings that change how a run is carried out, not what it produces: a resumed run may change them.
MACHINERY = ("output_dir", "progress", "cache", "group_size", "schedule", "n_conversations", "request_timeout_s",
             "request_max_retries")


def run_meta(cfg: GenerateConfig, backends: dict[str, ChatBackend], prompts) -> dict:
    return {
        "models": {role: backends[role].describe() for role in ROLES},
        "prompts": {"version": prompts.version, "sha256": prompts.hashes(list(PROMPT_NAMES))},
        "pools": {"profiles": pool_provenance(cfg.profiles, "seed_profiles.jsonl"),
                  "personalities": pool_provenance(cfg.personalities, "seed_personalities.jsonl")},
        "settings": {k: v for k, v in asdict(cfg).items() if k not in MACHINERY},
    }


def generate_conversations(cfg: GenerateConfig, backends: dict[str, ChatBackend] | None = None) -> dict:
    """Run (or resume) generation; returns counts. Refuses to mix runs with different settings in one folder."""
    from tqdm.auto import tqdm

    from aloe_bench.core.backends.cache import CachedBackend, RequestCache
    from aloe_bench.core.prompts import load_prompts

    prompts = load_prompts()
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    backends = backends or build_backends(cfg)
    meta = run_meta(cfg, backends, prompts)
    meta_path = out / META_FILE
    if meta_path.exists():
        before = read_json(meta_path)
        if {k: before.get(k) for k in ("prompts", "pools", "settings")} != {k: meta[k] for k in ("prompts", "pools",
                                                                                                   "settings")}:
            raise ConfigError(f"{out} holds a generation run with other settings, pools or prompts "
                             f"(see {meta_path}); use another --output_dir")
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
            "induction_parse": generator.induction_parse}


def _play(generator: ConversationGenerator, todo: list[PairConversation], cfg: GenerateConfig,
          write: Callable[[PairConversation], None], bar) -> None:
    """Play every conversation of `todo` under `cfg.schedule`, writing each whole when it ends.

    free: one task per conversation (core `run_each`); one that raises or is cancelled writes nothing (a re-run
    redoes it). lockstep: groups of `group_size`, turn by turn (core `run_turns`).
    """
    if cfg.schedule == "free":
        async def play_then_write(conv: PairConversation) -> None:
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
        bar.set_postfix(turn=f"{turn}/{cfg.turns}", **{f"{k}_fail": v for k, v in generator.failures.items() if v})

    run_turns(groups_of(todo, cfg.group_size), cfg.turns, play_turn, write_ended, on_turn=show_turn)
