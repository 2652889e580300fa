"""`aloe train online` with `method: grpo`: a round of TRL's GRPOTrainer whose reward is the ALOE judge.

The round's prompts are the conversation states the current policy reached in this round's rollouts (history plus
the role-play user's next message), so they are refreshed from the policy every round. Each row carries its
persona in dataset columns (`persona_id`, `profile`, `personality`); TRL hands those columns to the reward
function, which asks the project's judge (any preset) to score every sampled reply with that row's persona. A
failed judgement is recorded in the round's `rewards.jsonl` and returned as None: TRL 1.16 turns None into NaN,
leaves it out of the group's mean and spread and gives that sample no advantage, so it never becomes a number.

Optional (`profile_reward: true`), after RLPA: the policy is asked (prompt `profile_inference`) to write what it
has gathered about the user between <profile> and </profile> before its reply. The block is cut out of the reply
before the role-play user, the judge or the history see it (in rollouts too), and a second reward term is the F1
of the guess against the persona's profile: the judge model counts (prompt `profile_match`) how many guessed
statements the profile supports (precision, over the guessed statements) and how many profile facts the guess
covers (recall, over the profile's facts). An answer without both counts in range is a recorded failure and the
sample's reward is None; a reply with no guessed statement has precision undefined and recall 0, so F1 0.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from aloe_bench.core.errors import ConfigError
from aloe_bench.core.hidden_block import HiddenBlock

GRPO_CONFIG = "grpo"
REWARDS_FILE = "rewards.jsonl"
VLLM_MODES = ("colocate", "server")


@dataclass
class GrpoArguments:
    """`aloe train online` fields that only the `grpo` method reads: the profile reward, TRL's vLLM sampling and the
    GPU training settings (accumulation, dtype). The shared rollout and trainer fields (LoRA among them, which every
    method reads) stay in OnlineConfig:
    `candidates` is GRPO's num_generations, `max_new_tokens` its max_completion_length, `beta` its KL coefficient."""

    profile_reward: bool = field(default=False, metadata={
        "help": "Add RLPA's profile-inference reward: the policy writes its guess of the user in "
                "<profile>...</profile> (cut before anyone else sees the reply); reward += weight x F1 of the guess."})
    profile_reward_weight: float = field(default=1.0, metadata={
        "help": "Weight of the profile F1 (0-1) added to the judge's score (1-5)."})
    profile_max_new_tokens: int = field(default=32, metadata={"help": "Tokens of the judge's two-count answer."})
    gradient_accumulation_steps: int = 1
    activation_checkpointing: bool = False
    model_dtype: str | None = field(default=None, metadata={
        "help": "dtype the policy loads in for training (bfloat16 on GPUs; None: the checkpoint's own)."})
    attn_implementation: str | None = field(default=None, metadata={"help": "e.g. flash_attention_2 on GPUs."})
    use_vllm: bool = field(default=False, metadata={"help": "Sample GRPO's completions with vLLM (TRL's use_vllm)."})
    vllm_mode: str = field(default="colocate", metadata={
        "help": "colocate: vLLM in the training process, on the same GPU; server: a separate `trl vllm-serve`."})
    vllm_gpu_memory_utilization: float = field(default=0.3, metadata={
        "help": "colocate: the GPU memory share vLLM reserves (the rest trains)."})
    vllm_enable_sleep_mode: bool = field(default=False, metadata={
        "help": "colocate: vLLM frees its memory while the optimizer steps."})
    vllm_server_base_url: str | None = field(default=None, metadata={"help": "server mode: the vLLM server's URL."})
    vllm_max_model_length: int | None = None

    def check(self, cfg) -> None:
        """Refuse settings that cannot work together, in one line each."""
        if self.profile_reward and cfg.method != "grpo":
            raise ConfigError(f"profile_reward needs method grpo (a reward), got method {cfg.method}")
        if self.vllm_mode not in VLLM_MODES:
            raise ConfigError(f"vllm_mode {self.vllm_mode!r}: choose colocate or server")
        if cfg.method != "grpo":
            return
        if cfg.candidates < 2:
            raise ConfigError(f"method grpo compares a group of samples: candidates (num_generations) must be >= 2, "
                              f"got {cfg.candidates}")
        batch = cfg.per_device_train_batch_size * self.gradient_accumulation_steps
        if batch % cfg.candidates:
            raise ConfigError(f"method grpo: per_device_train_batch_size x gradient_accumulation_steps ({batch}) "
                              f"must be a multiple of candidates ({cfg.candidates}), whole groups of samples")
        if not 0 <= self.profile_reward_weight:
            raise ConfigError("profile_reward_weight must be >= 0")


