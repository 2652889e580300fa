"""The ALOE evaluation loop of one `EvalRun` (settings resolved by `protocol.resolve_run`), under one of three
schedules (`EvalConfig.schedule`).

Per turn: the role-play user writes a message, the evaluated model answers, the judge scores the reply.
`free` (the default) runs every conversation as its own asyncio task (`aloe_bench.core.conversation`), with
each turn's judge off the critical path, over backends that batch single requests as they come; `lockstep` makes turn k of all
conversations one batched call per role; `sequential` runs one conversation at a time (the paper's loop).
Rows are appended to the samples log as each turn is judged, so a re-run resumes where the last one stopped.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass

from tqdm.auto import tqdm

from aloe_bench.core.aio import run_sync
from aloe_bench import __version__
from aloe_bench.core.backends import BackendOptions, build_backend
from aloe_bench.core.backends.cache import CachedBackend, RequestCache
from aloe_bench.core.conversation import ConversationRoles, ConversationState, TurnRecord, converse_all
from aloe_bench.core.errors import ConfigError
from aloe_bench.core.hidden_block import HiddenBlock, HiddenBlockBackend
from aloe_bench.core.judge import Judge
from aloe_bench.core.jury import Jury, Member
from aloe_bench.core.personas import Persona, PersonaSet, load_persona_set
from aloe_bench.core.prompts import load_prompts
from aloe_bench.core.recipes import dataclasses_from_keywords
from aloe_bench.core.run_identity import eval_identity
from aloe_bench.core.schedule import groups_of, run_turns
from aloe_bench.core.simulator import UserSimulator
from aloe_bench.core.specs import ModelSpec

from .eval_config import EvalConfig
from .protocol import EvalRun, resolve_run
from .results import (RunFiles, SampleWriter, add_lm_eval_keys, build_run_results, fingerprint, load_reveal_embedder,
                      package_versions)


@dataclass
class EvalRoles(ConversationRoles):
    """The roles of an evaluation run, plus the request cache their backends look up (None: no cache)."""

    cache: RequestCache | None = None

    @property
    def judges_in_background(self) -> bool:
        """Whether the lockstep and sequential schedules judge turn k in a worker thread while turn k+1 is
        simulated: only when some role waits on the network (local models would just contend for the CPU)."""
        return any(b.is_remote for b in self.backends())


def build_roles(run: EvalRun) -> EvalRoles:
    """The three roles of a run, each backend built with its role's options; backends are shared when two roles
    name the same model with the same options."""
    cfg, options = run.config, run.backend
    prompts = load_prompts()
    model = build_backend(cfg.model, options.for_role("model"), base_url=cfg.base_url, revision=cfg.revision)
    user_backend = build_backend(cfg.user_model, options.for_role("user"), base_url=cfg.user_base_url)
    user = UserSimulator(user_backend, run.user_generation, prompts)
    return EvalRoles(model, user, build_judges(run, prompts), run.reply_generation, None)


def build_judges(run: EvalRun, prompts=None, backends: list | None = None) -> Judge | Jury:
    """The run's judge: one `Judge`, or a `Jury` when the run names several judges or asks for samples.
    `backends` replaces the backends the judges' specs name (tests), one per judge."""
    prompts = prompts or load_prompts()
    judges = [Judge(backends[j.index - 1] if backends else build_backend(j.spec, j.options, base_url=j.base_url),
                    j.config, prompts) for j in run.judges]
    if not run.config.is_jury:
        return judges[0]
    return Jury([Member(j.index, j.spec, judge) for j, judge in zip(run.judges, judges)],
                run.config.jury_aggregate, run.config.judge_samples)


def with_cache(roles: EvalRoles, cache: RequestCache) -> EvalRoles:
    """The same roles with every backend looking requests up in `cache` first."""
    return EvalRoles(
        CachedBackend(roles.model, cache),
        UserSimulator(CachedBackend(roles.user.backend, cache), roles.user.config, roles.user.prompts,
                      roles.user.max_retries),
        roles.judge.with_backends(lambda backend: CachedBackend(backend, cache)),
        roles.reply_config,
        cache,
    )


def run_config(run: EvalRun, roles: EvalRoles, persona_set) -> dict:
    """The config block of a result file: everything needed to trace a number to its source."""
    prompts = load_prompts()
    return {
        "protocol": copy.deepcopy(run.settings["protocol"]),
        "run": copy.deepcopy(run.settings["run"]),
        "models": {
            "model": roles.model.describe(),
            "user_simulator": roles.user.describe(),
            "judge": roles.judge.describe(),
        },
        "reply_generation": roles.reply_config.to_dict(),
        "prompts": {"version": prompts.version, "sha256": prompts.hashes(
            ["user_simulator", *roles.judge.prompt_names])},
        "personas": {"name": persona_set.name, "source": persona_set.source, "sha256": persona_set.sha256[:16],
                     "count": len(persona_set)},
        "harness_version": __version__,
        "packages": package_versions(),
    }


