"""`EvalConfig`: every knob of an ALOE run; a YAML recipe and CLI flags fill it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

SCHEDULES = ("free", "lockstep", "sequential")


@dataclass
class EvalConfig:
    """One evaluation run. Model fields take a spec: `embedded`, a Hub id, a folder, or `openai:NAME`."""

    model: str = field(default="embedded", metadata={"help": "Evaluated model spec."})
    revision: str | None = field(default=None, metadata={"help": "Hub revision of the evaluated model."})
    base_url: str | None = field(default=None, metadata={"help": "OpenAI-compatible base URL for the evaluated model."})
    user_model: str = field(default="embedded", metadata={"help": "Role-play user simulator spec."})
    user_base_url: str | None = field(default=None, metadata={"help": "Base URL for the user simulator."})
    judge_model: str = field(default="embedded", metadata={"help": "Judge spec."})
    judge_base_url: str | None = field(default=None, metadata={"help": "Base URL for the judge."})
    api_key_env: str = field(default="OPENAI_API_KEY", metadata={"help": "Env var holding the API key (never logged)."})
    engine: str = field(default="transformers", metadata={"help": "Local engine: transformers or vllm."})
    personas: str = field(default="default", metadata={"help": "default | folder of pools | personas.jsonl | hub:ORG/NAME"})
    max_personas: int | None = field(default=None, metadata={"help": "Evaluate only the first N personas."})
    max_personalities: int = field(default=5, metadata={"help": "Personalities combined with every profile."})
    turns: int = field(default=10, metadata={"help": "Turns per conversation."})
    judge_preset: str = field(default="paper", metadata={"help": "paper | robust"})
    judge_scoring: str = field(default="auto", metadata={"help": "auto | text | logprobs"})
    judge_max_retries: int = field(default=2, metadata={"help": "Retries of an unparsable judge answer."})
    reply_max_new_tokens: int = field(default=96, metadata={"help": "Max new tokens of the evaluated model."})
    user_max_new_tokens: int = field(default=64, metadata={"help": "Max new tokens of the user simulator."})
    temperature: float = field(default=0.0, metadata={"help": "Evaluated model temperature (0 = greedy)."})
    user_temperature: float = field(default=0.7, metadata={"help": "User simulator temperature."})
    seed: int = field(default=0, metadata={"help": "Seed for sampling, bootstrap and retries."})
    output_dir: str = field(default="runs/embedded", metadata={"help": "Where <model>/results_*.json and samples_*.jsonl go."})
    cache: bool = field(default=True, metadata={"help": "Use the on-disk request cache in output_dir."})
    schedule: str = field(default="free", metadata={
        "help": "free (every conversation its own task), lockstep (turn k of all at once) or sequential (one at a "
                "time, the paper's loop)."})
    batch_size: int | None = field(default=None, metadata={"help": "Local micro-batch size (default 16 CPU, 64 GPU)."})
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, cuda:1, mps (default: best available)."})
    dtype: str | None = field(default=None, metadata={"help": "bfloat16, float16, float32 (default: bf16 on GPU)."})
    max_concurrency: int = field(default=16, metadata={"help": "Concurrent requests per OpenAI-style endpoint."})
    requests_per_minute: float | None = field(default=None, metadata={"help": "Rate limit per endpoint."})
    request_timeout_s: float = field(default=120.0, metadata={"help": "Timeout of one request to an endpoint."})
    request_max_retries: int = field(default=4, metadata={
        "help": "Retries (with backoff) of a failed endpoint request before it is recorded as failed."})
    tensor_parallel_size: int | None = field(default=None, metadata={"help": "vLLM: GPUs per model."})
    gpu_memory_utilization: float | None = field(default=None, metadata={"help": "vLLM: share of GPU memory."})
    max_model_len: int | None = field(default=None, metadata={"help": "vLLM: context length."})
    enable_prefix_caching: bool | None = field(default=None, metadata={"help": "vLLM: reuse shared prompt prefixes."})
    bootstrap_resamples: int = field(default=1000, metadata={"help": "Bootstrap resamples for the intervals."})
    push_to_hub: str | None = field(default=None, metadata={"help": "Results dataset repo id (ORG/NAME) to publish to."})
    public: bool = field(default=False, metadata={"help": "Make a new results dataset repo public (default private)."})
    create_pr: bool = field(default=False, metadata={
        "help": "Open a pull request with the eval results on a model repo you do not own."})
    progress: bool = field(default=True, metadata={"help": "Show a progress bar."})

    def __post_init__(self):
        if self.turns < 1:
            raise ValueError(f"turns must be >= 1, got {self.turns}")
        if self.max_personas is not None and self.max_personas < 1:
            raise ValueError(f"max_personas must be >= 1, got {self.max_personas}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")

    def to_dict(self) -> dict:
        return asdict(self)
