"""`aloe train online`: iterative preference rounds on the policy's own conversations with the role-play user.

Each round rolls the current policy out against the role-play user on training personas (K sampled candidates a
turn, every one scored by the ALOE judge with the full persona, the conversation continuing with the best or a
random candidate), builds the round's `dpo` / `kto` data from those candidates in the project's dataset layout,
and trains the round with TRL from the current policy, which is also the reference. Every step leaves a file
behind, so a killed run resumes at the step it was in and a finished round is never redone. With an evaluator,
round 0 (the starting policy) and every round are evaluated under one protocol, each round with its win rate over
the previous policy (`online_winrate`); the optional teacher candidate is `online_teacher`, the round records, card
and uploads `online_push`. The algorithm and the file layout are described in docs/training.md.
"""

from __future__ import annotations

import random
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path

from aloe_bench.core.errors import AloeError, ConfigError
from aloe_bench.core.io import append_jsonl, atomic_write_json, atomic_write_text, read_json, read_jsonl

from .online_teacher import POLICY, TEACHER

METHODS = ("dpo", "ipo", "kto", "grpo")  # grpo: training/online_grpo.py
CONTINUE_RULES = ("best", "random")
ROLLOUT_FILE = "rollouts.jsonl"
DATA_MARKER = "aloe_round_data.json"
ROUNDS_FILE = "rounds.json"
ROUND_DONE = "aloe_round_done.json"
#: the roles `role_options` may name in `aloe train online`
ONLINE_ROLES = ("policy", "user", "judge", "teacher")


class RoundDataError(AloeError, ValueError):
    """A round's rollouts gave nothing to train on (no usable pair, or KTO rows all on one side)."""