# --- the profile block ------------------------------------------------------------------------------------------

class ProfileTags:
    """The policy's profile block: the instruction added to its conversation, and cutting the block out of a reply."""

    def __init__(self, prompts=None):
        from aloe_bench.core.prompts import load_prompts

        book = prompts or load_prompts()
        self.prompt = book["profile_inference"]
        self.sha256 = self.prompt.sha256[:16]
        self.block = HiddenBlock.of_prompt(self.prompt)

    def instruct(self, messages: list[dict]) -> list[dict]:
        """The conversation as the policy sees it: the instruction first, as a system message."""
        return [{"role": "system", "content": self.prompt["system"]}, *messages]

    def split(self, text: str | None) -> tuple[str | None, str | None]:
        """(reply without the block, the block's text or None when there is none): `HiddenBlock.split`, the cut
        `aloe eval --reply_hidden_block` makes too."""
        return self.block.split(text)


_FACT_BREAK = re.compile(r"(?<=[.!?;])\s+|\n+|,\s+(?:and\s+)?|\s+and\s+")
_BULLET = re.compile(r"^\s*(?:[-*\u2022]+|\d+[.)])\s*")


def split_facts(text: str | None) -> list[str]:
    """A text cut into short statements: at sentence ends, semicolons, line breaks, commas and "and"; bullets and
    numbering dropped; fragments of fewer than two words left out."""
    out = []
    for part in _FACT_BREAK.split(text or ""):
        part = _BULLET.sub("", part).strip(" .;,")
        if len(part.split()) >= 2:
            out.append(part)
    return out


def f1_from_counts(supported: int, covered: int, n_inferred: int, n_facts: int) -> dict:
    """Precision = supported / guessed statements, recall = covered / profile facts, F1 their harmonic mean."""
    precision = supported / n_inferred if n_inferred else None
    recall = covered / n_facts
    p = precision or 0.0
    f1 = 0.0 if p + recall == 0 else 2 * p * recall / (p + recall)
    return {"precision": precision, "recall": recall, "f1": f1}


@dataclass
class ProfileVerdict:
    f1: float | None
    precision: float | None = None
    recall: float | None = None
    supported: int | None = None
    covered: int | None = None
    n_inferred: int = 0
    n_facts: int = 0
    error: str | None = None
    raw: str | None = None


class ProfileScorer:
    """The judge model counts which guessed statements match a persona's profile; the verdict's F1 follows."""

    def __init__(self, backend, prompts=None, max_retries: int = 2, max_new_tokens: int = 32, seed: int = 0):
        from aloe_bench.core.prompts import load_prompts

        self.backend = backend
        self.prompt = (prompts or load_prompts())["profile_match"]
        self.sha256 = self.prompt.sha256[:16]
        self.max_retries, self.max_new_tokens, self.seed = max_retries, max_new_tokens, seed

    def request(self, facts: list[str], inferred: list[str]) -> list[dict]:
        numbered = lambda items: "\n".join(f"{i}. {t}" for i, t in enumerate(items, 1))  # noqa: E731
        user = self.prompt.render("user", facts=numbered(facts), inferred=numbered(inferred),
                                  n_inferred=len(inferred), n_facts=len(facts))
        return [{"role": "system", "content": self.prompt["system"]}, {"role": "user", "content": user}]

    def _parser(self, n_inferred: int, n_facts: int, quoted: list[str]):
        from aloe_bench.core.judge import parse_score
        from aloe_bench.core.reask import Unparsable

        def parse(text: str) -> tuple[int, int]:
            supported = parse_score(text, self.prompt["supported_pattern"], quoted)
            covered = parse_score(text, self.prompt["covered_pattern"], quoted)
            if supported is None or covered is None:
                raise Unparsable("unparsable profile count: " + ", ".join(
                    name for name, v in (("SUPPORTED", supported), ("COVERED", covered)) if v is None) + " missing")
            if supported > n_inferred or covered > n_facts:
                raise Unparsable(f"profile count out of range: SUPPORTED {supported} of {n_inferred}, "
                                 f"COVERED {covered} of {n_facts}")
            return supported, covered
        return parse

    def score(self, pairs: list[tuple]) -> list[ProfileVerdict]:
        """One verdict per (persona, guessed block or None)."""
        from aloe_bench.core.backends import GenerationConfig
        from aloe_bench.core.reask import Reasker

        verdicts: list[ProfileVerdict | None] = [None] * len(pairs)
        asks, where, parsers = [], [], []
        for i, (persona, block) in enumerate(pairs):
            facts, inferred = split_facts(persona.profile), split_facts(block)
            if not facts:
                verdicts[i] = ProfileVerdict(None, error="the persona's profile has no statement to match")
            elif not inferred:  # nothing guessed: precision undefined, recall 0, F1 0 (no judgement needed)
                verdicts[i] = ProfileVerdict(0.0, None, 0.0, 0, 0, 0, len(facts))
            else:
                request = self.request(facts, inferred)
                asks.append(request)
                where.append((i, len(inferred), len(facts)))
                parsers.append(self._parser(len(inferred), len(facts), [m["content"] for m in request]))
        if asks:
            config = GenerationConfig(max_new_tokens=self.max_new_tokens, temperature=0.0, seed=self.seed)
            answers = Reasker(self.max_retries).ask(self.backend, asks, config, parsers)
            for (i, n_inf, n_facts), answer in zip(where, answers):
                if answer.value is None:
                    verdicts[i] = ProfileVerdict(None, n_inferred=n_inf, n_facts=n_facts, error=answer.error,
                                                 raw=answer.raw)
                    continue
                supported, covered = answer.value
                verdicts[i] = ProfileVerdict(supported=supported, covered=covered, n_inferred=n_inf, n_facts=n_facts,
                                             raw=answer.raw, **f1_from_counts(supported, covered, n_inf, n_facts))
        return verdicts


