"""Tree-structured preference conversations: the multi-LLM collaboration that produces ALOE training data.

Per turn of each conversation (its own asyncio task under the free schedule, or a lockstep group with one
batched call per role):
role-play user message -> induction of what the user revealed so far -> a preferred responder that
sees those facts and a rejected responder that does not -> a pair judge with the full persona picks
the better reply (shown in a random, recorded order) -> one of the two, at random, continues.
Each finished conversation is appended to `conversations.jsonl` at once; a re-run skips finished ids.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from aloe_bench.core.aio import run_sync
from aloe_bench.core.backends import BackendOptions, ChatBackend, GenerationConfig
from aloe_bench.core.conversation import run_each
from aloe_bench.core.errors import ConfigError
from aloe_bench.core.io import append_jsonl, atomic_write_json, read_json, repair_tail
from aloe_bench.core.judge import auto_scoring, format_history
from aloe_bench.core.personas import Persona, PersonaFileError, PoolItem, packaged_data, read_jsonl, read_pool
from aloe_bench.core.reask import Reasker
from aloe_bench.core.run_identity import differing, generate_identity

ROLES = ("user", "induction", "preferred", "rejected", "judge")
PROMPT_NAMES = ("user_simulator", "induction", "responder_preferred", "responder_rejected", "pair_judge",
                "pair_judge_direct")
CONVERSATIONS_FILE = "conversations.jsonl"
META_FILE = "generation.json"
_INDUCED = re.compile(r"^\W*(profile|personality)\W*:\W*?\s*(\w.*|)$", re.IGNORECASE)


@dataclass
class GenerateConfig:
    """One generation run; re-running the same command resumes it (finished conversations are skipped).

    How its backends are built (API key variable, timeouts, engine, ...) is `BackendOptions`, parsed beside it.
    """

    output_dir: str = field(default="data/generated", metadata={"help": "Holds conversations.jsonl, generation.json, cache."})
    profiles: str | None = field(default=None, metadata={"help": "Profile pool file (default: packaged seeds)."})
    personalities: str | None = field(default=None, metadata={"help": "Personality pool file (default: packaged seeds)."})
    n_conversations: int = field(default=8, metadata={"help": "Persona pairs (one conversation each)."})
    turns: int = field(default=10, metadata={"help": "Turns per conversation (1-10)."})
    user_model: str = field(default="embedded", metadata={"help": "Role-play user spec."})
    induction_model: str = field(default="embedded", metadata={"help": "Induction (revealed facts) spec."})
    preferred_model: str = field(default="embedded", metadata={"help": "Preferred responder spec."})
    rejected_model: str = field(default="embedded", metadata={"help": "Rejected responder spec."})
    judge_model: str = field(default="embedded", metadata={"help": "Pair judge spec."})
    base_url: str | None = field(default=None, metadata={"help": "OpenAI-compatible base URL for openai: specs."})
    judge_scoring: str = field(default="auto", metadata={
        "help": "auto | text ([[A]]/[[B]] answer) | logprobs (P(A) vs P(B)); auto = logprobs for embedded."})
    induction_parse: str = field(default="auto", metadata={
        "help": "strict (needs Profile:/Personality: lines) | lenient (an unlabelled answer counts as profile facts, "
                "flagged per turn) | auto = lenient for embedded, strict otherwise."})
    max_retries: int = field(default=2, metadata={"help": "Retries of a failed or unparsable step."})
    retry_temperature: float = field(default=0.7, metadata={"help": "Temperature of retries."})
    user_max_new_tokens: int = field(default=64, metadata={"help": "Max new tokens of the user simulator."})
    induction_max_new_tokens: int = field(default=96, metadata={"help": "Max new tokens of the induction."})
    reply_max_new_tokens: int = field(default=96, metadata={"help": "Max new tokens of each responder."})
    judge_max_new_tokens: int = field(default=128, metadata={"help": "Max new tokens of the pair judge (text)."})
    user_temperature: float = field(default=0.7, metadata={"help": "User simulator temperature."})
    temperature: float = field(default=0.0, metadata={"help": "Induction, responder and judge temperature."})
    group_size: int = field(default=16, metadata={"help": "lockstep: conversations in flight at once (one batch per role)."})
    schedule: str = field(default="free", metadata={
        "help": "free (every conversation its own task, pair judge off the critical path) or lockstep (group_size "
                "conversations turn by turn, one batched call per role)."})
    seed: int = field(default=0, metadata={"help": "Seed of pair sampling, judge order and continuation."})
    cache: bool = field(default=True, metadata={"help": "Keep a request cache in output_dir (repeats are free)."})
    progress: bool = field(default=True, metadata={"help": "Show a progress bar."})

    def __post_init__(self):
        if not 1 <= self.turns <= 10:
            raise ConfigError(f"turns must be between 1 and 10, got {self.turns}")
        if self.n_conversations < 1 or self.group_size < 1:
            raise ConfigError("n_conversations and group_size must be >= 1")
        if self.schedule not in ("free", "lockstep"):
            raise ConfigError(f"schedule must be free or lockstep, got {self.schedule!r}")
        if self.induction_parse not in ("auto", "strict", "lenient"):
            raise ConfigError(f"induction_parse {self.induction_parse!r}: choose auto, strict or lenient")
        if self.judge_scoring not in ("auto", "text", "logprobs"):
            raise ConfigError(f"judge_scoring {self.judge_scoring!r}: choose auto, text or logprobs")

    def role_specs(self) -> dict[str, str]:
        return {role: getattr(self, f"{role}_model") for role in ROLES}


# ---------------------------------------------------------------------------------------------------
# Persona pairs
# ---------------------------------------------------------------------------------------------------
def _pool(path: str | None, default: str) -> tuple[list[PoolItem], str]:
    source = Path(path) if path else packaged_data(default)
    return read_pool(source, "profile" if "profile" in default else "personality"), str(source)


def persona_pairs(cfg: GenerateConfig) -> list[Persona]:
    """`n_conversations` distinct (profile, personality) pairs; a larger n extends the same list (prefix-stable)."""
    profiles, _ = _pool(cfg.profiles, "seed_profiles.jsonl")
    personalities, _ = _pool(cfg.personalities, "seed_personalities.jsonl")
    pairs = [(p, q) for p in profiles for q in personalities]
    if cfg.n_conversations > len(pairs):
        raise ConfigError(f"asked for {cfg.n_conversations} conversations but the pools make only {len(pairs)} pairs")
    random.Random(cfg.seed).shuffle(pairs)
    return [Persona(f"{p.id}__{q.id}", p.text, q.text, p.id, q.id) for p, q in pairs[:cfg.n_conversations]]


def pool_provenance(path: str | None, default: str) -> dict:
    """Where a pool came from; a grown pool's `<name>_meta.json` (threshold, embedder, generator) is copied in."""
    items, source = _pool(path, default)
    info = {"source": source if path else f"packaged:{default}", "items": len(items),
            "sha256": hashlib.sha256(Path(source).read_bytes()).hexdigest()[:16]}
    meta = Path(source).with_name(Path(source).name.removesuffix(".jsonl") + "_meta.json")
    if path and meta.exists():
        grown = read_json(meta)
        info["grown"] = {k: grown.get(k) for k in ("generator", "embedder", "threshold", "rounds", "kept",
                                                   "rejected", "seeds", "prompt_sha256")}
    return info


