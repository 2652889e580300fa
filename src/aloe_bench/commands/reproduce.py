"""`aloe reproduce`: the paper's pipeline at small scale on one model, end to end and resumable.

grow personas -> generate preference conversations -> build the dataset -> the training stages of the chosen
`--arms` -> ALOE evaluation of every arm on the same eval personas, seed and protocol -> one comparison table
(`arms.json`, `arms.md`) and a Table-1-style table in the model card. The arms are the comparison of arXiv
2406.18954 (SFT alone, SFT then IPO/KTO, IPO/KTO alone) plus SFT+DPO and SFT followed by online rounds
(`aloe train online`); arms share their stages (one dataset, one SFT checkpoint for every sft+X arm, one base
eval). Every step writes into `work_dir` and is skipped (or resumed) when its output is already there.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from aloe_bench.core.errors import ConfigError, MissingFileError
from aloe_bench.core.io import atomic_write_json, atomic_write_text, read_json


@dataclass(frozen=True)
class Arm:
    """One row of the comparison: the model a training stage makes from its parent arm's checkpoint."""

    name: str
    label: str
    parent: str | None = None   # the arm whose checkpoint the stage starts from (None: the base model, no stage)
    stage: str | None = None    # `aloe train` stage: sft, dpo (DPO or IPO by the recipe's loss_type), kto, online
    recipe: str | None = None   # the stage's recipe file in the recipes folder (online: chosen by --tiny)
    folder: str | None = None   # the stage's output under work_dir


#: Every arm, in the comparison table's order. `sft+dpo` keeps the folder `checkpoints/dpo` that reproduce used
#: before arms existed, so an earlier run resumes without retraining.
ARMS: dict[str, Arm] = {arm.name: arm for arm in (
    Arm("base", "Base"),
    Arm("sft", "SFT (preferred)", "base", "sft", "sft.yaml", "checkpoints/sft"),
    Arm("sft+dpo", "SFT + DPO", "sft", "dpo", "dpo.yaml", "checkpoints/dpo"),
    Arm("sft+ipo", "SFT + IPO", "sft", "dpo", "ipo.yaml", "checkpoints/sft-ipo"),
    Arm("sft+kto", "SFT + KTO", "sft", "kto", "kto.yaml", "checkpoints/sft-kto"),
    Arm("ipo", "IPO (from base)", "base", "dpo", "ipo.yaml", "checkpoints/ipo"),
    Arm("kto", "KTO (from base)", "base", "kto", "kto.yaml", "checkpoints/kto"),
    Arm("sft+online", "SFT + online rounds", "sft", "online", None, "online"),
)}
DEFAULT_ARMS = "base,sft,sft+dpo"
DATA_STEPS = ("personas", "generate", "dataset")


def parse_arms(text: str) -> tuple[str, ...]:
    """The arms named in `--arms` (comma-separated), in the table's order, each once; an unknown one is an error."""
    text = ",".join(map(str, text)) if isinstance(text, (list, tuple)) else str(text or "")  # a recipe's YAML list
    names = [name.strip().lower() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in ARMS]
    if unknown or not names:
        what = f"unknown arm(s) {', '.join(unknown)}" if unknown else "no arm named"
        raise ConfigError(f"--arms: {what}; valid arms: {', '.join(ARMS)}")
    return tuple(name for name in ARMS if name in names)


def training_stages(arms) -> list[str]:
    """The arms whose training stage must run for `arms`: each arm's own stage and its parents', each once, parents
    first (every sft+X arm needs the one `sft` stage)."""
    needed = set()
    for name in arms:
        while name is not None and ARMS[name].stage is not None:
            needed.add(name)
            name = ARMS[name].parent
    return [name for name in ARMS if name in needed]


def stage_plan(arms) -> list[str]:
    """Every step `arms` need, in running order: the data steps (only if an arm trains), one training step per
    needed stage (`train ARM`), one eval per requested arm (`eval ARM`). Each is skipped when already done."""
    stages = training_stages(arms)
    return [*(DATA_STEPS if stages else ()), *(f"train {name}" for name in stages), *(f"eval {name}" for name in arms)]


