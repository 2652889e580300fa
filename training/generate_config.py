"""The settings of one `aloe generate` run, and the five roles whose models it names.

Parsed once at the command line (or from a recipe) and handed to `generate_conversations` as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aloe_bench.core.errors import ConfigError

ROLES = ("user", "induction", "preferred", "rejected", "judge")


@dataclass
class GenerateConfig:
    """One generation run; re-running the same command resumes it (finished conversations are skipped)."""

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
    api_key_env: str = field(default="OPENAI_API_KEY", metadata={"help": "Env var holding the API key."})
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
    request_timeout_s: float = field(default=120.0, metadata={"help": "Timeout of one request to an endpoint."})
    request_max_retries: int = field(default=4, metadata={
        "help": "Retries (with backoff) of a failed endpoint request before the step counts as failed."})
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
        """The model spec of each role, by role name."""
        return {role: getattr(self, f"{role}_model") for role in ROLES}