@dataclass
class OnlineConfig:
    """`aloe train online`: the policy, training personas, rollout shape, judge and the per-round trainer."""

    policy: str = field(default="embedded", metadata={"help": "Starting checkpoint: embedded, a Hub id or a folder."})
    personas: str = field(default="default", metadata={
        "help": "Training personas: a pool folder, a persona .jsonl, or hub:ORG/NAME (its personas config)."})
    personas_split: str = field(default="train", metadata={"help": "Split of a dataset's personas config."})
    max_personas: int | None = field(default=None, metadata={"help": "Use the first N training personas only."})
    eval_personas: str = field(default="default", metadata={
        "help": "The eval personas that must stay out of training (refused when copied near-verbatim)."})
    overlap_threshold: float = field(default=0.95, metadata={
        "help": "Refuse training profiles at or above this MiniLM cosine to an eval profile (near-verbatim copies; "
                "the paper's own split sits at 0.6-0.88)."})
    overlap_check: str = field(default="cosine", metadata={
        "help": "cosine (the bundled MiniLM, plus the normalised-text check) or text (normalised text only)."})
    user_model: str = field(default="embedded", metadata={"help": "The role-play user's model spec."})
    user_base_url: str | None = field(default=None, metadata={"help": "Base URL of the role-play user's endpoint."})
    judge_model: str = field(default="embedded", metadata={"help": "The ALOE judge's model spec."})
    judge_base_url: str | None = field(default=None, metadata={"help": "Base URL of the judge's endpoint."})
    judge_preset: str = field(default="paper", metadata={"help": "ALOE judge preset: paper or robust."})
    rounds: int = field(default=2, metadata={"help": "Rounds R."})
    turns: int = field(default=2, metadata={"help": "Turns T of each rollout conversation."})
    candidates: int = field(default=2, metadata={"help": "Candidate replies K sampled each turn (>= 2 for pairs)."})
    temperature: float = field(default=0.8, metadata={"help": "Policy sampling temperature (> 0 when K >= 2)."})
    top_p: float = field(default=0.95, metadata={"help": "Policy sampling top_p."})
    max_new_tokens: int = field(default=48, metadata={"help": "Tokens of each candidate reply."})
    user_max_new_tokens: int = field(default=48, metadata={"help": "Tokens of each role-play user message."})
    continue_with: str = field(default="best", metadata={
        "help": "Which candidate continues the conversation: best (RLPA's rule) or random."})
    method: str = field(default="dpo", metadata={"help": "dpo, ipo, kto or grpo (TRL's GRPOTrainer, judge reward)."})
    margin: float = field(default=0.0, metadata={"help": "Drop pairs whose score difference is below this."})
    kto_threshold: str = field(default="median", metadata={
        "help": "KTO: desirable at or above this score (a number, or 'median' of the round's scores)."})
    beta: float = 0.1
    learning_rate: float = 5.0e-5
    max_steps: int = field(default=-1, metadata={"help": "Trainer steps per round (-1: one epoch)."})
    per_device_train_batch_size: int = 2
    max_length: int = 512
    use_cpu: bool = False
    accelerate_config: str | None = field(default=None, metadata={
        "help": "Train each dpo/ipo/kto round under `accelerate launch --config_file FILE` in a process of its own "
                "(several GPUs, DeepSpeed ZeRO-3: training/accelerate/*.yaml); rollouts, judging and the eval stay "
                "in this process, which has released the policy by then."})
    eval_turns: int = field(default=0, metadata={
        "help": "Evaluate each round's checkpoint with the harness on the eval personas for this many turns (0: no "
                "evaluation). The protocol (user, judge, seed, personas) is the same every round."})
    eval_max_personas: int | None = field(default=None, metadata={"help": "Evaluate on the first N eval personas."})
    eval_max_new_tokens: int = field(default=64, metadata={"help": "Reply and user tokens in the per-round eval."})
    win_rate: bool = field(default=True, metadata={
        "help": "With eval_turns: the previous round's policy answers the same eval states and the pair judge (both "
                "orders; disagreements are ties) gives the round's win rate over it."})
    teacher: bool = field(default=False, metadata={
        "help": "Add one teacher candidate per turn: aloe generate's preferred responder, told the revealed facts."})
    teacher_model: str | None = field(default=None, metadata={
        "help": "The teacher's model spec (setting it turns the teacher on); default: the judge's model. The same "
                "model infers the revealed facts."})
    use_peft: bool = field(default=False, metadata={
        "help": "Train a LoRA adapter each round and merge it before the next rollout."})
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: list[str] | None = field(default=None, metadata={
        "help": "LoRA target modules (default: PEFT's choice for the architecture)."})
    push_to_hub: str | None = field(default=None, metadata={
        "metavar": "ORG/NAME", "help": "Upload the final checkpoint with its model card to this Hub repo."})
    push_rounds_data: bool = field(default=False, metadata={
        "help": "With push_to_hub: also upload every round's data as one dataset repo ORG/NAME-rounds."})
    private: bool = field(default=False, metadata={"help": "Create the Hub repos private."})
    output_dir: str = "runs/online"
    seed: int = 0

    def __post_init__(self):
        if self.method not in METHODS:
            raise ConfigError(f"method {self.method!r}: choose one of {', '.join(METHODS)}")
        if self.overlap_check not in ("cosine", "text"):
            raise ConfigError(f"overlap_check {self.overlap_check!r}: choose cosine or text")
        if self.continue_with not in CONTINUE_RULES:
            raise ConfigError(f"continue_with {self.continue_with!r}: choose best or random")
        if self.rounds < 1 or self.turns < 1:
            raise ConfigError("rounds and turns must be >= 1")
        if self.method in ("dpo", "ipo", "grpo") and self.candidates < 2:
            what = "a group of samples" if self.method == "grpo" else "a pair"
            raise ConfigError(f"method {self.method} needs candidates >= 2 ({what}), got {self.candidates}")
        if self.candidates < 1:
            raise ConfigError("candidates must be >= 1")
        if self.candidates >= 2 and not self.temperature:
            raise ConfigError("candidates >= 2 at temperature 0 gives identical candidates: set temperature > 0")
        if self.teacher_model:
            self.teacher = True
        if self.accelerate_config is not None:
            if self.method == "grpo":
                raise ConfigError("accelerate_config: method grpo trains in this process (its reward asks the judge "
                                  "here); launch the whole command with accelerate instead, or use dpo/ipo/kto")
            if not Path(self.accelerate_config).is_file():
                raise ConfigError(f"accelerate_config: no such file {self.accelerate_config!r}")
        if self.push_rounds_data and not self.push_to_hub:
            raise ConfigError("push_rounds_data needs push_to_hub ORG/NAME")
        if self.push_to_hub and self.push_to_hub.count("/") != 1:
            raise ConfigError(f"push_to_hub needs ORG/NAME, got {self.push_to_hub!r}")
        if self.kto_threshold != "median":
            try:
                float(self.kto_threshold)
            except ValueError:
                raise ConfigError(f"kto_threshold {self.kto_threshold!r}: a number or 'median'") from None


# --- eval personas stay out ---------------------------------------------------------------------------------------

def _normal(text: str) -> str:
    return " ".join("".join(c for c in text.lower() if c.isalnum() or c.isspace()).split())


