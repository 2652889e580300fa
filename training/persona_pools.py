"""Persona pools: grow a profile or personality pool by self-generation, with embedding de-duplication.

Each round samples a few pool items as few-shot examples, asks a model for new ones, embeds every
candidate once and drops those too close (cosine) to the pool or to a candidate kept earlier in the
round. The pool file is written so `load_persona_set(folder)` reads it: `profiles.jsonl` /
`personalities.jsonl`, one object per line with `id`, `text` and how the item got there.
"""

from __future__ import annotations

import random
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from aloe_bench.core.backends import BackendOptions
from aloe_bench.core.errors import ConfigError
from aloe_bench.core.io import PersonaFileError, append_jsonl, atomic_write_json, atomic_write_jsonl
from aloe_bench.core.personas import PoolItem, packaged_data, read_jsonl, read_pool

KINDS = ("profile", "personality")
POOL_FILES = {"profile": "profiles.jsonl", "personality": "personalities.jsonl"}
SEED_FILES = {"profile": "seed_profiles.jsonl", "personality": "seed_personalities.jsonl"}
ID_PREFIX = {"profile": "profile", "personality": "personality"}
_BULLET = re.compile(r"^\s*(?:[-*\u2022]|\d{1,3}[.)]|\(\d{1,3}\))\s+")


@dataclass
class GrowConfig:
    """One pool-growing run; re-running the same command resumes from the last finished round."""

    kind: str = field(default="profile", metadata={"help": "profile | personality"})
    output_dir: str = field(default="pools", metadata={"help": "Folder holding profiles.jsonl / personalities.jsonl."})
    seeds: str | None = field(default=None, metadata={"help": "Seed pool file (default: the packaged 24 seeds)."})
    model: str = field(default="embedded", metadata={"help": "Generator spec: embedded, ORG/NAME, folder, openai:NAME."})
    base_url: str | None = field(default=None, metadata={"help": "OpenAI-compatible base URL for the generator."})
    embedder: str | None = field(default=None, metadata={"help": "sentence-transformers model (default: bundled MiniLM)."})
    threshold: float = field(default=0.6, metadata={"help": "Drop a candidate whose cosine to any item exceeds this."})
    min_similarity: float = field(default=0.0, metadata={
        "help": "Drop a candidate whose nearest pool item is less similar than this (off topic); 0 turns it off."})
    examples: int = field(default=5, metadata={"help": "Pool items shown as few-shot examples per request."})
    per_round: int = field(default=1, metadata={
        "help": "New items asked for per request. 1 (default) takes each whole answer as one item, which small "
                "models follow; larger models can return a '- ' list of 20 (the paper's setting)."})
    requests_per_round: int = field(default=20, metadata={"help": "Requests per round (sent as one batch)."})
    max_rounds: int = field(default=10, metadata={"help": "Stop after this many rounds in total."})
    target_size: int | None = field(default=None, metadata={"help": "Stop once the pool holds this many items."})
    window: int = field(default=3, metadata={"help": "Rounds over which the acceptance rate is measured."})
    min_acceptance: float = field(default=0.05, metadata={"help": "Stop when acceptance over the window falls below."})
    max_new_tokens: int = field(default=160, metadata={
        "help": "Generator max new tokens per request (raise it with per_round, e.g. 768 for 20 items)."})
    temperature: float = field(default=0.9, metadata={"help": "Generator temperature."})
    min_chars: int = field(default=25, metadata={"help": "Ignore parsed lines shorter than this."})
    seed: int = field(default=0, metadata={"help": "Seed for example sampling and generation."})
    progress: bool = field(default=True, metadata={"help": "Show a progress bar."})

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ConfigError(f"kind {self.kind!r}: choose one of {KINDS}")
        if not 0.0 < self.threshold <= 1.0:
            raise ConfigError(f"threshold must be in (0, 1], got {self.threshold}")
        if not 0.0 <= self.min_similarity < self.threshold:
            raise ConfigError(f"min_similarity must be in [0, threshold={self.threshold}), got {self.min_similarity}")
        if self.examples < 1 or self.per_round < 1 or self.requests_per_round < 1 or self.window < 1:
            raise ConfigError("examples, per_round, requests_per_round and window must be >= 1")