@dataclass
class ReproduceConfig:
    """Sizes of the small-scale run. The defaults finish within about an hour on 2 CPU cores with the embedded model."""

    work_dir: str = field(default="runs/reproduce", metadata={"help": "Every step's output goes under this folder."})
    model: str = field(default="embedded", metadata={"help": "Base model (and data/judge model) spec."})
    arms: str = field(default=DEFAULT_ARMS, metadata={
        "help": "Comma-separated arms to train and compare: " + ", ".join(ARMS) + ". Arms share stages (one SFT "
                "checkpoint for every sft+X arm); the table follows this list's canonical order."})
    recipes: str | None = field(default=None, metadata={
        "help": "Folder with the stages' recipes: sft.yaml, dpo.yaml, ipo.yaml, kto.yaml, online_small.yaml, "
                "online_tiny.yaml, as each arm needs (default: training/recipes/embedded)."})
    online_recipe: str | None = field(default=None, metadata={
        "help": "Recipe of the sft+online arm's `aloe train online` rounds (default: online_tiny.yaml with --tiny, "
                "else online_small.yaml, in the recipes folder). Its policy, training personas (the dataset's "
                "train split), user and judge model, seed and output folder are reproduce's; its per-round eval is "
                "off (the arm's last checkpoint is evaluated like every other arm)."})
    grow_rounds: int = field(default=1, metadata={"help": "Persona-growth rounds per pool (profiles, personalities)."})
    grow_requests: int = field(default=20, metadata={"help": "One-item growth requests per round (one batch)."})
    grow_min_similarity: float = field(default=0.3, metadata={
        "help": "Drop grown items whose nearest pool item is less similar than this (off-topic text)."})
    grow_max_new_tokens: int = field(default=160, metadata={"help": "Token limit of one grown item."})
    n_conversations: int = field(default=16, metadata={"help": "Training conversations to generate."})
    gen_turns: int = field(default=3, metadata={"help": "Turns per training conversation."})
    eval_personas: int = field(default=8, metadata={"help": "Eval personas (of the packaged 100) per model."})
    eval_turns: int = field(default=6, metadata={"help": "Turns per eval conversation."})
    reply_max_new_tokens: int = field(default=64, metadata={"help": "Reply length in generation and evaluation."})
    max_steps: int = field(default=-1, metadata={
        "help": "Cap optimizer steps per sft/dpo/kto stage (-1: one epoch; online rounds take their recipe's)."})
    card: str = field(default="model_card.md", metadata={"help": "Where to write the model card with the table."})
    tiny: bool = field(default=False, metadata={
        "help": "Smoke preset (minutes): 2 growth requests, 4 conversations x 2 turns, 2 training steps, 2 personas x "
                "2 turns, the online arm from online_tiny.yaml."})
    seed: int = field(default=0, metadata={"help": "Seed of every step."})
    pair_order: str = field(default="once", metadata={
        "help": "The pair judge's orders (aloe generate --pair_order): once, as the paper asked; the embedded judge "
                "prefers one position so consistently that `both` leaves it no pair to train on."})

    def __post_init__(self):
        self.arm_names = parse_arms(self.arms)
        if self.tiny:
            self.grow_rounds, self.grow_requests, self.grow_max_new_tokens = 1, 2, 48
            self.n_conversations, self.gen_turns = 4, 2
            self.eval_personas, self.eval_turns, self.reply_max_new_tokens, self.max_steps = 2, 2, 24, 2

    def recipes_folder(self) -> Path:
        import aloe_bench.training

        return Path(self.recipes) if self.recipes else Path(aloe_bench.training.__file__).parent / "recipes" / "embedded"

    def recipe_for(self, arm: Arm) -> Path:
        if arm.stage == "online":
            return Path(self.online_recipe) if self.online_recipe else (
                self.recipes_folder() / ("online_tiny.yaml" if self.tiny else "online_small.yaml"))
        return self.recipes_folder() / arm.recipe


def _log(step: str, text: str) -> None:
    print(f"[reproduce:{step}] {text}", flush=True)


class StepTimes:
    """Wall time per step summed over every invocation, kept in `steps.json`: a resumed run adds only what it
    redid, so the card reports the pipeline's real cost rather than the last (short) invocation's."""

    def __init__(self, path: Path):
        self.path = path
        self.seconds: dict[str, float] = read_json(path) if path.exists() else {}

    @contextmanager
    def step(self, name: str):
        began = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - began, 1)
            atomic_write_json(self.path, self.seconds)

    @property
    def total(self) -> float:
        return round(sum(self.seconds.values()), 1)


