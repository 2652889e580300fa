"""`aloe`: one console command, with a subcommand per job. Each area registers its own subcommands."""

from __future__ import annotations

import argparse
import importlib
import sys

from transformers import HfArgumentParser

from aloe_bench.core.config import ConfigError, apply_recipe

# Modules with a `register(sub)` that adds their subcommands; imported lazily so `aloe metrics` never loads torch.
# `aloe bench ...` lives in the bench package: its registration imports no benchmark (see aloe_bench/bench/cli.py).
AREAS = (
    "aloe_bench.bench.cli",
    "aloe_bench.harness.cli",
    "aloe_bench.training.cli",
    "aloe_bench.space.cli",
    "aloe_bench.reproduce",
    "aloe_bench.deploy",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aloe", description="Personalised alignment through interaction (ALOE).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=HfArgumentParser)
    for area in AREAS:
        try:
            module = importlib.import_module(area)
        except ModuleNotFoundError as exc:
            if exc.name == area:
                continue  # area not built (yet)
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    try:
        args = apply_recipe(parser, args, argv)
    except ConfigError as exc:
        parser.exit(2, f"aloe: error: {exc}\n")
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("interrupted: finished work is saved; re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