def overlap_report(train, held_out, threshold: float = 0.95, embedder=None) -> dict:
    """Refuse training personas that copy an eval persona's profile: the same normalised text, or (with an
    embedder) a cosine at or above `threshold`; otherwise report the overlap figures.

    The paper's own training pool has profiles at 0.6-0.88 cosine from its eval profiles (templated texts), so only
    near-verbatim copies are refused; the figures below the threshold are reported, not acted on.
    """
    eval_texts = {_normal(t) for p in held_out for t in (p.profile, p.personality)}
    copies = [p.id for p in train if _normal(p.profile) in eval_texts]
    if copies:
        raise ConfigError(f"{len(copies)} training persona(s) copy an eval profile verbatim (e.g. {copies[0]}): "
                          "eval personas stay out of training")
    report = {"verbatim_profiles": 0, "shared_personalities": sum(_normal(p.personality) in eval_texts for p in train),
              "check": "normalised text"}
    if embedder is None:
        return report
    from .persona_pools import embed

    eval_profiles = list(dict.fromkeys(p.profile for p in held_out))
    sims = embed(embedder, [p.profile for p in train]) @ embed(embedder, eval_profiles).T
    best = sims.max(axis=1)
    near = [p.id for p, value in zip(train, best) if value >= threshold]
    if near:
        raise ConfigError(f"{len(near)} training persona(s) are near-verbatim copies of an eval profile (cosine >= "
                          f"{threshold:g}, e.g. {near[0]} at {best.max():.3f}): eval personas stay out of training")
    report.update(check=f"normalised text and cosine >= {threshold:g}", max_profile_cosine=round(float(best.max()), 4),
                  profiles_above_0_6=int((best >= 0.6).sum()), training_profiles=len(train))
    if report["profiles_above_0_6"]:
        import warnings

        warnings.warn(f"{report['profiles_above_0_6']} training profile(s) are above 0.6 cosine to an eval profile "
                      f"(max {report['max_profile_cosine']}): reported in rounds.json", stacklevel=2)
    return report


# --- roll out -----------------------------------------------------------------------------------------------------

def _generation(cfg: OnlineConfig, k: int, turn: int, round_no: int):
    from aloe_bench.core.backends import GenerationConfig

    seed = cfg.seed + 100_000 * round_no + 1000 * turn + k
    return GenerationConfig(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
                            seed=seed)


def rollout(cfg: OnlineConfig, round_no: int, personas, policy, simulator, judge, log: Path,
            tags=None, teacher=None) -> list[dict]:
    """Roll out T turns per persona, appending one row per (persona, turn) to `log`; turns already logged are kept.

    A row holds the user message, every candidate with its verdict (score None and the error for a failure) and its
    source (`policy`, or `teacher` for the optional teacher candidate, `online_teacher`), the index of the candidate
    that continued the conversation, and (with a teacher) the facts revealed so far. With `tags`
    (online_grpo.ProfileTags, the profile reward) the policy is asked for its profile block, which is cut out of each
    candidate (kept as `inferred`) before the judge and the history see it.
    """
    from aloe_bench.core.backends import Completion, GenerationConfig
    from aloe_bench.core.judge import JudgeItem

    rows = [value for _, value in read_jsonl(log, log=True)] if log.exists() else []
    histories = {i: [] for i in range(len(personas))}
    revealed = {i: [] for i in range(len(personas))}  # (profile, personality) facts after each user message
    done = {(r["persona"], r["turn"]) for r in rows}
    for r in sorted(rows, key=lambda r: (r["persona"], r["turn"])):
        histories[r["persona"]] += [{"role": "user", "content": r["user"]},
                                    {"role": "assistant", "content": r["candidates"][r["continued"]]["reply"]}]
        revealed[r["persona"]].append(tuple(r.get("revealed") or ("", "")))
    pick = random.Random(cfg.seed + round_no)
    for turn in range(cfg.turns):
        todo = [i for i in range(len(personas)) if (i, turn) not in done and len(histories[i]) == 2 * turn]
        if not todo:
            continue
        user_cfg = GenerationConfig(max_new_tokens=cfg.user_max_new_tokens, temperature=0.7,
                                    seed=cfg.seed + 100_000 * round_no + turn)
        messages = simulator.next_messages([personas[i] for i in todo], [histories[i] for i in todo], user_cfg)
        live = [(i, m.text) for i, m in zip(todo, messages) if m.ok]
        prompts = [histories[i] + [{"role": "user", "content": text}] for i, text in live]
        asked = [tags.instruct(p) for p in prompts] if tags else prompts
        candidates = [policy.generate(asked, _generation(cfg, k, turn, round_no)) for k in range(cfg.candidates)]
        inferred = None
        if tags:  # the profile block is cut out here: nobody downstream sees it
            from dataclasses import replace

            inferred = [[tags.split(c.text)[1] if c.ok else None for c in column] for column in candidates]
            candidates = [[replace(c, text=tags.split(c.text)[0]) if c.ok else c for c in column]
                          for column in candidates]
        taught = (teacher.replies([personas[i] for i, _ in live], [histories[i] for i, _ in live],
                                  [text for _, text in live], [revealed[i] for i, _ in live], turn, round_no)
                  if teacher is not None else None)
        if taught is not None:
            candidates.append([Completion(t["reply"], error=t["error"]) for t in taught])
        items, where = [], []
        for n, (i, text) in enumerate(live):
            for k in range(len(candidates)):
                if candidates[k][n].ok:
                    items.append(JudgeItem(personas[i], text, candidates[k][n].text, histories[i]))
                    where.append((n, k))
        verdicts = dict(zip(where, judge.score(items)))
        new_rows = []
        for n, (i, text) in enumerate(live):
            cands = []
            for k in range(len(candidates)):
                c, v = candidates[k][n], verdicts.get((n, k))
                cands.append({"reply": c.text, "score": v.score if v else None,
                              "source": TEACHER if k == cfg.candidates else POLICY,
                              "error": c.error or (v.error or ("unparsable" if v.failed else None) if v else None)})
                if inferred is not None:
                    cands[-1]["inferred"] = inferred[k][n] if k < cfg.candidates else None  # teacher: none asked
            scored = [k for k, c in enumerate(cands) if c["score"] is not None and c["reply"]]
            usable = scored or [k for k, c in enumerate(cands) if c["reply"]]
            if not usable:
                continue  # every candidate failed to generate: this conversation stops here
            chosen = (max(scored, key=lambda k: cands[k]["score"]) if cfg.continue_with == "best" and scored
                      else pick.choice(usable))
            row = {"persona": i, "turn": turn, "user": text, "history": histories[i], "candidates": cands,
                   "continued": chosen}
            if taught is not None:
                row["revealed"] = taught[n]["revealed"]
            new_rows.append(row)
            histories[i] = histories[i] + [{"role": "user", "content": text},
                                           {"role": "assistant", "content": cands[chosen]["reply"]}]
            revealed[i] = revealed[i] + [tuple(row.get("revealed") or ("", ""))]
        append_jsonl(log, new_rows)
        rows += new_rows
    return rows