def grow_personas(cfg: ReproduceConfig, root: Path) -> tuple[dict[str, Path], dict[str, dict]]:
    from aloe_bench.training.persona_pools import GrowConfig, grow_pool, pool_paths

    pools, summaries = {}, {}
    for kind in ("profile", "personality"):
        grow = GrowConfig(kind=kind, output_dir=str(root / "pools"), model=cfg.model, max_rounds=cfg.grow_rounds,
                          requests_per_round=cfg.grow_requests, min_similarity=cfg.grow_min_similarity,
                          max_new_tokens=cfg.grow_max_new_tokens, seed=cfg.seed)
        summary = grow_pool(grow)
        pools[kind], summaries[kind] = pool_paths(grow)[0], summary
        _log("personas", f"{kind}: {json.dumps(summary, default=str)[:300]}")
    return pools, summaries


def generate(cfg: ReproduceConfig, root: Path, pools: dict[str, Path]) -> Path:
    from aloe_bench.training.generate import generate_conversations
    from aloe_bench.training.generate_config import GenerateConfig

    out = root / "generated"
    gen = GenerateConfig(output_dir=str(out), profiles=str(pools["profile"]), personalities=str(pools["personality"]),
                         n_conversations=cfg.n_conversations, turns=cfg.gen_turns, user_model=cfg.model,
                         induction_model=cfg.model, preferred_model=cfg.model, rejected_model=cfg.model,
                         judge_model=cfg.model, reply_max_new_tokens=cfg.reply_max_new_tokens, seed=cfg.seed,
                         pair_order=cfg.pair_order)
    counts = generate_conversations(gen)
    _log("generate", json.dumps(counts, default=str)[:300])
    return out, counts


def build_dataset_folder(cfg: ReproduceConfig, root: Path, generated: Path) -> Path:
    from aloe_bench.training.dataset import BuildConfig, build_dataset

    out = root / "dataset"
    summary = build_dataset(BuildConfig(conversations=str(generated), output_dir=str(out), overwrite=True))
    _log("dataset", f"written to {out}: {json.dumps(summary, default=str)[:300]}")
    return out


def check_recipes(cfg: ReproduceConfig) -> None:
    """Every recipe the chosen arms need exists, before any step runs (one line naming the missing file)."""
    for name in training_stages(cfg.arm_names):
        path = cfg.recipe_for(ARMS[name])
        if not path.is_file():
            raise MissingFileError(f"{path}: no such recipe (arm {name} needs it; set --recipes or --online_recipe)")


def checkpoint_of(cfg: ReproduceConfig, root: Path, name: str) -> str:
    """The model an arm evaluates (and its children start from): the base spec, a stage's folder, or the online
    arm's last round's checkpoint."""
    arm = ARMS[name]
    if arm.stage is None:
        return cfg.model
    if arm.stage == "online":
        return str(root / arm.folder / f"round-{online_config(cfg, root).rounds:02d}" / "checkpoint")
    return str(root / arm.folder)


def online_config(cfg: ReproduceConfig, root: Path, dataset: Path | None = None):
    """The sft+online arm's `OnlineConfig`: its recipe, with the policy, training personas, models, seed and output
    folder set by reproduce (as flags over the recipe, the way `aloe train online` reads them)."""
    from aloe_bench.core.recipes import RecipeParser, dataclass_from_args
    from aloe_bench.training.online import OnlineConfig

    flags = ["--config", str(cfg.recipe_for(ARMS["sft+online"])),
             "--policy", checkpoint_of(cfg, root, ARMS["sft+online"].parent),
             "--personas", str(dataset or root / "dataset"), "--personas_split", "train",
             "--user_model", cfg.model, "--judge_model", cfg.model, "--eval_turns", "0",
             "--output_dir", str(root / ARMS["sft+online"].folder), "--seed", str(cfg.seed)]
    return dataclass_from_args(RecipeParser([OnlineConfig]).parse_args(flags), OnlineConfig)