# ---------------------------------------------------------------------------------------------------
# Embedding and similarity
# ---------------------------------------------------------------------------------------------------
def load_embedder(name: str | None = None, device: str = "cpu"):
    """A SentenceTransformer: the bundled all-MiniLM-L6-v2 by default, or any model id / folder."""
    from aloe_bench.core.embedded import sentence_model

    return sentence_model(name, device)


def embed(model, texts: list[str], batch_size: int = 64) -> np.ndarray:
    """Unit-norm embeddings, one row per text, so a matrix product gives cosine similarities."""
    if not texts:
        dim = model.get_embedding_dimension() if hasattr(model, "get_embedding_dimension") else \
            model.get_sentence_embedding_dimension()
        return np.zeros((0, dim), dtype=np.float32)
    return np.asarray(model.encode(texts, batch_size=batch_size, normalize_embeddings=True,
                                   convert_to_numpy=True, show_progress_bar=False), dtype=np.float32)


@dataclass
class Decision:
    """What happened to one candidate: kept or not, and its nearest neighbour among what it was compared to."""

    text: str
    kept: bool
    nearest: str | None
    similarity: float | None
    reason: str | None = None  # why a candidate was dropped: "duplicate" or "off_topic"


def select_novel(candidates: list[str], cand_emb: np.ndarray, pool_ids: list[str], pool_emb: np.ndarray,
                 threshold: float, min_similarity: float = 0.0) -> list[Decision]:
    """Keep a candidate when its cosine to every pool item and every earlier kept candidate is <= threshold,
    and (when `min_similarity` > 0) its nearest pool item is at least that close: far from everything is off topic.

    One matrix product against the pool and one among the candidates; the greedy pass over the
    candidate-candidate block is O(n^2) lookups with no re-encoding.
    """
    to_pool = cand_emb @ pool_emb.T if len(pool_ids) else np.zeros((len(candidates), 0), dtype=np.float32)
    among = cand_emb @ cand_emb.T
    decisions: list[Decision] = []
    kept_rows: list[int] = []
    for i, text in enumerate(candidates):
        best_sim, best_id = -2.0, None
        if to_pool.shape[1]:
            j = int(np.argmax(to_pool[i]))
            best_sim, best_id = float(to_pool[i, j]), pool_ids[j]
        on_topic = best_id is None or best_sim >= min_similarity
        if kept_rows:
            sims = among[i, kept_rows]
            j = int(np.argmax(sims))
            if float(sims[j]) > best_sim:
                best_sim, best_id = float(sims[j]), f"candidate:{kept_rows[j]}"
        novel = best_id is None or best_sim <= threshold
        keep = novel and on_topic
        reason = None if keep else ("duplicate" if not novel else "off_topic")
        decisions.append(Decision(text, keep, best_id, None if best_id is None else round(best_sim, 6), reason))
        if keep:
            kept_rows.append(i)
    return decisions


_LEAD_IN = re.compile(r"^\s*(?:\*\*[^*]+\*\*|#+ .*|.*:)\s*$")  # "Here is one:", "**Persona 1**", "## Title"
_SENTENCE_END = re.compile(r"[.!?][\"')\]]?(?=\s|$)")


def _complete_sentences(text: str) -> str:
    """Drop a trailing sentence cut off by the token limit, when at least one sentence is complete."""
    ends = [m.end() for m in _SENTENCE_END.finditer(text)]
    return text[: ends[-1]] if ends else text


def parse_single(text: str | None, min_chars: int = 25) -> list[str]:
    """One item from an answer asked for exactly one: the first list item if the answer is a list, else its first
    paragraph that is not a lead-in or title; a sentence cut off by the token limit is dropped."""
    for paragraph in re.split(r"\n\s*\n", (text or "").strip()):
        lines = [line for line in paragraph.splitlines() if line.strip() and not _LEAD_IN.match(line)]
        if not lines:
            continue
        bullets = [line for line in lines if _BULLET.match(line)]
        item = _BULLET.sub("", bullets[0], count=1) if bullets else " ".join(lines)
        item = _complete_sentences(re.sub(r"\s+", " ", item.replace("**", "")).strip().strip('"').strip())
        if len(item) >= min_chars:
            return [item]
    return []


