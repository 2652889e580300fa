"""`aloe bench ...`: every speed, robustness and load benchmark, registered by the `aloe` command.

Registering imports nothing heavy (each handler imports its benchmark when it runs), so `aloe eval` and
`aloe --help` work without the `bench` extra; a benchmark whose packages are missing exits with a one-line
error that names the extra to install.
"""

from __future__ import annotations

#: third-party packages each benchmark imports beyond the core dependencies (see `aloe_bench.core.extras.INSTALLS`)
NEEDS = {
    "faults": ("aiohttp",),  # the fault proxy
    "schedule": ("aiohttp",),  # the latency server
    "space": ("gradio", "gradio_client", "psutil"),  # the Space, its clients, the RSS sampler
}


def register(sub) -> None:
    bench = sub.add_parser("bench", help="Speed benchmarks (print JSON with side-by-side ratios).")
    bench_sub = bench.add_subparsers(dest="bench_command", metavar="BENCH", required=True)
    _add_eval(bench_sub)
    _add_hostile(bench_sub)
    _add_faults(bench_sub)
    from .schedule import add_parser as add_schedule

    add_schedule(bench_sub)
    _add_personas(bench_sub)
    _add_space(bench_sub)
    add_turns(bench_sub)
    for name, parser in bench_sub.choices.items():
        parser.set_defaults(handler=_checked(name, parser.get_default("handler")))


def _checked(name: str, handler):
    """`handler`, run only when the packages benchmark `name` needs are importable."""
    def run(args) -> int:
        from aloe_bench.core.extras import require_extra

        require_extra(*NEEDS.get(name, ()), who=f"aloe bench {name}")  # MissingExtra: `aloe` prints it on one line
        return handler(args)
    return run


# -- aloe bench eval ------------------------------------------------------------------------------------
def _add_eval(bench_sub) -> None:
    bench = bench_sub.add_parser("eval", help="Lockstep vs one-conversation-at-a-time on the same small run.")
    bench.add_argument("--personas", type=int, default=16)
    bench.add_argument("--turns", type=int, default=3)
    bench.add_argument("--persona-source", default="default")
    bench.add_argument("--model", default="embedded")
    bench.add_argument("--reply-max-new-tokens", type=int, default=48)
    bench.add_argument("--user-max-new-tokens", type=int, default=48)
    bench.add_argument("--schedules", default="lockstep,sequential",
                       help="Comma-separated schedules to run: free, lockstep, sequential.")
    bench.add_argument("--output", default=None, help="Also write the JSON here.")
    bench.set_defaults(handler=_run_eval)


def _run_eval(args) -> int:
    from aloe_bench.core.io import emit_report

    from .eval_loop import bench_eval

    result = bench_eval(n_personas=args.personas, turns=args.turns, persona_source=args.persona_source,
                        model=args.model, reply_max_new_tokens=args.reply_max_new_tokens,
                        user_max_new_tokens=args.user_max_new_tokens,
                        schedules=tuple(s.strip() for s in args.schedules.split(",") if s.strip()))
    emit_report(result, args.output)
    return 0


# -- aloe bench turns -----------------------------------------------------------------------------------
def add_turns(bench_sub) -> None:
    """Register `aloe bench turns` (self-contained: moves with this file as it is)."""
    bench = bench_sub.add_parser("turns", help="Turn-by-turn cost with the prompt-prefix cache off and on: wall time "
                                               "per turn, prompt tokens computed, identical rows.")
    bench.add_argument("--personas", type=int, default=16)
    bench.add_argument("--turns", type=int, default=10)
    bench.add_argument("--model", default="embedded")
    bench.add_argument("--reply-max-new-tokens", type=int, default=48)
    bench.add_argument("--user-max-new-tokens", type=int, default=40)
    bench.add_argument("--no-free", dest="free", action="store_false", help="Skip the free schedule's totals.")
    bench.add_argument("--no-space", dest="space", action="store_false", help="Skip the Space's reply latency.")
    bench.add_argument("--output", default=None, help="Also write the JSON here.")

    def run(args) -> int:
        from aloe_bench.core.io import atomic_write_json, emit_report

        from .turns import bench_turns

        def part(report):  # the figures so far reach --output as each part ends
            if args.output:
                atomic_write_json(args.output, report)

        emit_report(bench_turns(n_personas=args.personas, turns=args.turns, model=args.model,
                                reply_max_new_tokens=args.reply_max_new_tokens,
                                user_max_new_tokens=args.user_max_new_tokens, free=args.free, space=args.space,
                                on_part=part), args.output)
        return 0

    bench.set_defaults(handler=run)