# --- the round's data ---------------------------------------------------------------------------------------------

def dpo_pairs(rows: list[dict], margin: float) -> tuple[list[dict], dict]:
    """Best vs the policy's own worst candidate of each turn; ties, close pairs and failures dropped and counted."""
    pairs, counts = [], {"turns": len(rows), "failed_candidates": 0, "ties": 0, "below_margin": 0, "too_few": 0,
                         "teacher_chosen": 0}
    for row in rows:
        scored = [c for c in row["candidates"] if c["score"] is not None and c["reply"]]
        counts["failed_candidates"] += len(row["candidates"]) - len(scored)
        own = [c for c in scored if c.get("source", POLICY) == POLICY]  # the rejected reply is the policy's own
        if len(scored) < 2 or not own:
            counts["too_few"] += 1
            continue
        best = max(scored, key=lambda c: c["score"])
        worst = min(own, key=lambda c: c["score"])
        gap = best["score"] - worst["score"]
        if gap <= 0:
            counts["ties"] += 1
        elif gap < margin:
            counts["below_margin"] += 1
        else:
            prompt = row["history"] + [{"role": "user", "content": row["user"]}]
            pairs.append({"prompt": prompt, "chosen": [{"role": "assistant", "content": best["reply"]}],
                          "rejected": [{"role": "assistant", "content": worst["reply"]}],
                          "score_chosen": best["score"], "score_rejected": worst["score"],
                          "chosen_source": best.get("source", POLICY)})
            counts["teacher_chosen"] += best.get("source") == TEACHER
    counts["pairs"] = len(pairs)
    return pairs, counts