def train_arm(cfg: ReproduceConfig, root: Path, dataset: Path, name: str) -> str:
    """Run (or skip, when it finished before) the training stage of one arm; return its checkpoint."""
    from aloe_bench.training.common import TRAINING_INFO

    from .train import run_stage

    arm = ARMS[name]
    out = Path(checkpoint_of(cfg, root, name))
    if arm.stage == "online":
        from aloe_bench.training.online import ROUND_DONE, run_online

        if (out / ROUND_DONE).exists():
            _log(name, f"done already: {out}")
        else:
            run_online(online_config(cfg, root, dataset))  # resumes inside: finished rounds are not redone
        return str(out)
    if (out / TRAINING_INFO).exists():
        _log(name, f"done already: {out}")
        return str(out)
    start = checkpoint_of(cfg, root, arm.parent)
    code = run_stage(arm.stage, ["--config", str(cfg.recipe_for(arm)), "--output_dir", str(out),
                                 "--dataset_name", str(dataset), "--seed", str(cfg.seed),
                                 "--max_steps", str(cfg.max_steps), "--model_name_or_path", start])
    if code:
        raise RuntimeError(f"`aloe train {arm.stage}` (arm {name}) failed with exit code {code}")
    return str(out)


def evaluate(cfg: ReproduceConfig, root: Path, models: dict[str, str]) -> dict[str, dict]:
    from aloe_bench.harness import EvalConfig, evaluate_model
    from aloe_bench.harness.protocol import resolve_run

    results = {}
    for name, spec in models.items():
        out = Path(spec) / "aloe_eval" if Path(spec).is_dir() else root / "eval" / name
        run = resolve_run(EvalConfig(protocol="smoke", model=spec, user_model=cfg.model, judge_model=cfg.model,
                         max_personas=cfg.eval_personas, turns=cfg.eval_turns,
                         reply_max_new_tokens=cfg.reply_max_new_tokens, user_max_new_tokens=64, seed=cfg.seed,
                         output_dir=str(out)))
        results[name] = evaluate_model(run)
        m = results[name]["metrics"]
        _log("eval", f"{name}: AL_avg {m.get('AL_avg')}, IR {m.get('IR')}, N_IR {m.get('N_IR')}")
    return results


def _growth_text(cfg: ReproduceConfig, growth: dict | None) -> str:
    if not growth:
        return f"persona growth ({cfg.grow_rounds} round per pool)"
    parts = [f"{g.get('kept', '?')} new {kind} item(s) kept, pool {g.get('pool_size', '?')}" for kind, g in growth.items()]
    return f"persona growth ({cfg.grow_rounds} round per pool: {'; '.join(parts)})"


def _base_label(cfg: ReproduceConfig) -> str:
    return "Base (" + ("SmolLM2-135M-Instruct" if cfg.model == "embedded" else cfg.model) + ")"


def _arm_label(cfg: ReproduceConfig, name: str) -> str:
    return _base_label(cfg) if name == "base" else ARMS[name].label


def _training_text(cfg: ReproduceConfig, arms) -> str:
    stages = training_stages(arms)
    if not stages:
        return "no training"
    text = {"sft": "SFT on the preferred replies", "sft+dpo": "DPO from the SFT model",
            "sft+ipo": "IPO from the SFT model", "sft+kto": "KTO from the SFT model", "ipo": "IPO from the base model",
            "kto": "KTO from the base model", "sft+online": "online preference rounds from the SFT model"}
    return ", ".join(text[name] for name in stages)