# ---------------------------------------------------------------------------------------------------
# Steps
# ---------------------------------------------------------------------------------------------------
def generate_with_retries(backend: ChatBackend, requests: list[list[dict]], config: GenerationConfig,
                          max_retries: int, retry_temperature: float, parse=lambda text: text.strip() or None):
    """Generate, parse, and re-ask (see `core.reask`) for failed or unparsable answers.

    Returns `(value, raw_text, attempts, error)` per request; `value` is None exactly when `error` is set.
    """
    return [a.as_tuple() for a in Reasker(max_retries, retry_temperature).ask(backend, requests, config, parse)]


async def agenerate_with_retries(backend: ChatBackend, request: list[dict], config: GenerationConfig,
                                 max_retries: int, retry_temperature: float, parse=lambda text: text.strip() or None):
    """`generate_with_retries` for one request, awaitable: the same seeds, retries and result tuple."""
    return (await Reasker(max_retries, retry_temperature).aask(backend, request, config, parse)).as_tuple()


def parse_induction(text: str) -> tuple[str, str] | None:
    """`Profile: ...` and `Personality: ...` lines -> (profile facts, personality traits); None if either is missing."""
    found: dict[str, str] = {}
    for line in (text or "").splitlines():
        match = _INDUCED.match(line.strip())
        if match and match.group(1).lower() not in found:
            found[match.group(1).lower()] = match.group(2).strip().strip("<>").strip() or "None"
    if "profile" not in found or "personality" not in found:
        return None
    return found["profile"], found["personality"]