def kto_rows(rows: list[dict], threshold: str) -> tuple[list[dict], dict]:
    """Every judged candidate, desirable at or above the threshold (a number or the round's median score)."""
    judged = [(row, c) for row in rows for c in row["candidates"] if c["score"] is not None and c["reply"]]
    failed = sum(len(row["candidates"]) for row in rows) - len(judged)
    if not judged:
        raise RoundDataError("this round's rollouts have no judged candidate: nothing to train on")
    cut = statistics.median(c["score"] for _, c in judged) if threshold == "median" else float(threshold)
    # a teacher's reply is off-policy: it may teach what to say (desirable), never stand for the policy's mistakes
    below = [(row, c) for row, c in judged if c.get("source") == TEACHER and c["score"] < cut]
    judged = [(row, c) for row, c in judged if not (c.get("source") == TEACHER and c["score"] < cut)]
    out = [{"prompt": row["history"] + [{"role": "user", "content": row["user"]}],
            "completion": [{"role": "assistant", "content": c["reply"]}],
            "label": c["score"] >= cut, "score": c["score"], "source": c.get("source", POLICY)} for row, c in judged]
    desirable = sum(r["label"] for r in out)
    counts = {"rows": len(out), "desirable": desirable, "undesirable": len(out) - desirable, "threshold": cut,
              "failed_candidates": failed, "teacher_below_threshold": len(below)}
    if desirable in (0, len(out)):
        raise RoundDataError(f"KTO: all {len(out)} judged replies fall on one side of the threshold {cut:g}: "
                             "nothing to contrast (set kto_threshold)")
    return out, counts


def write_round_data(folder: Path, config: str, rows: list[dict], counts: dict) -> None:
    """One dataset folder per round (`<config>/train-00000-of-00001.parquet` + README), loadable with load_dataset."""
    import datasets

    path = folder / config / "train-00000-of-00001.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_list(rows).to_parquet(str(path))
    atomic_write_text(folder / "README.md", "---\nconfigs:\n"
                      f"- config_name: {config}\n  data_files:\n  - split: train\n    path: {config}/train-*.parquet\n"
                      "  default: true\n---\n\n# One round of `aloe train online`\n\n"
                      "The policy's own candidates, scored by the ALOE judge; counts in aloe_round_data.json.\n")
    atomic_write_json(folder / DATA_MARKER, {"config": config, **counts})


def build_round_data(cfg: OnlineConfig, rows: list[dict], folder: Path, personas=None, tags=None) -> dict:
    """Build and write the round's data; raise RoundDataError when there is nothing to train on."""
    if (folder / DATA_MARKER).exists():
        return read_json(folder / DATA_MARKER)
    if cfg.method == "grpo":  # the conversation states of this round's rollouts, persona in columns
        from .online_grpo import GRPO_CONFIG, grpo_rows

        data, counts = grpo_rows(rows, personas, tags)
        config = GRPO_CONFIG
        if not data:
            raise RoundDataError("this round's rollouts reached no conversation state: not training on nothing")
    elif cfg.method == "kto":
        data, counts = kto_rows(rows, cfg.kto_threshold)
        config = "kto"
    else:
        data, counts = dpo_pairs(rows, cfg.margin)
        config = "dpo"
        if not data:
            raise RoundDataError(f"this round's rollouts produced no usable pair ({counts}): not training on nothing")
    write_round_data(folder, config, data, counts)
    return {"config": config, **counts}


# --- training -----------------------------------------------------------------------------------------------------

def train_round(cfg: OnlineConfig, policy_path: str, data_folder: Path, config: str, out: Path) -> dict:
    """Train one round from `policy_path` (also the reference) on the round's data; save to `out`."""
    from trl import DPOTrainer, KTOTrainer, ModelConfig

    from .common import AloeArguments, load_split, train_and_save
    from .stage_configs import AloeDPOConfig, AloeKTOConfig

    common = dict(output_dir=str(out), beta=cfg.beta, learning_rate=cfg.learning_rate, max_steps=cfg.max_steps,
                  num_train_epochs=1, per_device_train_batch_size=cfg.per_device_train_batch_size,
                  max_length=cfg.max_length, use_cpu=cfg.use_cpu, bf16=False if cfg.use_cpu else None,
                  report_to="none", save_strategy="no", logging_steps=1, seed=cfg.seed,
                  include_num_input_tokens_seen="non_padding")
    if cfg.use_cpu is False:
        common.pop("bf16")
    train = load_split(str(data_folder), config, "train")
    if cfg.method == "kto":
        args, trainer_cls = AloeKTOConfig(**common), KTOTrainer
        train = train.select_columns(["prompt", "completion", "label"])
    else:
        loss = ["ipo"] if cfg.method == "ipo" else ["sigmoid"]
        args, trainer_cls = AloeDPOConfig(loss_type=loss, **common), DPOTrainer
        train = train.select_columns(["prompt", "chosen", "rejected"])
    model_args = ModelConfig(model_name_or_path=policy_path, use_peft=cfg.use_peft, lora_r=cfg.lora_r,
                             lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                             lora_target_modules=cfg.lora_target_modules)
    # with LoRA the reference is the policy with its adapter off; the adapter is merged into the saved checkpoint
    metrics = train_and_save(cfg.method, trainer_cls, policy_path, train, None, args, model_args,
                             AloeArguments(merge_lora=True))
    return metrics