# --- the round's prompts ----------------------------------------------------------------------------------------

def grpo_rows(rows: list[dict], personas, tags: ProfileTags | None = None) -> tuple[list[dict], dict]:
    """One prompt per rollout turn: the conversation state the policy answered (its history, the user's message),
    with the profile instruction first when the profile reward is on, and the persona in columns."""
    out = []
    for row in rows:
        persona = personas[row["persona"]]
        messages = row["history"] + [{"role": "user", "content": row["user"]}]
        out.append({"prompt": tags.instruct(messages) if tags else messages, "persona_id": persona.id,
                    "profile": persona.profile, "personality": persona.personality, "turn": row["turn"]})
    counts = {"turns": len(rows), "prompts": len(out), "personas": len({r["persona_id"] for r in out}),
              "profile_reward": tags is not None}
    if tags is not None:
        counts["profile_inference_sha256"] = tags.sha256
    return out, counts


# --- the reward -------------------------------------------------------------------------------------------------

def _text(completion) -> str:
    """A completion's text: conversational (a list of messages) or plain."""
    if isinstance(completion, list):
        return "".join(m.get("content") or "" for m in completion if m.get("role", "assistant") == "assistant")
    return completion


class JudgeReward:
    """GRPO's reward: the ALOE judge's score of each sampled reply with its row's persona (+ the weighted profile
    F1 when on); None, recorded in `log`, where a judgement failed. TRL passes the dataset's columns as kwargs."""

    def __init__(self, judge, log: Path | None = None, tags: ProfileTags | None = None,
                 profile: ProfileScorer | None = None, weight: float = 1.0):
        if (tags is None) != (profile is None):
            raise ValueError("the profile reward needs both the tags and the scorer")
        self.judge, self.log, self.tags, self.profile, self.weight = judge, log, tags, profile, weight
        self.__name__ = "aloe_judge_profile_f1" if profile else "aloe_judge"

    def __call__(self, prompts, completions, profile, personality, persona_id=None, **kwargs) -> list:
        from aloe_bench.core.io import append_jsonl
        from aloe_bench.core.judge import JudgeItem
        from aloe_bench.core.personas import Persona

        ids = persona_id or [f"row{i}" for i in range(len(prompts))]
        items, blocks, personas = [], [], []
        for prompt, completion, prof, pers, pid in zip(prompts, completions, profile, personality, ids):
            text = _text(completion)
            reply, block = self.tags.split(text) if self.tags else (text, None)
            talk = [m for m in prompt if m["role"] != "system"] if isinstance(prompt, list) else []
            history, message = (talk[:-1], talk[-1]["content"]) if talk else ([], prompt)
            persona = Persona(pid, prof, pers)
            personas.append(persona)
            items.append(JudgeItem(persona, message, reply, history))
            blocks.append(block)
        verdicts = self.judge.score(items)
        found = self.profile.score(list(zip(personas, blocks))) if self.profile else [None] * len(items)
        rewards, log_rows = [], []
        state = kwargs.get("trainer_state")
        for item, block, verdict, pv in zip(items, blocks, verdicts, found):
            reward = None
            if not verdict.failed and (pv is None or pv.f1 is not None):
                reward = verdict.score + (self.weight * pv.f1 if pv is not None else 0.0)
            rewards.append(reward)
            row = {"step": getattr(state, "global_step", None), "persona": item.persona.id, "reply": item.reply,
                   "judge_score": verdict.score, "judge_error": verdict.error, "reward": reward}
            if pv is not None:
                row.update(profile_block=block, profile_f1=pv.f1, profile_precision=pv.precision,
                           profile_recall=pv.recall, profile_error=pv.error)
            log_rows.append(row)
        if self.log is not None:
            append_jsonl(self.log, log_rows)
        return rewards