# -- aloe bench hostile ---------------------------------------------------------------------------------
def _add_hostile(bench_sub) -> None:
    hostile = bench_sub.add_parser("hostile", help="How replies that try to steer the judge move each preset's scores.")
    hostile.add_argument("--judge-model", "--judge_model", dest="judge_model", default="embedded",
                         help="Judge spec: embedded, ORG/NAME, a folder, or openai:NAME.")
    hostile.add_argument("--judge-base-url", "--judge_base_url", dest="judge_base_url", default=None)
    hostile.add_argument("--api-key-env", "--api_key_env", dest="api_key_env", default="OPENAI_API_KEY")
    hostile.add_argument("--presets", default="paper,robust",
                         help="Comma-separated presets, each optionally with a scoring: paper:text,paper,robust.")
    hostile.add_argument("--personas", type=int, default=4, help="Eval personas (distinct profiles) per variant.")
    hostile.add_argument("--persona-source", "--persona_source", dest="persona_source", default="default")
    hostile.add_argument("--max-retries", "--max_retries", dest="max_retries", type=int, default=2)
    hostile.add_argument("--max-new-tokens", "--max_new_tokens", dest="max_new_tokens", type=int, default=None,
                         help="Judge answer length (default: the preset's, 8 for paper and 256 for robust).")
    hostile.add_argument("--categories", default=None, help="Comma-separated categories to run (default: all).")
    hostile.add_argument("--suite", default=None, help="Another suite file of the same shape (JSONL).")
    hostile.add_argument("--output", default=None, help="Also write the JSON here (after each preset).")
    hostile.set_defaults(handler=_run_hostile)


def _run_hostile(args) -> int:
    import json

    from .hostile import bench_hostile

    result = bench_hostile(judge_model=args.judge_model, presets=args.presets, n_personas=args.personas,
                           persona_source=args.persona_source, max_retries=args.max_retries,
                           max_new_tokens=args.max_new_tokens, suite=args.suite,
                           categories=[c.strip() for c in args.categories.split(",")] if args.categories else None,
                           base_url=args.judge_base_url, api_key_env=args.api_key_env, output=args.output)
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


# -- aloe bench faults ----------------------------------------------------------------------------------
def _add_faults(bench_sub) -> None:
    faults = bench_sub.add_parser("faults", help="A small eval through a fault-injecting proxy: faults injected, "
                                                 "survived, failures recorded, rows complete.")
    faults.add_argument("--personas", type=int, default=3)
    faults.add_argument("--turns", type=int, default=2)
    faults.add_argument("--rates", default="all=0.05",
                        help="Fault rates per request, kind=rate,... or all=R (kinds: timeout, rate_limit, "
                             "server_error, cut_stream, malformed_json, empty_content).")
    faults.add_argument("--seed", type=int, default=0, help="Seed of the fault draws (and of the run).")
    faults.add_argument("--timeout-s", "--timeout_s", dest="timeout_s", type=float, default=30.0,
                        help="Client timeout; a timeout fault holds the connection 15 s longer.")
    faults.add_argument("--max-retries", "--max_retries", dest="max_retries", type=int, default=4)
    faults.add_argument("--max-new-tokens", "--max_new_tokens", dest="max_new_tokens", type=int, default=16)
    faults.add_argument("--max-concurrency", "--max_concurrency", dest="max_concurrency", type=int, default=2)
    faults.add_argument("--persona-source", "--persona_source", dest="persona_source", default="default")
    faults.add_argument("--base-url", "--base_url", dest="base_url", default=None,
                        help="An OpenAI-compatible server to put the proxy in front of (default: start "
                             "`transformers serve` on the embedded model).")
    faults.add_argument("--model", default=None, help="Model name for --base-url.")
    faults.add_argument("--output", default=None, help="Also write the JSON here.")
    faults.set_defaults(handler=_run_faults)