def parse_induction_strict(text: str) -> tuple[str, str, bool] | None:
    """`parse_induction` in the shape the generator stores (the flag says the labels were missing: never here)."""
    parsed = parse_induction(text)
    return None if parsed is None else (*parsed, False)


def parse_induction_lenient(text: str) -> tuple[str, str, bool] | None:
    """Like `parse_induction`, but an answer without the labels becomes the profile facts (flagged `True`)."""
    parsed = parse_induction(text)
    if parsed is not None:
        return (*parsed, False)
    cleaned = re.sub(r"\s+", " ", text or "").strip()
    return (cleaned[:400], "None", True) if cleaned else None


def induction_messages(prompts, persona: Persona, history: list[dict]) -> list[dict]:
    """The induction role sees the whole persona and the conversation, and says which parts have been revealed."""
    prompt = prompts["induction"]
    return [{"role": "system", "content": prompt["system"]},
            {"role": "user", "content": prompt.render("user", profile=persona.profile, personality=persona.personality,
                                                      history=format_history(history))}]


def responder_messages(prompts, history: list[dict], revealed: list[tuple[str, str]] | None) -> list[dict]:
    """A responder's request: its system message, then the conversation ending on the user's new message.

    The rejected responder (`revealed` None) sees the conversation as it is. The preferred one gets, after each
    user message, a note of the facts revealed up to that message (`revealed`: one (profile, personality) pair
    per user message, oldest first): earlier notes stay as they were, so each turn's request starts with the
    previous turn's (servers with prefix caching reuse it) and the newest note is the induction's latest answer.
    """
    if revealed is None:
        return [{"role": "system", "content": prompts["responder_rejected"]["system"]}, *history]
    prompt = prompts["responder_preferred"]
    users = [i for i, m in enumerate(history) if m["role"] == "user"]
    if len(revealed) != len(users):
        raise ValueError(f"{len(revealed)} revealed-fact notes for {len(users)} user messages")
    note_of = dict(zip(users, revealed))
    messages = [{"role": "system", "content": prompt["system"]}]
    for i, message in enumerate(history):
        if i in note_of:
            profile, personality = note_of[i]
            message = {"role": "user", "content": prompt.render("note", message=message["content"],
                                                                revealed_profile=profile,
                                                                revealed_personality=personality)}
        messages.append(message)
    return messages


def revealed_so_far(conv: "PairConversation", latest: tuple[str, str]) -> list[tuple[str, str]]:
    """The revealed facts after each user message of `conv` so far, then `latest` (this turn's induction)."""
    return [(t["revealed_profile"], t["revealed_personality"]) for t in conv.turns] + [latest[:2]]


def pair_judge_messages(prompt, persona: Persona, message: str, reply_a: str, reply_b: str) -> list[dict]:
    values = dict(profile=persona.profile, personality=persona.personality, message=message,
                  reply_a=reply_a, reply_b=reply_b)
    return [{"role": "system", "content": prompt["system"]}, {"role": "user", "content": prompt.render("user", **values)}]


