"""Settings of the Space: which models play which role, generation lengths and the serving limits."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

from aloe_bench.core.errors import ConfigError

# Space variables (set in the Space's settings) that override the defaults when the app starts.
ENV_PREFIX = "ALOE_SPACE_"


@dataclass
class SpaceConfig:
    """Everything `aloe space` and the Space's app.py take; every model role defaults to the embedded model."""

    host: str = field(default="127.0.0.1", metadata={"help": "Address to serve on (0.0.0.0 inside a Space)."})
    port: int = field(default=7860, metadata={"help": "Port to serve on."})
    model: str = field(default="embedded", metadata={"help": "Assistant model spec: embedded, ORG/NAME, ./folder, openai:NAME."})
    compare_model: str | None = field(default=None, metadata={"help": "Second assistant shown side by side (e.g. an aligned checkpoint)."})
    user_model: str = field(default="embedded", metadata={"help": "Model that role-plays the user in auto-play."})
    judge_model: str = field(default="embedded", metadata={"help": "Model that scores every reply 1-5."})
    induction_model: str | None = field(default=None, metadata={"help": "Model that reads what the user revealed (default: the judge's)."})
    judge_preset: str = field(default="paper", metadata={"help": "Judge prompt preset: paper or robust."})
    personas: str = field(default="default", metadata={"help": "Extra persona source offered beside the packaged sets (folder, .jsonl, hub:ORG/NAME)."})
    results: str = field(default="runs", metadata={"help": "Leaderboard source: a run folder, a results dataset folder, or hub:ORG/NAME."})
    reply_max_new_tokens: int = field(default=96, metadata={"help": "Length bound of an assistant reply."})
    user_max_new_tokens: int = field(default=64, metadata={"help": "Length bound of a simulated user message."})
    induction_max_new_tokens: int = field(default=64, metadata={"help": "Length bound of the induction summary."})
    temperature: float = field(default=0.0, metadata={"help": "Sampling temperature of replies (0 = greedy)."})
    max_input_chars: int = field(default=1000, metadata={"help": "Longest accepted user message."})
    max_turns: int = field(default=20, metadata={"help": "Longest conversation a session may hold."})
    max_autoplay_turns: int = field(default=10, metadata={"help": "Upper bound of the auto-play slider."})
    concurrency_limit: int = field(default=2, metadata={"help": "Events run at once (the model itself serialises)."})
    max_queue: int = field(default=32, metadata={"help": "Queued events beyond which new ones are refused."})
    max_sessions: int = field(default=1000, metadata={"help": "Sessions held in memory at most; beyond it the least recently used one is dropped (its conversation is lost)."})
    session_ttl_s: float = field(default=7200.0, metadata={"help": "A session with no event for this many seconds is dropped and its conversation freed (a closed tab's is kept an hour, gradio's rule)."})
    max_extra_models: int = field(default=2, metadata={"help": "Model specs visitors may load beyond the configured ones (each stays in memory); further ones are refused."})
    allow_model_change: bool = field(default=True, metadata={"help": "Let visitors change model specs in the UI (off by default when SPACE_ID is set: a public Space runs only its own models)."})
    public: bool = field(default=False, metadata={"help": "Specs chosen in the page are a visitor's: they never get the owner's HF_TOKEN or OpenAI key (always on when SPACE_ID is set)."})
    oauth: bool = field(default=False, metadata={"help": "Show 'Sign in with Hugging Face'; a signed-in visitor's own token loads the Hub models they choose (on when the Space card has hf_oauth: true)."})
    # Rate tab (people rate replies to check a judge): where ratings go, what it loads first, how much
    rate_source: str = field(default="", metadata={"help": "Run the Rate tab offers first (default: the results source)."})
    ratings_dir: str = field(default="ratings", metadata={"help": "Folder of the per-rater ratings files (ratings-<rater>.jsonl)."})
    max_rate_rows: int = field(default=5000, metadata={"help": "Rows of one run the Rate tab loads at most."})
    # Runs tab (finished runs read back): the sources it offers; on a public Space, the only ones a visitor may read
    runs: str = field(default="", metadata={"help": "Runs tab sources, comma-separated: run folders, results dataset folders, hub:ORG/NAME (default: the results source). On a public Space visitors pick only among these."})
    max_run_rows: int = field(default=20000, metadata={"help": "Sample rows of one run the Runs tab reads at most."})
    share: bool = field(default=False, metadata={"help": "Open a public gradio.live link (needs network)."})

    def __post_init__(self):
        if self.judge_preset not in ("paper", "robust"):
            raise ConfigError(f"judge_preset {self.judge_preset!r}: choose paper or robust")
        for name in ("reply_max_new_tokens", "user_max_new_tokens", "induction_max_new_tokens", "max_input_chars",
                     "max_turns", "max_autoplay_turns", "max_rate_rows", "max_run_rows", "concurrency_limit", "max_queue", "max_sessions"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.session_ttl_s <= 0:
            raise ConfigError(f"session_ttl_s must be positive, got {self.session_ttl_s}")
        if self.max_extra_models < 0:
            raise ConfigError(f"max_extra_models must be at least 0, got {self.max_extra_models}")
        self.compare_model = self.compare_model or None
        self.induction_model = self.induction_model or None

    @classmethod
    def from_env(cls, environ=None, **overrides) -> "SpaceConfig":
        """Read `ALOE_SPACE_<FIELD>` variables (how a Space is configured), then apply `overrides`."""
        environ = os.environ if environ is None else environ
        values = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(ENV_PREFIX + f.name.upper())
            if raw is None:
                continue
            kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
            try:
                if kind.startswith("int"):
                    values[f.name] = int(raw)
                elif kind.startswith("float"):
                    values[f.name] = float(raw)
                elif kind.startswith("bool"):
                    values[f.name] = raw.strip().lower() in ("1", "true", "yes")
                else:
                    values[f.name] = raw
            except ValueError:
                raise ConfigError(f"{ENV_PREFIX}{f.name.upper()}={raw!r}: expected {kind}") from None
        if environ.get("SPACE_ID"):
            if "allow_model_change" not in values:
                values["allow_model_change"] = False  # a public Space runs its owner's models unless the owner opts in
            values["public"] = True  # and even with the opt-in, a visitor's model never gets the owner's secrets
        if environ.get("OAUTH_CLIENT_ID") and "oauth" not in values:
            values["oauth"] = True  # the Space runtime sets OAUTH_CLIENT_ID when the card has hf_oauth: true
        return cls(**{**values, **overrides})