def _run_faults(args) -> int:
    from aloe_bench.core.io import emit_report

    from .faults import bench_faults

    result = bench_faults(n_personas=args.personas, turns=args.turns, rates=args.rates, seed=args.seed,
                          timeout_s=args.timeout_s, max_retries=args.max_retries, max_new_tokens=args.max_new_tokens,
                          max_concurrency=args.max_concurrency, persona_source=args.persona_source,
                          base_url=args.base_url, model=args.model)
    emit_report(result, args.output)
    return 0


# -- aloe bench personas --------------------------------------------------------------------------------
def _add_personas(bench_sub) -> None:
    bench = bench_sub.add_parser("personas", help="De-duplication: embed once + matrix product vs the naive pair loop.")
    bench.add_argument("--candidates", type=int, default=100)
    bench.add_argument("--pool", type=int, default=100)
    bench.add_argument("--naive-pairs", type=int, default=200,
                       help="Pairs of the naive loop actually timed (the rest is extrapolated; all: 10000).")
    bench.add_argument("--threshold", type=float, default=0.6)
    bench.add_argument("--output", default=None, help="Also write the JSON here.")
    bench.set_defaults(handler=_run_personas)


def _run_personas(args) -> int:
    from aloe_bench.core.io import emit_report

    from .personas import bench_dedup

    result = bench_dedup(args.candidates, args.pool, args.naive_pairs, args.threshold)
    emit_report(result, args.output)
    return 0


# -- aloe bench space -----------------------------------------------------------------------------------
def _add_space(bench_sub) -> None:
    bench = bench_sub.add_parser(
        "space", help="Load test of the Space on 127.0.0.1: concurrent client sessions, leaks, latency, memory.")
    bench.add_argument("--sessions", type=int, default=20, help="Concurrent client sessions per wave.")
    bench.add_argument("--messages", type=int, default=None,
                       help="Messages per session (default 3 with the echo backend, 1 with the embedded model).")
    bench.add_argument("--waves", type=int, default=3, help="Waves of fresh sessions, one after the other.")
    bench.add_argument("--backend", choices=("echo", "embedded"), default="echo",
                       help="echo: a deterministic in-process backend, so the Space machinery is measured; "
                            "embedded: SmolLM2-135M in every role (slow on CPU: use few messages).")
    bench.add_argument("--delay-ms", type=float, default=5.0, help="Echo backend: pause per streamed word.")
    bench.add_argument("--reply-max-new-tokens", type=int, default=16, help="Embedded backend: reply length.")
    bench.add_argument("--max-sessions", type=int, default=None,
                       help="The Space's session capacity (default: the Space's own default).")
    bench.add_argument("--concurrency-limit", type=int, default=None, help="The Space's events at once.")
    bench.add_argument("--output", default=None, help="Also write the JSON here.")
    bench.set_defaults(handler=_run_space)


def _run_space(args) -> int:
    from aloe_bench.core.io import emit_report

    from .space_load import run_load_test

    overrides = {k: v for k, v in (("max_sessions", args.max_sessions),
                                   ("concurrency_limit", args.concurrency_limit)) if v is not None}
    result = run_load_test(sessions=args.sessions, messages=args.messages, waves=args.waves, backend=args.backend,
                           delay_ms=args.delay_ms, reply_max_new_tokens=args.reply_max_new_tokens, **overrides)
    emit_report(result, args.output)
    ok = not (result["errors"] or result["leaks"] or result["mismatches"] or result["secret_leaks"])
    return 0 if ok else 1