@dataclass
class PairConversation:
    """One generated conversation: a persona pair's turns, each with a preferred and a rejected reply."""

    index: int
    persona: Persona
    seed: int
    history: list[dict] = field(default_factory=list)
    turns: list[dict] = field(default_factory=list)
    error: str | None = None

    @property
    def id(self) -> str:
        return f"conv-{self.index:05d}"

    def rng(self, turn: int) -> random.Random:
        return random.Random(f"{self.seed}:{turn}")


class Generator:
    """Holds one backend per role (shared when two roles name the same model); runs lockstep turns (`step`)
    or one conversation as its own task (`converse`)."""

    def __init__(self, cfg: GenerateConfig, backends: dict[str, ChatBackend], prompts=None):
        from aloe_bench.core.prompts import load_prompts
        from aloe_bench.core.simulator import UserSimulator

        self.cfg = cfg
        self.backends = backends
        self.prompts = prompts or load_prompts()
        self.user = UserSimulator(backends["user"], GenerationConfig(cfg.user_max_new_tokens, cfg.user_temperature,
                                                                     seed=cfg.seed), self.prompts, cfg.max_retries)
        scoring = cfg.judge_scoring
        if scoring == "auto":
            scoring = auto_scoring(backends["judge"].spec.kind)  # the pair judge's direct prompt answers "A"/"B"
        self.judge_scoring = scoring
        lenient = cfg.induction_parse == "lenient" or (
            cfg.induction_parse == "auto" and backends["induction"].spec.kind == "embedded")
        self.induction_parse = "lenient" if lenient else "strict"
        self._parse_induction = parse_induction_lenient if lenient else parse_induction_strict
        self.judge_prompt = self.prompts["pair_judge_direct" if scoring == "logprobs" else "pair_judge"]
        self.failures = {"user": 0, "induction": 0, "preferred": 0, "rejected": 0, "judge": 0}

    def _config(self, tokens: int, turn: int) -> GenerationConfig:
        return GenerationConfig(tokens, self.cfg.temperature, seed=self.cfg.seed * 1000 + turn)

    def _retry(self, role: str, requests, config, parse=lambda text: text.strip() or None):
        return generate_with_retries(self.backends[role], requests, config, self.cfg.max_retries,
                                     self.cfg.retry_temperature, parse)

    def _user_config(self, turn: int) -> GenerationConfig:
        return replace(self.user.config, seed=self.cfg.seed * 1000 + turn)

    def _judge_config(self, turn: int) -> GenerationConfig:
        return GenerationConfig(self.cfg.judge_max_new_tokens, self.cfg.temperature, seed=self.cfg.seed * 1000 + turn)

    def _user_ok(self, conv: PairConversation, turn: int, completion) -> bool:
        if not completion.ok:
            self.failures["user"] += 1
            conv.error = f"turn {turn}: user simulator: {completion.error}"
        return completion.ok

    def _induction_ok(self, conv: PairConversation, turn: int, ind) -> bool:
        if ind[3] is not None:
            self.failures["induction"] += 1
            last = (ind[1] or "")[:200]
            conv.error = f"turn {turn}: induction: {ind[3]} after {ind[2]} attempts (last answer: {last!r})"
        return ind[3] is None

    def _responders_ok(self, conv: PairConversation, turn: int, pref, rej) -> bool:
        failed = [(name, r) for name, r in (("preferred", pref), ("rejected", rej)) if r[3] is not None]
        for name, _ in failed:
            self.failures[name] += 1
        if failed:
            conv.error = "; ".join(f"turn {turn}: {n} responder: {r[3]} after {r[2]} attempts" for n, r in failed)
        return not failed

    def _continue(self, conv: PairConversation, turn: int, message: str, ind, pref: str, rej: str) -> dict:
        """Record the turn (judge fields still empty) and continue with one of the two replies, at random.

        The continuation does not depend on the judge, so the judge can run off the critical path."""
        rng = conv.rng(turn)
        position = rng.choice("AB")
        continued = rng.choice(("preferred", "rejected"))
        record = {
            "turn": turn, "user_message": message, "revealed_profile": ind[0][0],
            "revealed_personality": ind[0][1], "preferred": pref, "rejected": rej,
            "judge_choice": None, "judge_raw": None, "continued_with": continued,
            "preferred_position": position, "error": None,
            "induction_raw": ind[1], "induction_unlabelled": ind[0][2], "attempts": {"induction": ind[2], "judge": 0},
        }
        conv.turns.append(record)
        reply = pref if continued == "preferred" else rej
        conv.history += [{"role": "user", "content": message}, {"role": "assistant", "content": reply}]
        return record

    def _judged(self, record: dict, verdict: tuple) -> None:
        choice, raw, attempts, error = verdict
        if error is not None:
            self.failures["judge"] += 1
        record.update(judge_choice=choice, judge_raw=raw, attempts={**record["attempts"], "judge": attempts},
                      error=None if error is None else f"pair judge: {error} after {attempts} attempts")

    def _judge_request(self, conv: PairConversation, record: dict) -> tuple[list[dict], dict]:
        pref, rej, position = record["preferred"], record["rejected"], record["preferred_position"]
        a, b = (pref, rej) if position == "A" else (rej, pref)
        labels = {"A": "preferred" if position == "A" else "rejected",
                  "B": "rejected" if position == "A" else "preferred"}
        return pair_judge_messages(self.judge_prompt, conv.persona, record["user_message"], a, b), labels

    @staticmethod
    def _from_scores(labels: dict, s) -> tuple:
        if s.error:
            return (None, None, 1, f"backend: {s.error}")
        if s.probs["A"] == s.probs["B"]:
            return (None, json.dumps(s.probs), 1, "tie between A and B")
        letter = "A" if s.probs["A"] > s.probs["B"] else "B"
        return (labels[letter], json.dumps({"probs": s.probs, "mass": s.mass}), 1, None)

    def _parse_letter(self, text):
        found = re.findall(self.judge_prompt["score_pattern"], text or "")
        return found[-1] if found else None

    def step(self, group: list[PairConversation], turn: int) -> None:
        """Advance every live conversation of `group` by one turn (one batched call per role: lockstep)."""
        live = [c for c in group if c.error is None and len(c.turns) == turn - 1]
        if not live:
            return
        saved, self.user.config = self.user.config, self._user_config(turn)
        try:
            users = self.user.next_messages([c.persona for c in live], [c.history for c in live])
        finally:
            self.user.config = saved
        speaking = [(conv, u.text) for conv, u in zip(live, users) if self._user_ok(conv, turn, u)]
        if not speaking:
            return
        asked = [c.history + [{"role": "user", "content": m}] for c, m in speaking]
        induced = self._retry("induction", [induction_messages(self.prompts, c.persona, h)
                                            for (c, _), h in zip(speaking, asked)],
                              self._config(self.cfg.induction_max_new_tokens, turn), self._parse_induction)
        ready = [(conv, message, history, ind) for (conv, message), history, ind in zip(speaking, asked, induced)
                 if self._induction_ok(conv, turn, ind)]
        reply_config = self._config(self.cfg.reply_max_new_tokens, turn)
        preferred = self._retry("preferred", [responder_messages(self.prompts, h, revealed_so_far(c, ind[0]))
                                              for c, _, h, ind in ready], reply_config)
        rejected = self._retry("rejected", [responder_messages(self.prompts, h, None) for _, _, h, _ in ready],
                               reply_config)
        records = [(conv, self._continue(conv, turn, message, ind, pref[0], rej[0]))
                   for (conv, message, _, ind), pref, rej in zip(ready, preferred, rejected)
                   if self._responders_ok(conv, turn, pref, rej)]
        for (_, record), verdict in zip(records, self._judge(records, turn)):
            self._judged(record, verdict)

    def _judge(self, records, turn: int) -> list[tuple]:
        """Which reply the full-persona judge prefers, as "preferred"/"rejected" (or None + error)."""
        if not records:
            return []
        asks = [self._judge_request(conv, record) for conv, record in records]
        requests, label_of = [r for r, _ in asks], [labels for _, labels in asks]
        if self.judge_scoring == "logprobs":
            scores = self.backends["judge"].score_options(requests, ["A", "B"])
            return [self._from_scores(labels, s) for labels, s in zip(label_of, scores)]
        results = self._retry("judge", requests, self._judge_config(turn), self._parse_letter)
        return [(None if letter is None else labels[letter], raw, attempts, error)
                for labels, (letter, raw, attempts, error) in zip(label_of, results)]

    async def _ajudge(self, conv: PairConversation, record: dict) -> None:
        request, labels = self._judge_request(conv, record)
        if self.judge_scoring == "logprobs":
            verdict = self._from_scores(labels, await self.backends["judge"].ascore_options(request, ["A", "B"]))
        else:
            letter, raw, attempts, error = await agenerate_with_retries(
                self.backends["judge"], request, self._judge_config(record["turn"]), self.cfg.max_retries,
                self.cfg.retry_temperature, self._parse_letter)
            verdict = (None if letter is None else labels[letter], raw, attempts, error)
        self._judged(record, verdict)

    async def converse(self, conv: PairConversation, turns: int) -> None:
        """One conversation as its own task (the free schedule): the same requests, seeds and records as
        `step`, one request at a time; each turn's pair judge runs alongside the next turn."""
        judges: list[asyncio.Task] = []

        async def retry(role, request, config, parse=lambda text: text.strip() or None):
            return await agenerate_with_retries(self.backends[role], request, config, self.cfg.max_retries,
                                                self.cfg.retry_temperature, parse)

        try:
            for turn in range(len(conv.turns) + 1, turns + 1):
                if conv.error is not None:
                    break
                user = await self.user.anext_message(conv.persona, conv.history, self._user_config(turn))
                if not self._user_ok(conv, turn, user):
                    break
                history = conv.history + [{"role": "user", "content": user.text}]
                ind = await retry("induction", induction_messages(self.prompts, conv.persona, history),
                                  self._config(self.cfg.induction_max_new_tokens, turn), self._parse_induction)
                if not self._induction_ok(conv, turn, ind):
                    break
                reply_config = self._config(self.cfg.reply_max_new_tokens, turn)
                pref, rej = await asyncio.gather(
                    retry("preferred", responder_messages(self.prompts, history, revealed_so_far(conv, ind[0])),
                          reply_config),
                    retry("rejected", responder_messages(self.prompts, history, None), reply_config))
                if not self._responders_ok(conv, turn, pref, rej):
                    break
                record = self._continue(conv, turn, user.text, ind, pref[0], rej[0])
                judges.append(asyncio.create_task(self._ajudge(conv, record)))
            await asyncio.gather(*judges)
        except BaseException:
            for task in judges:
                task.cancel()
            raise