def reproduce_section(cfg: ReproduceConfig, results: dict[str, dict], preference: dict | None, wall_s: float,
                      growth: dict | None = None, data_counts: dict | None = None, card_arm: str = "sft+dpo") -> str:
    from aloe_bench.training.card import aloe_table

    arms = [name for name in ARMS if name in results]
    rows = [(_arm_label(cfg, name), results[name]) for name in arms]
    lines = [
        "## Small-scale reproduction (`aloe reproduce`)",
        "",
        f"`aloe reproduce` ran the whole pipeline on `{cfg.model}` in {wall_s / 60:.0f} minutes of wall time on this "
        f"machine (2 CPU cores; summed over its invocations, per step in `steps.json`): {_growth_text(cfg, growth)}, "
        f"{cfg.n_conversations} generated conversations of "
        f"{cfg.gen_turns} turns, the dataset, {_training_text(cfg, arms)}, and ALOE on the "
        f"first {cfg.eval_personas} eval personas for {cfg.eval_turns} turns, with the same model as user simulator "
        "and judge. AL@k is the mean judge score (1-5) at turn k; IR and N_IR are the slopes of the AL curve "
        "(raw and min-max normalised).",
        "",
        aloe_table(rows),
    ]
    picks = (data_counts or {}).get("judge_picked_preferred"), (data_counts or {}).get("judge_picked_rejected")
    if None not in picks and sum(picks):
        lines += ["", f"Training pairs: the pair judge picked the reply written with the revealed persona {picks[0]} "
                      f"times of {sum(picks)} ({picks[0] / sum(picks):.0%}). Near 50% the labels carry little "
                      "preference signal for SFT or DPO to learn, which is what a judge of this size gives."]
    if preference:
        pol, ref = preference["policy_raw"], preference["reference_raw"]
        model, reference = ARMS[card_arm].label, _arm_label(cfg, ARMS[card_arm].parent or "base")
        lines += ["", f"On {preference['pairs']} held-out preference pairs the {model} model's implicit-reward accuracy "
                      f"is {preference['policy_rewards']['accuracy']:.3f} (mean margin "
                      f"{preference['policy_rewards']['margin']:+.4f}); its log-prob margin chosen-rejected is "
                      f"{pol['logp_margin']:+.3f} against {ref['logp_margin']:+.3f} for its reference, {reference}."]
    return "\n".join(lines)


# --- the comparison table -----------------------------------------------------------------------------------------

def arm_rows(cfg: ReproduceConfig, results: dict[str, dict], checkpoints: dict[str, str]) -> list[dict]:
    """One JSON row per evaluated arm: what it trained from, its checkpoint and AL_avg / IR / N_IR with intervals."""
    rows = []
    for name in ARMS:
        if name not in results:
            continue
        arm, metrics = ARMS[name], results[name]["metrics"]
        intervals = metrics.get("intervals") or {}
        rows.append({"arm": name, "label": _arm_label(cfg, name), "stage": arm.stage,
                     "trained_from": arm.parent, "checkpoint": checkpoints.get(name, cfg.model),
                     "AL": metrics.get("AL"), **{k: metrics.get(k) for k in ("AL_avg", "IR", "N_IR")},
                     "intervals": {k: intervals.get(k) for k in ("AL_avg", "IR", "N_IR")},
                     "confidence": metrics.get("confidence"),
                     "judge_failures": results[name].get("counts", {}).get("judge_failures"),
                     "results_file": results[name].get("results_file")})
    return rows


def _with_interval(value, interval, digits: int) -> str:
    if value is None:
        return "n/a"
    low, high = (interval or [None, None])[:2]
    bounds = f" [{low:.{digits}f}, {high:.{digits}f}]" if low is not None and high is not None else ""
    return f"{value:.{digits}f}{bounds}"


def arms_markdown(cfg: ReproduceConfig, rows: list[dict]) -> str:
    """The comparison as a README-ready markdown table, with the protocol every arm shared."""
    confidence = next((r["confidence"] for r in rows if r.get("confidence")), 0.95)
    level = f"{confidence:.0%}"
    lines = [f"| Arm | Trained from | AL_avg [{level} CI] | IR [{level} CI] | N_IR [{level} CI] |",
             "|---|---|---|---|---|"]
    for r in rows:
        start = "-" if r["trained_from"] is None else "base" if r["trained_from"] == "base" else r["trained_from"].upper()
        if r["stage"]:
            method = {"sft": "SFT", "dpo": "IPO" if "ipo" in r["arm"] else "DPO", "kto": "KTO",
                      "online": "online rounds"}[r["stage"]]
            start = f"{start} ({method})"
        lines.append(f"| {r['label']} | {start} | {_with_interval(r['AL_avg'], r['intervals']['AL_avg'], 3)} | "
                     f"{_with_interval(r['IR'], r['intervals']['IR'], 4)} | "
                     f"{_with_interval(r['N_IR'], r['intervals']['N_IR'], 3)} |")
    lines += ["", f"Every arm: the first {cfg.eval_personas} eval personas x {cfg.eval_turns} turns, `{cfg.model}` as "
                  f"role-play user and judge, seed {cfg.seed}, greedy replies of up to {cfg.reply_max_new_tokens} "
                  f"tokens; intervals: percentile bootstrap over conversations."]
    return "\n".join(lines) + "\n"


