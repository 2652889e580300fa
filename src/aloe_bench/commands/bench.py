"""`aloe bench ...`: every speed, robustness and load benchmark, registered here and run from aloe_bench.bench.

The one product module that names the benchmarks, and only inside its handlers: registering imports nothing heavy,
so `aloe eval` and `aloe --help` work without the `bench` extra; a benchmark whose packages are missing exits with a
one-line error that names the extra to install. A benchmark that builds backends parses `BackendOptions` beside its
own dataclass (the flags and recipe keys of `aloe eval`), with the benchmark's own defaults where it has them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

#: third-party packages each benchmark imports beyond the core dependencies (see `aloe_bench.core.extras.INSTALLS`)
NEEDS = {
    "faults": ("aiohttp",),  # the fault proxy
    "schedule": ("aiohttp",),  # the latency server
    "space": ("gradio", "gradio_client", "psutil"),  # the Space, its clients, the RSS sampler
}
OUTPUT_HELP = {"help": "Also write the JSON here."}


@dataclass
class BenchEvalConfig:
    """`aloe bench eval`: the small run each schedule plays."""

    personas: int = 16
    turns: int = 3
    persona_source: str = "default"
    model: str = "embedded"
    reply_max_new_tokens: int = 48
    user_max_new_tokens: int = 48
    schedules: str = field(default="lockstep,sequential", metadata={
        "help": "Comma-separated schedules to run: free, lockstep, sequential."})
    output: str | None = field(default=None, metadata=OUTPUT_HELP)


@dataclass
class BenchHostileConfig:
    """`aloe bench hostile`: the judge, its presets and the hostile-reply suite."""

    judge_model: str = field(default="embedded", metadata={
        "help": "Judge spec: embedded, ORG/NAME, a folder, or openai:NAME."})
    judge_base_url: str | None = None
    presets: str = field(default="paper,robust", metadata={
        "help": "Comma-separated presets, each optionally with a scoring: paper:text,paper,robust."})
    personas: int = field(default=4, metadata={"help": "Eval personas (distinct profiles) per variant."})
    persona_source: str = "default"
    max_retries: int = 2
    max_new_tokens: int | None = field(default=None, metadata={
        "help": "Judge answer length (default: the preset's, 8 for paper and 256 for robust)."})
    categories: str | None = field(default=None, metadata={"help": "Comma-separated categories to run (default: all)."})
    suite: str | None = field(default=None, metadata={"help": "Another suite file of the same shape (JSONL)."})
    output: str | None = field(default=None, metadata={"help": "Also write the JSON here (after each preset)."})


@dataclass
class BenchFaultsConfig:
    """`aloe bench faults`: the small eval, the fault rates and the client's patience."""

    personas: int = 3
    turns: int = 2
    rates: str = field(default="all=0.05", metadata={
        "help": "Fault rates per request, kind=rate,... or all=R (kinds: timeout, rate_limit, server_error, "
                "cut_stream, malformed_json, empty_content)."})
    seed: int = field(default=0, metadata={"help": "Seed of the fault draws (and of the run)."})
    timeout_s: float = field(default=30.0, metadata={
        "help": "Client timeout (the run's request_timeout_s); a timeout fault holds the connection 15 s longer."})
    max_retries: int = field(default=4, metadata={
        "help": "Retries of a failed request (the run's request_max_retries)."})
    max_new_tokens: int = 16
    persona_source: str = "default"
    base_url: str | None = field(default=None, metadata={
        "help": "An OpenAI-compatible server to put the proxy in front of (default: start `transformers serve` "
                "on the embedded model)."})
    model: str | None = field(default=None, metadata={"help": "Model name for --base-url."})
    output: str | None = field(default=None, metadata=OUTPUT_HELP)


@dataclass
class BenchScheduleConfig:
    """`aloe bench schedule`: the simulated run, the latency server's distribution and the mixed run."""

    personas: int = 64
    turns: int = 10
    seed: int = field(default=0, metadata={"help": "Seed of the latency draws."})
    median_s: float = 0.5
    sigma: float = 0.8
    schedules: str = field(default="free,lockstep", metadata={"help": "Comma-separated schedules to run."})
    persona_source: str = "default"
    mixed: bool = field(default=True, metadata={
        "help": "Run the mixed run (embedded model in-process, user and judge on the server); --no-mixed skips it."})
    main: bool = field(default=True, metadata={
        "help": "Run the all-remote runs; --no-main skips them (only the mixed run)."})
    mixed_personas: int = 16
    mixed_turns: int = 3
    mixed_model: str = "embedded"
    reply_max_new_tokens: int = field(default=48, metadata={
        "help": "Reply length of the in-process model in the mixed run."})
    output: str | None = field(default=None, metadata={"help": "Also write the JSON here (after each run)."})