# --- the loop -----------------------------------------------------------------------------------------------------

def write_al_plot(table: list[dict], path: Path) -> bool:
    """A PNG of AL_avg (with its interval) by round; False when matplotlib (the `plot` extra) is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    points = [(e["round"], e["eval"]) for e in table if e.get("eval") and e["eval"].get("AL_avg") is not None]
    if not points:
        return False
    figure, axes = plt.subplots(figsize=(5, 3.2))
    rounds = [r for r, _ in points]
    means = [m["AL_avg"] for _, m in points]
    bounds = [(ev.get("intervals") or {}).get("AL_avg") or [None, None] for _, ev in points]
    lows = [m - (low if low is not None else m) for m, (low, _) in zip(means, bounds)]
    highs = [(high if high is not None else m) - m for m, (_, high) in zip(means, bounds)]
    axes.errorbar(rounds, means, yerr=[lows, highs], marker="o", capsize=3)
    axes.set_xlabel("round")
    axes.set_ylabel("AL_avg (judge score 1-5)")
    axes.set_xticks(rounds)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return True


def eval_summary(results: dict) -> dict:
    """The per-round table's eval columns from a harness results dict."""
    metrics = results["metrics"]
    return {"AL": metrics.get("AL"), **{k: metrics.get(k) for k in ("AL_avg", "IR", "N_IR")},
            "intervals": {k: (metrics.get("intervals") or {}).get(k) for k in ("AL_avg", "IR", "N_IR")}}


def rounds_card_section(cfg: OnlineConfig, table: list[dict]) -> str:
    """The model card's section listing every round with its data, settings and eval figures."""
    def num(value):
        return "n/a" if value is None else f"{value:.3f}"

    def interval(ev, key):
        low, high = (ev.get("intervals") or {}).get(key) or (None, None)
        return "" if low is None else f" [{low:.3f}, {high:.3f}]"

    def wins(w):
        if not w:
            return "n/a"
        return f"{num(w['win_rate'])} ({w['wins']}/{w['losses']}/{w['ties']})"

    teacher = f"; plus a teacher candidate from `{cfg.teacher_model or cfg.judge_model}`" if cfg.teacher else ""
    lora = (f"; LoRA r={cfg.lora_r} alpha={cfg.lora_alpha} dropout={cfg.lora_dropout}, merged each round"
            if cfg.use_peft else "; full fine-tuning")
    lines = ["## Online preference rounds", "",
             f"Method {cfg.method} (beta {cfg.beta}, lr {cfg.learning_rate}, max_steps {cfg.max_steps}{lora}), "
             f"K={cfg.candidates} candidates at temperature {cfg.temperature}{teacher}, T={cfg.turns} turns, "
             f"continue with the {cfg.continue_with} candidate; role-play user `{cfg.user_model}`, judge "
             f"`{cfg.judge_model}` ({cfg.judge_preset}); training personas `{cfg.personas}`, eval personas "
             f"`{cfg.eval_personas}` ({cfg.eval_turns} turns, greedy, seed {cfg.seed}, the same every round). "
             "Round 0 is the starting policy. Win rate: the round's policy against the previous round's on the "
             "same eval conversation states, the pair judge asked in both orders (disagreements are ties): "
             "(wins + ties/2) / judged, with wins/losses/ties.", "",
             "| round | data | training rows | rollout mean score | train loss | AL_avg | IR | N_IR | win rate over "
             "previous (W/L/T) |", "|---|---|---|---|---|---|---|---|---|"]
    for e in table:
        ev = e.get("eval") or {}
        data = e.get("data") or {}
        rows = data.get("pairs", data.get("rows", data.get("prompts")))
        where = f"round-{e['round']:02d}/data ({data['config']})" if data else "-"
        lines.append(f"| {e['round']} | {where} | {'-' if rows is None else rows} | {num(e.get('rollout_mean_score'))}"
                     f" | {num(e.get('train_loss'))} | {num(ev.get('AL_avg'))}{interval(ev, 'AL_avg')} | "
                     f"{num(ev.get('IR'))}{interval(ev, 'IR')} | {num(ev.get('N_IR'))}{interval(ev, 'N_IR')} | "
                     f"{wins(e.get('win_rate'))} |")
    return "\n".join(lines) + "\n"