def _resume(conversations: dict[str, ConversationState], rows: list[dict]) -> None:
    for row in sorted(rows, key=lambda r: (r["persona_id"], r["turn"])):
        conv = conversations.get(row["persona_id"])
        if conv is None or row["turn"] != conv.turns_done + 1:
            continue
        if row.get("user_message") is not None and row.get("reply") is not None:
            conv.history += [{"role": "user", "content": row["user_message"]},
                             {"role": "assistant", "content": row["reply"]}]
        else:
            conv.stopped = row.get("error") or "stopped"
        conv.turns_done = row["turn"]


class GeneratedTokens:
    """The tokens a run generated in this session (user messages, replies, judge answers); a cached answer costs
    none. Its total is the run's throughput."""

    def __init__(self):
        self.generated_tokens = 0

    def add(self, completion) -> int:
        tokens = 0 if completion.cached else completion.tokens
        self.generated_tokens += tokens
        return tokens


def _row(persona: Persona, record: TurnRecord, stats: GeneratedTokens) -> dict:
    """The sample row of one turn, with the judge's verdict (empty judge fields when the turn was not judged)."""
    user, reply, verdict = record.user, record.reply, record.verdict
    row = {"persona_id": persona.id, "profile_id": persona.profile_id,
           "personality_id": persona.personality_id, "turn": record.turn,
           "user_message": user.text if user.ok else None,
           "reply": reply.text if reply is not None and reply.ok else None,
           "latency_s": {"user": round(user.latency_s, 4),
                         "reply": round(reply.latency_s, 4) if reply is not None else None},
           "tokens": {"user": stats.add(user), "reply": stats.add(reply) if reply is not None else 0},
           "error": record.error,
           **({"reply_hidden": reply.hidden} if reply is not None and reply.hidden is not None else {}),
           "score": None, "judge_raw": None, "judge_distribution": None, "judge_error": None, "judge_attempts": 0}
    if verdict is not None:
        stats.generated_tokens += verdict.tokens
        row.update(verdict.row_fields())
        row["latency_s"]["judge"] = round(verdict.latency_s, 4)
    return row


def _step(group: list[ConversationState], turn: int, roles: EvalRoles, stats: GeneratedTokens):
    """Simulate one turn for `group` (lockstep, sequential); return a thunk that judges it and builds the rows."""
    active = [c for c in group if c.turns_done == turn - 1 and c.stopped is None]
    if not active:
        return lambda: []
    users = roles.user.next_messages([c.persona for c in active], [c.history for c in active])
    speaking = [(c, u) for c, u in zip(active, users) if u.ok]
    replies = roles.model.generate([c.request(u.text) for c, u in speaking], roles.reply_config)
    reply_of = {id(c): r for (c, _), r in zip(speaking, replies)}
    records = [(conv, conv.advance(turn, user, reply_of.get(id(conv)))) for conv, user in zip(active, users)]

    def judge_rows() -> list[dict]:
        scored = [(conv, record) for conv, record in records if record.error is None]
        verdicts = roles.judge.score([record.judge_item(conv.persona) for conv, record in scored])
        for (_, record), verdict in zip(scored, verdicts):
            record.verdict = verdict
        return [_row(conv.persona, record, stats) for conv, record in records]

    return judge_rows


def check_specs(run: EvalRun) -> None:
    """Raise for a model spec that cannot be parsed (or a folder that is not there) before personas, models or
    files are touched."""
    cfg = run.config
    for role, spec, base_url in (("model", cfg.model, cfg.base_url), ("user", cfg.user_model, cfg.user_base_url)):
        options = run.backend.for_role(role)
        ModelSpec.parse(spec, base_url=base_url, api_key_env=options.api_key_env, engine=options.engine)
    for judge in run.judges:
        ModelSpec.parse(judge.spec, base_url=judge.base_url, api_key_env=judge.options.api_key_env,
                        engine=judge.options.engine)