# ---------------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------------
def drop_torn_tail(path: Path) -> int:
    """Cut a last line that has no newline (a crash mid-append); returns the bytes dropped.

    Records are appended as one line each, newline last, so such a line is a conversation that was never
    fully recorded: it is generated again (from the request cache) instead of blocking the resume.
    """
    return repair_tail(path, "that conversation is generated again")


def load_finished(path: Path) -> dict[str, dict]:
    """Finished conversations by id. A torn last line from a crash is dropped (see `drop_torn_tail`); any
    other unreadable line is an error naming the line."""
    drop_torn_tail(path)
    if not path.exists() or path.stat().st_size == 0:
        return {}
    finished = {}
    for number, value in read_jsonl(path):
        if not isinstance(value, dict) or not isinstance(value.get("id"), str):
            raise PersonaFileError(f"{path}:{number}: expected a conversation object with an 'id'")
        finished[value["id"]] = value
    return finished


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
    options = options or BackendOptions()
    backends = backends or build_backends(cfg, options)
    meta = run_meta(cfg, options, backends, prompts)
    meta_path = out / META_FILE
    if meta_path.exists():
        before = read_json(meta_path)
        changed = differing({k: before.get(k) for k in ("prompts", "pools")}, {k: meta[k] for k in ("prompts", "pools")})
        changed += differing(before.get("settings") or {}, meta["settings"])
        if changed:
            raise ConfigError(f"{out} holds a generation run with other settings, pools or prompts "
                              f"({', '.join(changed)} differ; see {meta_path}); use another --output_dir")
    atomic_write_json(meta_path, {**meta, "status": "running"})
    cache = RequestCache(out / "cache.sqlite") if cfg.cache else None
    if cache is not None:
        backends = {role: CachedBackend(b, cache) for role, b in backends.items()}
    generator = Generator(cfg, backends, prompts)
    conv_path = out / CONVERSATIONS_FILE
    finished = load_finished(conv_path)
    todo = [PairConversation(i, p, cfg.seed * 1_000_003 + i) for i, p in enumerate(persona_pairs(cfg), start=1)]
    todo = [c for c in todo if c.id not in finished]
    models_json = json.dumps(cfg.role_specs(), sort_keys=True)
    prompts_json = json.dumps(meta["prompts"]["sha256"], sort_keys=True)
    bar = tqdm(total=cfg.n_conversations, initial=cfg.n_conversations - len(todo), unit="conv", desc="generate",
               disable=not cfg.progress)

    def write(conv: PairConversation) -> None:
        record = {"id": conv.id, "persona_id": conv.persona.id,
                  "profile_id": conv.persona.profile_id, "personality_id": conv.persona.personality_id,
                  "profile": conv.persona.profile, "personality": conv.persona.personality,
                  "turns": conv.turns, "models": models_json, "prompt_sha256": prompts_json,
                  "seed": conv.seed, "error": conv.error}
        append_jsonl(conv_path, [record])
        finished[conv.id] = record
        bar.update(1)

    try:
        if cfg.schedule == "free":
            run_sync(_converse_all(generator, todo, cfg.turns, write))
        for start in range(0, len(todo), cfg.group_size) if cfg.schedule != "free" else ():
            group = todo[start:start + cfg.group_size]
            for turn in range(1, cfg.turns + 1):
                bar.set_postfix(turn=f"{turn}/{cfg.turns}", **{f"{k}_fail": v for k, v in generator.failures.items() if v})
                generator.step(group, turn)
                for conv in group:
                    done_now = conv.error is not None or len(conv.turns) == cfg.turns
                    if done_now and conv.id not in finished:
                        write(conv)
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


async def _converse_all(generator: Generator, todo: list[PairConversation], turns: int, write) -> None:
    """Every conversation its own task (core `run_each`), each written whole when it ends; one that
    raises or is cancelled writes nothing (a re-run redoes it)."""

    async def one(conv: PairConversation) -> None:
        await generator.converse(conv, turns)
        write(conv)

    await run_each((one(conv) for conv in todo), generator.backends.values())


def count_conversations(records) -> dict:
    records = list(records)
    turns = [t for r in records for t in r["turns"]]
    return {
        "conversations": len(records),
        "failed_conversations": sum(1 for r in records if r.get("error")),
        "turns": len(turns),
        "judge_failures": sum(1 for t in turns if t.get("judge_choice") is None),
        "induction_unlabelled": sum(1 for t in turns if t.get("induction_unlabelled")),
        "judge_picked_preferred": sum(1 for t in turns if t.get("judge_choice") == "preferred"),
        "judge_picked_rejected": sum(1 for t in turns if t.get("judge_choice") == "rejected"),
    }