def _evaluated_entry(cfg: OnlineConfig, folder: Path, checkpoint: str, previous: str | None,
                     evaluate_fn, backend_for, pair_judge, eval_personas) -> tuple[dict | None, dict | None]:
    """The round's eval columns under the fixed protocol and (from round 1) its win rate over `previous`."""
    if evaluate_fn is None or not cfg.eval_turns:
        return None, None
    results = evaluate_fn(checkpoint, folder / "eval")
    wins = None
    if cfg.win_rate and previous is not None:
        from .online_winrate import win_rate_over_previous

        wins = win_rate_over_previous(folder, results, folder / "eval", backend_for(previous), pair_judge,
                                      eval_personas, cfg.eval_max_new_tokens, cfg.seed)
    return eval_summary(results), wins


def run_online(cfg: OnlineConfig, *, policy_backend=None, user_backend=None, judge_backend=None,
               train_fn=train_round, evaluate_fn=None, grpo=None, pair_judge_backend=None, teacher_backend=None,
               push_fn=None, options=None) -> list[dict]:
    """Run (or resume) every round; return the per-round table also written to `output_dir/rounds.json`.

    The backend arguments replace the ones built from the config's specs (tests pass scripted backends; a
    `policy_backend` callable receives the round's policy path). `evaluate_fn(checkpoint, folder)` returns the
    harness results of a checkpoint (the command passes the harness's; training never imports the harness); with
    it, round 0 (the starting policy) is evaluated under the same protocol, and each round's win rate over the
    previous policy is judged by `pair_judge_backend` (default: the judge's backend). `push_fn` replaces the upload.
    `grpo` (online_grpo.GrpoArguments) holds the fields only method grpo reads, the profile reward among them.
    `options` (BackendOptions, parsed beside the config) are the backends' engine, device, dtype, batching and
    endpoint settings, with per-role overrides for the roles `ONLINE_ROLES` names (the policy's rollouts on vLLM:
    `--engine vllm`, or `role_options` {"policy": {"engine": "vllm"}}).
    """
    from aloe_bench.core.backends import BackendOptions, GenerationConfig, build_backend
    from aloe_bench.core.hidden_block import HiddenBlockBackend
    from aloe_bench.core.judge import Judge, JudgeConfig
    from aloe_bench.core.personas import load_persona_set
    from aloe_bench.core.simulator import UserSimulator

    from .common import resolve_model
    from .online_grpo import GrpoArguments, ProfileTags, release_policy, train_grpo_round
    from .online_push import push_online, write_round_record

    grpo = grpo or GrpoArguments()
    grpo.check(cfg)
    options = options or BackendOptions()
    options.check_roles(ONLINE_ROLES)
    tags = ProfileTags() if grpo.profile_reward else None
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    personas = list(load_persona_set(cfg.personas, split=cfg.personas_split))[:cfg.max_personas]
    embedder = None
    if cfg.overlap_check == "cosine":
        from .persona_pools import load_embedder

        embedder = load_embedder()
    eval_personas = list(load_persona_set(cfg.eval_personas, split="test"))
    overlap = overlap_report(personas, eval_personas, cfg.overlap_threshold, embedder)
    atomic_write_json(out / "online_config.json", {**asdict(cfg), **({"grpo": asdict(grpo)} if cfg.method == "grpo"
                                                                     else {})})
    user = user_backend or build_backend(cfg.user_model, options.for_role("user"), base_url=cfg.user_base_url)
    simulator = UserSimulator(user, GenerationConfig(max_new_tokens=cfg.user_max_new_tokens, temperature=0.7))
    judge_backend = judge_backend or build_backend(cfg.judge_model, options.for_role("judge"),
                                                   base_url=cfg.judge_base_url)
    judge = Judge(judge_backend, JudgeConfig(preset=cfg.judge_preset))
    if cfg.accelerate_config and train_fn is train_round:
        from .online_round import launched_train_round as train_fn
    if cfg.method == "grpo" and train_fn is train_round:
        from functools import partial

        train_fn = partial(train_grpo_round, grpo=grpo, judge=judge, tags=tags)
    teacher = None
    if cfg.teacher:
        from .online_teacher import Teacher

        teacher = Teacher(teacher_backend or build_backend(cfg.teacher_model or cfg.judge_model,
                                                           options.for_role("teacher"),
                                                           base_url=None if cfg.teacher_model else cfg.judge_base_url),
                          cfg.max_new_tokens, cfg.seed)
    if policy_backend is not None:
        policy_path, base_model = cfg.policy, None
    else:
        policy_path, base_model = resolve_model(cfg.policy)

    held = {}  # the last policy backend built (a round's rollout policy answers the next round's win-rate states)

    def answering_for(path: str):
        """The previous policy answering the win-rate states: with the profile reward, its block is cut as the
        eval cuts the new policy's (`reply_hidden_block`), so the pair judge compares replies alone."""
        backend = backend_for(path)
        return backend if tags is None else HiddenBlockBackend(backend, tags.block)

    def backend_for(path: str):
        if path not in held:
            held.clear()
            held[path] = (policy_backend(path) if callable(policy_backend)
                          else build_backend(path, options.for_role("policy")))
        return held[path]

    pair_judge = pair_judge_backend or judge_backend
    table = []
    zero = out / "round-00"
    if evaluate_fn is not None and cfg.eval_turns:  # the starting policy under the same protocol
        if (zero / "round.json").exists():
            table.append(read_json(zero / "round.json"))
        else:
            zero.mkdir(parents=True, exist_ok=True)
            evaluation, _ = _evaluated_entry(cfg, zero, policy_path, None, evaluate_fn, backend_for, pair_judge,
                                             eval_personas)
            entry = {"round": 0, "policy": policy_path, "checkpoint": policy_path, "method": None, "data": None,
                     "rollout_mean_score": None, "train_loss": None, "eval": evaluation, "win_rate": None,
                     "overlap": overlap}
            atomic_write_json(zero / "round.json", entry)
            table.append(entry)
    for round_no in range(1, cfg.rounds + 1):
        folder = out / f"round-{round_no:02d}"
        checkpoint = folder / "checkpoint"
        if (checkpoint / ROUND_DONE).exists():
            table.append(read_json(folder / "round.json"))
            policy_path = str(checkpoint)
            continue
        folder.mkdir(parents=True, exist_ok=True)
        rows = rollout(cfg, round_no, personas, backend_for(policy_path), simulator, judge, folder / ROLLOUT_FILE,
                       tags=tags, teacher=teacher)
        if policy_backend is None:  # the rollout model leaves the cache: training and vLLM get its memory
            release_policy(held.pop(policy_path))  # the win rate loads it again after training
        data = build_round_data(cfg, rows, folder / "data", personas, tags)
        trained = folder / "train.json"  # written once the checkpoint is saved: a kill during eval keeps it
        if trained.exists():
            metrics = read_json(trained)
        else:
            metrics = train_fn(cfg, policy_path, folder / "data", data["config"], checkpoint) or {}
            write_round_record(cfg, round_no, checkpoint, policy_path, base_model, folder / "data", data, metrics)
            atomic_write_json(trained, metrics, default=str)
        evaluation, wins = _evaluated_entry(cfg, folder, str(checkpoint), policy_path, evaluate_fn,
                                            answering_for, pair_judge, eval_personas)
        if policy_backend is None and policy_path in held:  # the previous policy answered the win-rate states
            release_policy(held.pop(policy_path))
        scores = [c["score"] for r in rows for c in r["candidates"]
                  if c["score"] is not None and c.get("source", POLICY) == POLICY]
        entry = {"round": round_no, "policy": policy_path, "checkpoint": str(checkpoint), "method": cfg.method,
                 "data": data, "rollout_mean_score": statistics.fmean(scores) if scores else None,
                 "train_loss": metrics.get("train", {}).get("train_loss"), "eval": evaluation, "win_rate": wins,
                 **({"rewards": metrics["rewards"]} if "rewards" in metrics else {}),
                 "overlap": overlap}
        atomic_write_json(folder / "round.json", entry)
        atomic_write_json(checkpoint / ROUND_DONE, {"round": round_no})
        table.append(entry)
        policy_path = str(checkpoint)
        print(f"[online] round {round_no}: {data} mean rollout score {entry['rollout_mean_score']}"
              + (f"; win rate over the previous policy {wins}" if wins else ""), flush=True)
    plotted = write_al_plot(table, out / "al_by_round.png")
    section = rounds_card_section(cfg, table)
    atomic_write_text(out / "rounds.md", section)
    atomic_write_text(Path(table[-1]["checkpoint"]) / "aloe_rounds.md", section)
    atomic_write_json(out / ROUNDS_FILE, {"rounds": table, "overlap": overlap, "plot": plotted and "al_by_round.png",
                                          "eval_protocol": {"personas": cfg.eval_personas, "turns": cfg.eval_turns,
                                                            "max_personas": cfg.eval_max_personas,
                                                            "user_model": cfg.user_model,
                                                            "judge_model": cfg.judge_model, "seed": cfg.seed,
                                                            "win_rate": "pair judge, both orders" if cfg.win_rate
                                                            else None}})
    if cfg.push_to_hub:
        urls = (push_fn or push_online)(cfg, table, out, section)
        print(f"uploaded: {urls}", flush=True)
    return table