def evaluate_model(run: EvalRun, roles: EvalRoles | None = None, persona_set: PersonaSet | None = None, *,
                   repeat: dict | None = None) -> dict:
    """Run (or resume) the ALOE evaluation `run` (from `resolve_run`); write and return the results dict.

    `roles` replaces the backends `run` names (tests, benchmarks); `persona_set` replaces `run.config.personas`
    (the evaluate module passes the personas it was given); `repeat` is recorded as the results' `repeat` block
    (one of `aloe eval --repeats K`'s runs, `harness.repeats`).
    """
    cfg = run.config
    if cfg.repeats > 1 and repeat is None:
        raise ConfigError(f"repeats={cfg.repeats}: one run evaluates one seed; run the repeats with "
                          "harness.repeats.evaluate_repeats (what `aloe eval --repeats K` does)")
    if roles is None:
        check_specs(run)
    persona_set = persona_set or load_persona_set(cfg.personas, cfg.max_personalities)
    selected = persona_set.subset(cfg.max_personas or None)
    roles = roles or build_roles(run)
    config_block = run_config(run, roles, persona_set)
    files = RunFiles(cfg.output_dir, fingerprint(eval_identity(config_block)), roles.model.model_id)
    if cfg.cache and roles.cache is None:
        roles = with_cache(roles, RequestCache(files.cache_path))
    if cfg.reply_hidden_block:  # outside the request cache: a cached reply is cut the same way
        block = HiddenBlock.of_prompt(load_prompts()["profile_inference"])
        roles = dataclasses.replace(roles, model=HiddenBlockBackend(roles.model, block))

    conversations = {p.id: ConversationState(p) for p in selected}
    _resume(conversations, files.load_samples())
    stats = GeneratedTokens()
    total = len(conversations) * cfg.turns
    done = sum(min(c.turns_done, cfg.turns) if c.stopped is None else cfg.turns for c in conversations.values())
    began = time.perf_counter()
    bar = tqdm(total=total, initial=done, unit="turn", desc="ALOE", disable=not cfg.progress)
    try:
        if cfg.schedule == "free":
            writer = SampleWriter(files, on_written=lambda rows: bar.update(len(rows)))
            try:
                run_sync(converse_all(list(conversations.values()), cfg.turns, roles,
                                        lambda conv, record: writer.write([_row(conv.persona, record, stats)])))
            except BaseException:
                writer.close(raise_error=False)  # rows already judged still reach the log; the run's error wins
                raise
            writer.close()
        else:
            _run_groups(conversations, cfg, roles, stats, files, bar)
    finally:
        bar.close()
    wall = time.perf_counter() - began

    rows = files.load_samples()
    results = build_results(rows, selected, cfg, config_block, roles, files)
    results["throughput"] = {"wall_s": round(wall, 3), "generated_tokens": stats.generated_tokens,
                             "tokens_per_s": round(stats.generated_tokens / wall, 2) if wall > 0 else None}
    if roles.cache is not None:
        results["cache"] = {"hits": roles.cache.hits, "misses": roles.cache.misses}
    if repeat is not None:
        results["repeat"] = repeat
    files.write_results(results)
    results["results_file"] = str(files.results_path)  # for callers; not part of the file itself
    if cfg.push_to_hub:
        from .publish import push_results

        push_results(files, results, cfg.push_to_hub, public=cfg.public, create_pr=cfg.create_pr)
    return results


def _run_groups(conversations: dict[str, ConversationState], cfg: EvalConfig, roles: EvalRoles, stats: GeneratedTokens,
                files: RunFiles, bar) -> None:
    """The lockstep (one group of all) and sequential (groups of one) schedules, turn by turn (core `run_turns`).

    With a remote backend in play, judging turn k runs in a worker thread while turn k+1 is simulated.
    """
    states = list(conversations.values())
    run_turns([states] if cfg.schedule == "lockstep" else groups_of(states, 1), cfg.turns,
              lambda group, turn: _step(group, turn, roles, stats), lambda rows: _write(files, rows, bar),
              first_turn=lambda group: min((c.turns_done for c in group if c.stopped is None), default=cfg.turns) + 1,
              finish_in_background=roles.judges_in_background, on_turn=lambda turn: bar.set_postfix_str(f"turn {turn}/{cfg.turns}"))


def _write(files: RunFiles, rows: list[dict], bar) -> None:
    files.append_samples(rows)
    bar.update(len(rows))


def build_results(rows, persona_set, cfg: EvalConfig, config_block: dict, roles: EvalRoles, files: RunFiles) -> dict:
    """The results dict of an eval run over `persona_set` (the personas selected for it), from its sample `rows`.

    The metrics and counts come from the builder rescore shares (`results.build_run_results`); the lm-eval keys
    are added, and `config_block` records how many personas were evaluated.
    """
    ids = [p.id for p in persona_set]
    embedder = load_reveal_embedder() if cfg.simulator_reveal else None  # opt-in: it loads MiniLM
    results = build_run_results(rows, ids, cfg.turns, files=files, model=roles.model.model_id, judge=roles.judge,
                                config=config_block, bootstrap_resamples=cfg.bootstrap_resamples, seed=cfg.seed,
                                protocol=config_block["protocol"]["name"], personas=persona_set,
                                reveal_embedder=embedder)
    config_block["personas"]["evaluated"] = len(ids)  # the set's size is `count`; this is what was scored
    return add_lm_eval_keys(results)


def evaluate_personas(profiles: list[str], personalities: list[str], **settings) -> dict:
    """Evaluate explicit (profile, personality) pairs; `settings` are `EvalConfig` and `BackendOptions` fields."""
    if len(profiles) != len(personalities):
        raise ValueError(f"got {len(profiles)} profiles but {len(personalities)} personalities")
    personas = tuple(Persona(f"persona{i:03d}", p, q) for i, (p, q) in enumerate(zip(profiles, personalities), 1))
    cfg, options = dataclasses_from_keywords({"personas": "inline", **settings}, EvalConfig, BackendOptions)
    return evaluate_model(resolve_run(cfg, options), persona_set=PersonaSet("inline", personas, "inline"))