def release_policy(backend) -> None:
    """Drop a round's rollout policy from the backend cache and, on a GPU, hand its memory back before training
    (returns None for the caller to rebind, so no reference keeps the weights alive)."""
    import gc

    from aloe_bench.core.backends import forget

    forget(backend)
    del backend
    gc.collect()
    try:
        import torch
    except ImportError:
        return None
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return None


# --- the round's training ---------------------------------------------------------------------------------------

def grpo_config(cfg, grpo: GrpoArguments, out: Path):
    """TRL's GRPOConfig for one round, from the online recipe (shared fields) and the grpo fields."""
    from trl import GRPOConfig

    kwargs = dict(output_dir=str(out), num_generations=cfg.candidates, max_completion_length=cfg.max_new_tokens,
                  temperature=cfg.temperature, top_p=cfg.top_p, beta=cfg.beta, learning_rate=cfg.learning_rate,
                  max_steps=cfg.max_steps, num_train_epochs=1,
                  per_device_train_batch_size=cfg.per_device_train_batch_size,
                  gradient_accumulation_steps=grpo.gradient_accumulation_steps,
                  activation_checkpointing=grpo.activation_checkpointing, use_cpu=cfg.use_cpu, report_to="none",
                  save_strategy="no", logging_steps=1, seed=cfg.seed, include_num_input_tokens_seen="non_padding",
                  use_vllm=grpo.use_vllm, vllm_mode=grpo.vllm_mode,
                  vllm_gpu_memory_utilization=grpo.vllm_gpu_memory_utilization,
                  vllm_enable_sleep_mode=grpo.vllm_enable_sleep_mode, vllm_server_base_url=grpo.vllm_server_base_url,
                  vllm_max_model_length=grpo.vllm_max_model_length)
    if cfg.use_cpu:
        kwargs["bf16"] = False
    init = {k: v for k, v in (("dtype", grpo.model_dtype), ("attn_implementation", grpo.attn_implementation)) if v}
    if init:
        kwargs["model_init_kwargs"] = init
    return GRPOConfig(**kwargs)


def train_grpo_round(cfg, policy_path: str, data_folder: Path, config: str, out: Path, *, grpo: GrpoArguments,
                     judge, tags: ProfileTags | None = None) -> dict:
    """Train one round with GRPOTrainer from `policy_path` on the round's prompts; save a loadable checkpoint."""
    from trl import GRPOTrainer, ModelConfig

    from .common import AloeArguments, load_split, train_and_save

    out = Path(out)
    log = out.parent / REWARDS_FILE
    if log.exists():
        log.unlink()  # a retrained round (killed mid-training) logs its rewards afresh
    profile = (ProfileScorer(judge.backend, max_new_tokens=grpo.profile_max_new_tokens, seed=cfg.seed)
               if tags is not None else None)
    reward = JudgeReward(judge, log, tags, profile, grpo.profile_reward_weight)
    train = load_split(str(data_folder), config, "train").select_columns(
        ["prompt", "persona_id", "profile", "personality"])
    model_args = ModelConfig(model_name_or_path=policy_path, use_peft=cfg.use_peft, lora_r=cfg.lora_r,
                             lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                             lora_target_modules=cfg.lora_target_modules)  # OnlineConfig: LoRA for every method
    metrics = train_and_save("grpo", partial(GRPOTrainer, reward_funcs=[reward]), policy_path, train, None,
                             grpo_config(cfg, grpo, out), model_args, AloeArguments())
    metrics["rewards"] = reward_summary(log)
    if profile is not None:
        metrics["rewards"]["profile_match_sha256"] = profile.sha256
    return metrics


def reward_summary(log: Path) -> dict:
    """Counts and means of the round's rewards (failures counted, never averaged in)."""
    from statistics import fmean

    from aloe_bench.core.io import read_jsonl

    rows = [value for _, value in read_jsonl(log, log=True)] if log.exists() else []
    scored = [r["reward"] for r in rows if r["reward"] is not None]
    out = {"samples": len(rows), "failed": len(rows) - len(scored), "mean_reward": fmean(scored) if scored else None}
    f1s = [r["profile_f1"] for r in rows if r.get("profile_f1") is not None]
    if any("profile_f1" in r for r in rows):
        out["mean_profile_f1"] = fmean(f1s) if f1s else None
    return out