@dataclass
class BenchPersonasConfig:
    """`aloe bench personas`: the sizes of the de-duplication problem."""

    candidates: int = 100
    pool: int = 100
    naive_pairs: int = field(default=200, metadata={
        "help": "Pairs of the naive loop actually timed (the rest is extrapolated; all: 10000)."})
    threshold: float = 0.6
    output: str | None = field(default=None, metadata=OUTPUT_HELP)


@dataclass
class BenchSpaceConfig:
    """`aloe bench space`: the load (sessions, messages, waves) and the backend behind the Space."""

    sessions: int = field(default=20, metadata={"help": "Concurrent client sessions per wave."})
    messages: int | None = field(default=None, metadata={
        "help": "Messages per session (default 3 with the echo backend, 1 with the embedded model)."})
    waves: int = field(default=3, metadata={"help": "Waves of fresh sessions, one after the other."})
    backend: Literal["echo", "embedded"] = field(default="echo", metadata={
        "help": "echo: a deterministic in-process backend, so the Space machinery is measured; embedded: "
                "SmolLM2-135M in every role (slow on CPU: use few messages)."})
    delay_ms: float = field(default=5.0, metadata={"help": "Echo backend: pause per streamed word."})
    reply_max_new_tokens: int = field(default=16, metadata={"help": "Embedded backend: reply length."})
    max_sessions: int | None = field(default=None, metadata={
        "help": "The Space's session capacity (default: the Space's own default)."})
    concurrency_limit: int | None = field(default=None, metadata={"help": "The Space's events at once."})
    output: str | None = field(default=None, metadata=OUTPUT_HELP)


#: benchmarks whose runs build backends from `BackendOptions`, with the defaults they change (their modules'
#: `DEFAULT_OPTIONS`, repeated here so that registering imports no benchmark; a test keeps the two the same)
BACKEND_DEFAULTS = {
    "eval": {},
    "hostile": {},
    "faults": {"max_concurrency": 2},
    "schedule": {"max_concurrency": 64, "api_key_env": "ALOE_LATENCY_SERVER_KEY"},
    "space": {},
}


@dataclass
class BenchTurnsConfig:
    """`aloe bench turns`: the lockstep run played with the prompt-prefix cache off and on."""

    personas: int = 16
    turns: int = 10
    model: str = "embedded"
    reply_max_new_tokens: int = 48
    user_max_new_tokens: int = 40
    free: bool = field(default=True, metadata={"help": "Also time the free schedule's whole run, off and on."})
    space: bool = field(default=True, metadata={"help": "Also time a Space visitor's typed turns, off and on."})
    output: str | None = field(default=None, metadata={"help": "Also write the JSON here (after each part)."})


def register(sub) -> None:
    from aloe_bench.core.backends import BackendOptions
    from aloe_bench.core.recipes import add_command_group, add_recipe_command

    actions = add_command_group(sub, "bench", "Speed benchmarks (print JSON with side-by-side ratios).",
                                metavar="BENCH")
    for name, config, handler, help in (
        ("eval", BenchEvalConfig, _run_eval, "Lockstep vs one-conversation-at-a-time on the same small run."),
        ("hostile", BenchHostileConfig, _run_hostile,
         "How replies that try to steer the judge move each preset's scores."),
        ("faults", BenchFaultsConfig, _run_faults, "A small eval through a fault-injecting proxy: faults injected, "
                                                   "survived, failures recorded, rows complete."),
        ("schedule", BenchScheduleConfig, _run_schedule, "free vs lockstep against a log-normal latency server: "
                                                         "wall times, the critical-path bound, the paper loop's time."),
        ("personas", BenchPersonasConfig, _run_personas,
         "De-duplication: embed once + matrix product vs the naive pair loop."),
        ("space", BenchSpaceConfig, _run_space,
         "Load test of the Space on 127.0.0.1: concurrent client sessions, leaks, latency, memory."),
        ("turns", BenchTurnsConfig, _run_turns, "Turn-by-turn cost with the prompt-prefix cache off and on: wall "
                                                "time per turn, prompt tokens computed, identical rows."),
    ):
        builds = name in BACKEND_DEFAULTS
        parser = add_recipe_command(actions, name, [config, BackendOptions] if builds else [config],
                                    _checked(name, config, handler), help)
        if builds:
            parser.set_defaults(**BACKEND_DEFAULTS[name])  # a recipe or a flag still overrides them