def parse_items(text: str | None, min_chars: int = 25) -> list[str]:
    """Pull list items out of a generator's answer: one per line, bullets / numbers stripped, de-duplicated."""
    items, seen = [], set()
    for line in (text or "").splitlines():
        if not _BULLET.match(line):
            continue
        item = _BULLET.sub("", line, count=1).strip().strip('"').strip()
        item = re.sub(r"\s+", " ", item)
        if len(item) < min_chars or item.lower() in seen:
            continue
        seen.add(item.lower())
        items.append(item)
    return items


# ---------------------------------------------------------------------------------------------------
# Pool files
# ---------------------------------------------------------------------------------------------------
def _append_lines(path: Path, rows: list[dict]) -> None:
    """Append to the pool or the round log: `open_pool` read and validated both whole, so a last line without
    its newline is a hand edit, kept (ended with a newline), never a torn row."""
    append_jsonl(path, rows, keep_unterminated=True)


@dataclass
class PoolState:
    """A pool being grown: its rows (with provenance) and the per-round log."""

    rows: list[dict]
    rounds: list[dict]

    @property
    def items(self) -> list[PoolItem]:
        return [PoolItem(r["id"], r["text"]) for r in self.rows]

    def acceptance(self, window: int) -> float | None:
        recent = self.rounds[-window:]
        asked = sum(r["candidates"] for r in recent)
        return None if len(recent) < window or asked == 0 else sum(r["kept"] for r in recent) / asked


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def pool_paths(cfg: GrowConfig) -> tuple[Path, Path, Path]:
    folder = Path(cfg.output_dir)
    stem = POOL_FILES[cfg.kind].removesuffix(".jsonl")
    return folder / POOL_FILES[cfg.kind], folder / f"{stem}_rounds.jsonl", folder / f"{stem}_rejected.jsonl"


def open_pool(cfg: GrowConfig) -> PoolState:
    """Start from the seeds, or resume: rows of a round whose log line was never written are discarded."""
    pool_path, rounds_path, _ = pool_paths(cfg)
    if not pool_path.exists():
        seeds = read_pool(Path(cfg.seeds) if cfg.seeds else packaged_data(SEED_FILES[cfg.kind]), "seed")
        rows = [{"id": s.id, "text": s.text, "round": 0, "nearest": None, "similarity": None, "generator": "seed"}
                for s in seeds]
        atomic_write_jsonl(pool_path, rows)
        if rounds_path.exists():
            rounds_path.unlink()
        return PoolState(rows, [])
    rows, seen = [], {}
    for number, value in read_jsonl(pool_path):
        where = f"{pool_path}:{number}"
        if not isinstance(value, dict):
            raise PersonaFileError(f"{where}: expected an object with 'id' and 'text', got {type(value).__name__}")
        for name in ("id", "text"):
            if not isinstance(value.get(name), str) or not value[name].strip():
                raise PersonaFileError(f"{where}: field {name!r} must be a non-empty string")
        value.setdefault("round", 0)
        if not _is_count(value["round"]):
            raise PersonaFileError(f"{where}: field 'round' must be an integer >= 0, got {value['round']!r}")
        if value["id"] in seen:
            raise PersonaFileError(f"{where}: duplicate id {value['id']!r} (first at line {seen[value['id']]})")
        seen[value["id"]] = number
        rows.append(value)
    rounds = []
    if rounds_path.exists():
        for number, value in read_jsonl(rounds_path):
            where = f"{rounds_path}:{number}"
            if not isinstance(value, dict) or not _is_count(value.get("round")):
                raise PersonaFileError(f"{where}: expected an object with an integer field 'round'")
            for name in ("candidates", "kept", "rejected"):
                if not _is_count(value.get(name)):
                    raise PersonaFileError(f"{where}: field {name!r} must be an integer >= 0")
            if value["round"] != len(rounds) + 1:
                raise PersonaFileError(f"{where}: field 'round' is {value['round']}, expected {len(rounds) + 1}")
            rounds.append(value)
    done = rounds[-1]["round"] if rounds else 0
    complete = [r for r in rows if int(r.get("round", 0)) <= done]
    if len(complete) != len(rows):
        atomic_write_jsonl(pool_path, complete)  # a crash between the pool append and the round log line
    return PoolState(complete, rounds)