def _card_arm(stages) -> str | None:
    """The checkpoint the model card is written for: SFT+DPO as before arms existed, else the first trained stage
    in this order (an online round's checkpoint has no training record to write a card from: its rounds.md is
    the card's section)."""
    for name in ("sft+dpo", "sft+ipo", "sft+kto", "ipo", "kto", "sft"):
        if name in stages:
            return name
    return None


def run_reproduce(cfg: ReproduceConfig) -> dict:
    """Run (or resume) every step the arms need; write the tables and the card; return paths and metrics."""
    from aloe_bench.training.card import build_push_folder, read_info

    check_recipes(cfg)
    arms, stages = cfg.arm_names, training_stages(cfg.arm_names)
    root = Path(cfg.work_dir)
    root.mkdir(parents=True, exist_ok=True)
    _log("plan", " -> ".join(stage_plan(arms)))
    times = StepTimes(root / "steps.json")
    growth = data_counts = None
    checkpoints: dict[str, str] = {}
    if stages:
        with times.step("personas"):
            pools, growth = grow_personas(cfg, root)
        with times.step("generate"):
            generated, data_counts = generate(cfg, root, pools)
        with times.step("dataset"):
            dataset = build_dataset_folder(cfg, root, generated)
        for name in stages:
            with times.step(f"train {name}"):
                checkpoints[name] = train_arm(cfg, root, dataset, name)
    results = {}
    for name in arms:
        with times.step(f"eval {name}"):
            results.update(evaluate(cfg, root, {name: checkpoints.get(name, cfg.model)}))
    rows = arm_rows(cfg, results, checkpoints)
    table = arms_markdown(cfg, rows)
    atomic_write_text(root / "arms.md", table)
    atomic_write_json(root / "arms.json", {
        "arms": rows, "plan": stage_plan(arms),
        "protocol": {"eval_personas": cfg.eval_personas, "eval_turns": cfg.eval_turns, "user_model": cfg.model,
                     "judge_model": cfg.model, "seed": cfg.seed, "reply_max_new_tokens": cfg.reply_max_new_tokens},
        "wall_s": times.total, "step_wall_s": times.seconds}, default=str)
    _log("arms", f"comparison in {root / 'arms.md'} and {root / 'arms.json'}:\n{table}")
    card_arm, card = _card_arm(stages), None
    preference = read_info(checkpoints[card_arm]).get("preference_eval") if card_arm else None
    if card_arm:
        section = reproduce_section(cfg, results, preference, times.total, growth, data_counts, card_arm)
        section += "\n\nAll arms, with intervals:\n\n" + table
        base = "smollm2-135m-instruct" if cfg.model == "embedded" else Path(cfg.model.rstrip("/")).name.lower()
        folder = build_push_folder(checkpoints[card_arm], extra=section,
                                   model_name=f"{base}-aloe-{card_arm.replace('+', '-')}")
        card = Path(cfg.card)
        atomic_write_text(card, (folder / "README.md").read_text(encoding="utf-8"))
        _log("card", f"wrote {card} (and {folder / 'README.md'}) for arm {card_arm}")
    else:
        _log("card", "no trained arm: no model card written")
    atomic_write_json(root / "reproduce.json", {
        "config": cfg.__dict__, "arms": list(arms), "checkpoints": checkpoints,
        "metrics": {k: {m: r["metrics"].get(m) for m in ("AL", "AL_avg", "IR", "N_IR")} for k, r in results.items()},
        "results_files": {k: r.get("results_file") for k, r in results.items()}, "preference_eval": preference,
        "persona_growth": growth, "generation": data_counts,
        "wall_s": times.total, "step_wall_s": times.seconds}, default=str)
    _log("done", f"summary in {root / 'reproduce.json'}; {times.total:.0f} s of wall time in all")
    return {"card": str(card) if card else None, "checkpoints": checkpoints, "results": results, "arms": rows}


def _handler(args) -> int:
    from aloe_bench.core.recipes import dataclass_from_args

    run_reproduce(dataclass_from_args(args, ReproduceConfig))
    return 0


def register(sub) -> None:
    from aloe_bench.core.recipes import add_recipe_command

    add_recipe_command(sub, "reproduce", [ReproduceConfig], _handler,
                       "Small-scale paper reproduction on one model: personas, data, the --arms' training stages (SFT, DPO, "
                       "IPO, KTO, online rounds), one ALOE comparison table (arms.md, arms.json) and the card.")
