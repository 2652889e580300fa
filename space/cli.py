"""`aloe space`: serve the Gradio Space locally (offline on the embedded model by default).
`aloe bench space`: a bounded load test of the Space over loopback (see loadtest.py)."""

from __future__ import annotations



def register(sub, bench_sub) -> None:
    from aloe_bench.core.recipes import add_recipe_command

    from .config import SpaceConfig

    add_recipe_command(sub, "space", [SpaceConfig], _run_space,
                       "Serve the ALOE chat Space (persona chat, per-turn judge scores, leaderboard).")

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
    bench.set_defaults(handler=_run_bench)


def _run_space(args) -> int:
    from aloe_bench.core.recipes import dataclass_from_args

    from .config import SpaceConfig
    from .ui import build_demo, launch_options

    config = dataclass_from_args(args, SpaceConfig)
    print(f"aloe space: assistant={config.model} compare={config.compare_model} user={config.user_model} "
          f"judge={config.judge_model} on http://{config.host}:{config.port}")
    build_demo(config).launch(server_name=config.host, server_port=config.port, share=config.share,
                              **launch_options(config))
    return 0


def _run_bench(args) -> int:
    from aloe_bench.core.files import emit_report

    from .loadtest import run_load_test

    overrides = {k: v for k, v in (("max_sessions", args.max_sessions),
                                   ("concurrency_limit", args.concurrency_limit)) if v is not None}
    result = run_load_test(sessions=args.sessions, messages=args.messages, waves=args.waves, backend=args.backend,
                           delay_ms=args.delay_ms, reply_max_new_tokens=args.reply_max_new_tokens, **overrides)
    emit_report(result, args.output)
    ok = not (result["errors"] or result["leaks"] or result["mismatches"] or result["secret_leaks"])
    return 0 if ok else 1