def stop_reason(cfg: GrowConfig, state: PoolState) -> str | None:
    if len(state.rounds) >= cfg.max_rounds:
        return f"reached max_rounds={cfg.max_rounds}"
    if cfg.target_size is not None and len(state.rows) >= cfg.target_size:
        return f"pool reached target_size={cfg.target_size}"
    rate = state.acceptance(cfg.window)
    if rate is not None and rate < cfg.min_acceptance:
        return f"acceptance {rate:.3f} over the last {cfg.window} rounds is below min_acceptance={cfg.min_acceptance}"
    return None


def grow_requests(cfg: GrowConfig, pool: list[PoolItem], round_number: int, prompts) -> list[list[dict]]:
    prompt = prompts[f"persona_grow_{cfg.kind}"]
    rng = random.Random(cfg.seed * 100_003 + round_number)
    requests = []
    for _ in range(cfg.requests_per_round):
        shown = rng.sample(pool, min(cfg.examples, len(pool)))
        examples = "\n".join(f"- {item.text}" for item in shown)
        requests.append([
            {"role": "system", "content": prompt["system"]},
            {"role": "user", "content": prompt.render("user_one" if cfg.per_round == 1 else "user", examples=examples,
                                                      n=cfg.per_round)},
        ])
    return requests


def grow_pool(cfg: GrowConfig, backend=None, embedder=None, options: BackendOptions | None = None) -> dict:
    """Run (or resume) rounds until a stop rule fires; returns a summary. Each round is committed whole.

    `backend` replaces the generator `cfg.model` names (tests); `options` builds it otherwise.
    """
    from tqdm.auto import tqdm

    from aloe_bench.core.backends import GenerationConfig, build_backend
    from aloe_bench.core.prompts import load_prompts

    prompts = load_prompts()
    options = options or BackendOptions()
    options.check_roles(("generator",))
    if backend is None:
        backend = build_backend(cfg.model, options.for_role("generator"), base_url=cfg.base_url)
    embedder = embedder or load_embedder(cfg.embedder)
    embedder_name = getattr(embedder, "aloe_name", cfg.embedder or "sentence-transformers")
    state = open_pool(cfg)
    pool_path, rounds_path, rejected_path = pool_paths(cfg)
    pool_emb = embed(embedder, [r["text"] for r in state.rows])
    next_index = 1 + max((int(m.group(1)) for r in state.rows if (m := re.search(r"-(\d+)$", r["id"]))), default=0)
    totals = {"kept": sum(r["kept"] for r in state.rounds), "rejected": sum(r["rejected"] for r in state.rounds)}
    bar = tqdm(total=cfg.max_rounds, initial=len(state.rounds), unit="round", desc=f"grow {cfg.kind}",
               disable=not cfg.progress)
    reason = stop_reason(cfg, state)
    try:
        while reason is None:
            number = len(state.rounds) + 1
            config = GenerationConfig(cfg.max_new_tokens, cfg.temperature, seed=cfg.seed * 1000 + number)
            began = time.perf_counter()
            completions = backend.generate(grow_requests(cfg, state.items, number, prompts), config)
            failures = [c.error for c in completions if not c.ok]
            parse = parse_single if cfg.per_round == 1 else parse_items
            candidates, unparsed = [], []
            for completion in completions:
                if completion.ok:
                    items = parse(completion.text, cfg.min_chars)
                    candidates += [t for t in items if t not in candidates]
                    if not items:
                        unparsed.append(completion.text)
            cand_emb = embed(embedder, candidates)
            decisions = select_novel(candidates, cand_emb, [r["id"] for r in state.rows], pool_emb, cfg.threshold,
                                     cfg.min_similarity)
            kept_ids: dict[str, str] = {}
            new_rows, rejected_rows = [], []
            for position, decision in enumerate(decisions):
                nearest = decision.nearest
                if nearest and nearest.startswith("candidate:"):
                    nearest = kept_ids[nearest]  # only kept candidates are compared against
                if decision.kept:
                    item_id = f"{ID_PREFIX[cfg.kind]}-{next_index:05d}"
                    next_index += 1
                    kept_ids[f"candidate:{position}"] = item_id
                    new_rows.append({"id": item_id, "text": decision.text, "round": number, "nearest": nearest,
                                     "similarity": decision.similarity, "generator": backend.model_id})
                else:
                    rejected_rows.append({"round": number, "text": decision.text, "nearest": nearest,
                                          "similarity": decision.similarity, "reason": decision.reason})
            record = {"round": number, "requests": len(completions), "request_failures": len(failures),
                      "errors": failures[:3], "candidates": len(candidates), "unparsed": len(unparsed),
                      # answers that yielded no item are kept (clipped) so a 0-candidate round can be diagnosed
                      "unparsed_examples": [text[:400] for text in unparsed[:3]], "kept": len(new_rows),
                      "rejected": len(rejected_rows), "pool_size": len(state.rows) + len(new_rows),
                      "wall_s": round(time.perf_counter() - began, 3), "generator": backend.model_id,
                      "off_topic": sum(d.reason == "off_topic" for d in decisions),
                      "embedder": embedder_name, "threshold": cfg.threshold}
            # Pool rows first, the round line last: `open_pool` drops rows of a round with no log line.
            _append_lines(pool_path, new_rows)
            append_jsonl(rejected_path, rejected_rows)  # never read back: a torn tail is cut
            _append_lines(rounds_path, [record])
            state.rows += new_rows
            state.rounds.append(record)
            if new_rows:
                keep_mask = [d.kept for d in decisions]
                pool_emb = np.concatenate([pool_emb, cand_emb[keep_mask]], axis=0)
            totals["kept"] += len(new_rows)
            totals["rejected"] += len(rejected_rows)
            bar.update(1)
            bar.set_postfix(kept=totals["kept"], rejected=totals["rejected"], pool=len(state.rows))
            reason = stop_reason(cfg, state)
    finally:
        bar.close()
    meta = {"kind": cfg.kind, "generator": backend.model_id, "embedder": embedder_name, "threshold": cfg.threshold,
            "rounds": len(state.rounds), "pool_size": len(state.rows), "seeds": sum(r["round"] == 0 for r in state.rows),
            "kept": totals["kept"], "rejected": totals["rejected"], "stopped": reason,
            "prompt_sha256": prompts.hashes([f"persona_grow_{cfg.kind}"]), "config": asdict(cfg)}
    meta_path = pool_path.with_name(pool_path.name.removesuffix(".jsonl") + "_meta.json")
    atomic_write_json(meta_path, meta)
    return {**meta, "pool_file": str(pool_path)}


