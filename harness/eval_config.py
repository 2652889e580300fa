"""`EvalConfig`: the settings of an ALOE run; a YAML recipe and CLI flags fill it.

How the backends are built (engine, batch size, device, endpoints' concurrency and timeouts, ...) is not here:
`aloe eval` parses `BackendOptions` beside this dataclass, under the same flags and recipe keys.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from aloe_bench.core.errors import ConfigError

SCHEDULES = ("free", "lockstep", "sequential")


@dataclass
class EvalConfig:
    """One evaluation run. Model fields take a spec: `embedded`, a Hub id, a folder, or `openai:NAME`.

    `harness.protocol.resolve_run` turns it (with the run's `BackendOptions`) into the `EvalRun` the loop reads.
    """

    model: str = field(default="embedded", metadata={"help": "Evaluated model spec."})
    revision: str | None = field(default=None, metadata={"help": "Hub revision of the evaluated model."})
    base_url: str | None = field(default=None, metadata={"help": "OpenAI-compatible base URL for the evaluated model."})
    user_model: str = field(default="embedded", metadata={"help": "Role-play user simulator spec."})
    user_base_url: str | None = field(default=None, metadata={"help": "Base URL for the user simulator."})
    judge_model: str | list[str] = field(default="embedded", metadata={"repeatable": True, "help": (
        "Judge spec; repeat the flag (or give a list in a recipe) for a jury of several judges (README: Juries).")})
    judge_base_url: str | list[str] | None = field(default=None, metadata={"repeatable": True, "help": (
        "Base URL for the judge; in a jury one for all judges, or one per --judge_model in order.")})
    protocol: str | None = field(default=None, metadata={
        "help": "paper | smoke: a named preset of the fields marked [preset] (default: paper, or smoke when "
                "the evaluated model is embedded); a flag given explicitly overrides the preset."})
    personas: str | None = field(default=None, metadata={
        "help": "[preset] paper | default | folder of pools | personas.jsonl | hub:ORG/NAME"})
    max_personas: int | None = field(default=None, metadata={
        "help": "[preset] Evaluate only the first N personas (0: all)."})
    max_personalities: int | None = field(default=None, metadata={
        "help": "[preset] Personalities combined with every profile."})
    turns: int | None = field(default=None, metadata={"help": "[preset] Turns per conversation."})
    judge_preset: str | list[str] | None = field(default=None, metadata={"repeatable": True, "help": (
        "[preset] paper | robust | criteria (style, content, human 1-5 each); in a jury one for all judges, or one "
        "per --judge_model in order.")})
    judge_scoring: str = field(default="auto", metadata={"help": "auto | text | logprobs"})
    judge_max_retries: int = field(default=2, metadata={"help": "Retries of an unparsable judge answer."})
    judge_max_new_tokens: int | None = field(default=None, metadata={"help": "[preset] Max new tokens of the judge."})
    judge_temperature: float | None = field(default=None, metadata={"help": "[preset] Judge temperature (0 = greedy)."})
    jury_aggregate: str = field(default="mean", metadata={
        "help": "mean | median: how a jury's judges' scores make the row's score (judges that failed left out)."})
    judge_samples: int = field(default=1, metadata={
        "help": "Ask each judge N times (sampled, seeds recorded in the rows' `judges`); refused for a judge read "
                "from probabilities or at judge_temperature 0."})
    reply_max_new_tokens: int | None = field(default=None, metadata={
        "help": "[preset] Max new tokens of the evaluated model."})
    user_max_new_tokens: int | None = field(default=None, metadata={"help": "[preset] Max new tokens of the user simulator."})
    temperature: float | None = field(default=None, metadata={
        "help": "[preset] Evaluated model temperature (0 = greedy; the paper preset leaves it to the model's own "
                "generation config, or to the server's defaults for openai: models)."})
    user_temperature: float | None = field(default=None, metadata={"help": "[preset] User simulator temperature."})
    seed: int = field(default=0, metadata={"help": "Seed for sampling, bootstrap and retries."})
    output_dir: str = field(default="runs/embedded", metadata={"help": "Where <model>/results_*.json and samples_*.jsonl go."})
    cache: bool = field(default=True, metadata={"help": "Use the on-disk request cache in output_dir."})
    schedule: str = field(default="free", metadata={
        "help": "free (every conversation its own task), lockstep (turn k of all at once) or sequential (one at a "
                "time, the paper's loop)."})
    bootstrap_resamples: int = field(default=1000, metadata={"help": "Bootstrap resamples for the intervals."})
    simulator_reveal: bool = field(default=False, metadata={
        "help": "Add the reveal curve to the results' simulator block (loads the MiniLM embedder after the run; a "
                "report only: the run's identity does not change)."})
    reply_hidden_block: bool = field(default=False, metadata={
        "help": "Cut the <profile>...</profile> block (the policy's inference of the user that `aloe train online "
                "--profile_reward` teaches) out of every reply before the user, the judge and the history see it; "
                "the samples row keeps it as reply_hidden."})
    repeats: int = field(default=1, metadata={
        "help": "Run K repeats with seeds seed..seed+K-1, each an ordinary run sharing a group id, plus a group "
                "summary (mean and spread of AL_avg, IR, N_IR across repeats) next to them."})
    push_to_hub: str | None = field(default=None, metadata={"help": "Results dataset repo id (ORG/NAME) to publish to."})
    public: bool = field(default=False, metadata={"help": "Make a new results dataset repo public (default private)."})
    create_pr: bool = field(default=False, metadata={
        "help": "Open a pull request with the eval results on a model repo you do not own."})
    progress: bool = field(default=True, metadata={"help": "Show a progress bar."})

    def __post_init__(self):
        for name in PER_JUDGE:
            setattr(self, name, _one_or_list(name, getattr(self, name)))
        judges = self.judge_models
        for name in PER_JUDGE[1:]:
            value = getattr(self, name)
            if isinstance(value, list) and len(value) != len(judges):
                raise ConfigError(f"{name}: {len(value)} values for {len(judges)} judge_model(s); give one for all "
                                  f"judges or one per judge")
        if self.jury_aggregate not in JURY_AGGREGATES:
            raise ConfigError(f"jury_aggregate {self.jury_aggregate!r}: choose one of {', '.join(JURY_AGGREGATES)}")
        if not isinstance(self.judge_samples, int) or self.judge_samples < 1:
            raise ConfigError(f"judge_samples must be an integer >= 1, got {self.judge_samples!r}")
        if self.turns is not None and self.turns < 1:
            raise ConfigError(f"turns must be >= 1, got {self.turns}")
        if self.max_personas is not None and self.max_personas < 0:
            raise ConfigError(f"max_personas must be >= 0 (0: all), got {self.max_personas}")
        if self.repeats < 1:
            raise ConfigError(f"repeats must be >= 1, got {self.repeats}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def judge_models(self) -> list[str]:
        """The judges' specs in order (one for a lone judge)."""
        return _as_list(self.judge_model)

    def per_judge(self, name: str) -> list:
        """`name` (a `PER_JUDGE` field) for each judge, in `judge_models` order."""
        value = getattr(self, name)
        return value if isinstance(value, list) else [value] * len(self.judge_models)

    @property
    def is_jury(self) -> bool:
        """Whether the run's judging goes through a jury (several judges, or one asked several times)."""
        return len(self.judge_models) > 1 or self.judge_samples > 1


#: fields that take one value per judge of a jury (or one for all)
PER_JUDGE = ("judge_model", "judge_base_url", "judge_preset")
JURY_AGGREGATES = ("mean", "median")


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _one_or_list(name: str, value):
    """A per-judge field as stored: a list of two or more values, else the one value (so a lone judge's run
    records the same string as before juries existed)."""
    if isinstance(value, (list, tuple)):
        if not value:
            raise ConfigError(f"{name}: an empty list")
        if any(v is not None and not isinstance(v, str) for v in value):
            raise ConfigError(f"{name}: expected text values, got {value!r}")
        return list(value) if len(value) > 1 else value[0]
    return value