def _checked(name: str, config, handler):
    """`handler(cfg)` (with `options=` when the benchmark builds backends), run with its settings once the packages
    benchmark `name` needs are importable."""
    def run(args) -> int:
        from aloe_bench.core.backends import BackendOptions
        from aloe_bench.core.extras import require_extra
        from aloe_bench.core.recipes import dataclass_from_args

        require_extra(*NEEDS.get(name, ()), who=f"aloe bench {name}")  # MissingExtra: `aloe` prints it on one line
        if name in BACKEND_DEFAULTS:
            return handler(dataclass_from_args(args, config), options=dataclass_from_args(args, BackendOptions))
        return handler(dataclass_from_args(args, config))
    return run


def _split(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _run_turns(cfg: BenchTurnsConfig) -> int:
    from aloe_bench.bench.turns import bench_turns
    from aloe_bench.core.io import atomic_write_json, emit_report

    def part(report):  # the figures so far reach --output as each part ends
        if cfg.output:
            atomic_write_json(cfg.output, report)

    emit_report(bench_turns(n_personas=cfg.personas, turns=cfg.turns, model=cfg.model,
                            reply_max_new_tokens=cfg.reply_max_new_tokens, user_max_new_tokens=cfg.user_max_new_tokens,
                            free=cfg.free, space=cfg.space, on_part=part), cfg.output)
    return 0


def _run_eval(cfg: BenchEvalConfig, options) -> int:
    from aloe_bench.bench.eval_loop import bench_eval
    from aloe_bench.core.io import emit_report

    result = bench_eval(n_personas=cfg.personas, turns=cfg.turns, persona_source=cfg.persona_source,
                        model=cfg.model, reply_max_new_tokens=cfg.reply_max_new_tokens,
                        user_max_new_tokens=cfg.user_max_new_tokens, schedules=_split(cfg.schedules),
                        options=options)
    emit_report(result, cfg.output)
    return 0


def _run_hostile(cfg: BenchHostileConfig, options) -> int:
    import json

    from aloe_bench.bench.hostile import bench_hostile

    result = bench_hostile(judge_model=cfg.judge_model, presets=cfg.presets, n_personas=cfg.personas,
                           persona_source=cfg.persona_source, max_retries=cfg.max_retries,
                           max_new_tokens=cfg.max_new_tokens, suite=cfg.suite,
                           categories=[c.strip() for c in cfg.categories.split(",")] if cfg.categories else None,
                           base_url=cfg.judge_base_url, options=options, output=cfg.output)
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


def _run_faults(cfg: BenchFaultsConfig, options) -> int:
    from aloe_bench.bench.faults import bench_faults
    from aloe_bench.core.io import emit_report

    result = bench_faults(n_personas=cfg.personas, turns=cfg.turns, rates=cfg.rates, seed=cfg.seed,
                          timeout_s=cfg.timeout_s, max_retries=cfg.max_retries, max_new_tokens=cfg.max_new_tokens,
                          persona_source=cfg.persona_source, base_url=cfg.base_url, model=cfg.model,
                          options=options)
    emit_report(result, cfg.output)
    return 0


def _run_schedule(cfg: BenchScheduleConfig, options) -> int:
    from aloe_bench.bench.schedule import bench_schedule
    from aloe_bench.core.io import emit_report

    report = bench_schedule(
        n_personas=cfg.personas, turns=cfg.turns, seed=cfg.seed,
        median_s=cfg.median_s, sigma=cfg.sigma, schedules=_split(cfg.schedules), persona_source=cfg.persona_source,
        mixed=cfg.mixed, mixed_personas=cfg.mixed_personas, mixed_turns=cfg.mixed_turns, mixed_model=cfg.mixed_model,
        reply_max_new_tokens=cfg.reply_max_new_tokens, output=cfg.output, main=cfg.main, options=options)
    emit_report(report, cfg.output)
    return 0


def _run_personas(cfg: BenchPersonasConfig) -> int:
    from aloe_bench.bench.persona_dedup import bench_dedup
    from aloe_bench.core.io import emit_report

    result = bench_dedup(cfg.candidates, cfg.pool, cfg.naive_pairs, cfg.threshold)
    emit_report(result, cfg.output)
    return 0


def _run_space(cfg: BenchSpaceConfig, options) -> int:
    from aloe_bench.bench.space_load import run_load_test
    from aloe_bench.core.io import emit_report

    overrides = {k: v for k, v in (("max_sessions", cfg.max_sessions),
                                   ("concurrency_limit", cfg.concurrency_limit)) if v is not None}
    result = run_load_test(sessions=cfg.sessions, messages=cfg.messages, waves=cfg.waves, backend=cfg.backend,
                           delay_ms=cfg.delay_ms, reply_max_new_tokens=cfg.reply_max_new_tokens, options=options,
                           **overrides)
    emit_report(result, cfg.output)
    ok = not (result["errors"] or result["leaks"] or result["mismatches"] or result["secret_leaks"])
    return 0 if ok else 1