# ---------------------------------------------------------------------------------------------------
# Overlap between two pools
# ---------------------------------------------------------------------------------------------------
def read_any_pool(source: str, prefix: str) -> list[PoolItem]:
    """A pool file, or a folder's profiles+personalities pools (both, prefixed by kind)."""
    path = Path(source)
    if path.is_dir():
        from aloe_bench.core.personas import POOL_NAMES

        for profile_name, personality_name in POOL_NAMES:
            if (path / profile_name).exists() or (path / personality_name).exists():
                items = []
                for name in (profile_name, personality_name):
                    if (path / name).exists():
                        items += read_pool(path / name, f"{prefix}{name.split('.')[0]}:")
                return items
        raise PersonaFileError(f"{path}: no pool files found")
    return read_pool(path, prefix)


def pool_overlap(a: list[PoolItem], b: list[PoolItem], embedder, top: int = 10, threshold: float | None = None) -> dict:
    """The `top` most similar (a, b) pairs, per item of `a` its best match in `b` (summary stats), and, with a
    `threshold`, how many of all the pairs and of `a`'s items lie above it: counts over the whole similarity
    matrix, whatever `top` lists."""
    emb_a, emb_b = embed(embedder, [x.text for x in a]), embed(embedder, [x.text for x in b])
    sims = emb_a @ emb_b.T
    flat = np.argsort(sims, axis=None)[::-1][:top]
    pairs = []
    for index in flat:
        i, j = np.unravel_index(index, sims.shape)
        pairs.append({"similarity": round(float(sims[i, j]), 4), "a_id": a[i].id, "b_id": b[j].id,
                      "a_text": a[i].text, "b_text": b[j].text})
    best = sims.max(axis=1)
    report = {"a_items": len(a), "b_items": len(b), "max_similarity": round(float(best.max()), 4),
              "mean_best_similarity": round(float(best.mean()), 4)}
    if threshold is not None:
        report |= {"threshold": threshold, "pairs_above_threshold": int((sims > threshold).sum()),
                   "a_items_above_threshold": int((best > threshold).sum())}
    return {**report, "closest_pairs": pairs}
