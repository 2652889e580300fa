"""`aloe`: one console command, with a subcommand per job; each is registered by its module in this package.

An error meant for the user (`AloeError`: a bad flag, field, file or line) is printed on one line,
`aloe: error: ...`, with exit code 2 (1 for a failed upload or build); `aloe --debug` (or `ALOE_DEBUG=1`)
adds its traceback. Status lines come from module loggers, shown on stderr as plain text (`-v` adds debug
messages, `-q` keeps warnings only); results and JSON go to stdout.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback

from aloe_bench.core.errors import AloeError
from aloe_bench.core.recipes import RecipeParser

from . import bench, dataset, generate, hub, judge, metrics, personas, reproduce, results, space, train
from . import eval as eval_command  # (`eval` would hide the builtin here)

# Each module's `register(sub)` adds its command; heavy imports wait in the handlers, so `aloe metrics` never
# loads torch. `aloe bench ...`'s handlers import the benchmarks (aloe_bench.bench) only when they run.
COMMANDS = (bench, eval_command, judge, metrics, results, personas, generate, dataset, train, space, reproduce, hub)
INTERRUPTED = "interrupted: finished work is saved; re-run the same command to resume"


def global_flags() -> argparse.ArgumentParser:
    """Flags given before the subcommand (`aloe --debug eval ...`)."""
    flags = argparse.ArgumentParser(prog="aloe", add_help=False)
    flags.add_argument("--debug", action="store_true",
                       help="On an error, show the traceback as well as the message (also ALOE_DEBUG=1).")
    loudness = flags.add_mutually_exclusive_group()
    loudness.add_argument("-v", "--verbose", action="store_true", help="Show debug messages too.")
    loudness.add_argument("-q", "--quiet", action="store_true", help="No status lines: warnings and errors only.")
    return flags


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aloe", description="Personalised alignment through interaction (ALOE).",
                                     parents=[global_flags()])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=RecipeParser)
    for command in COMMANDS:
        command.register(sub)
    return parser


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is when a record is emitted (a test's captured stderr, say)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):  # StreamHandler.__init__ assigns it; the current sys.stderr is always used
        pass


def configure_logging(verbose: bool = False, quiet: bool = False) -> None:
    """Show the `aloe_bench.*` loggers' records on stderr as bare messages: INFO and up by default.

    Only the package's own logger is touched (other libraries keep their settings); calling it again
    replaces the handler instead of adding a second one.
    """
    logger = logging.getLogger("aloe_bench")
    for handler in [h for h in logger.handlers if isinstance(h, _StderrHandler)]:
        logger.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)


def _leading_options(argv: list[str]) -> list[str]:
    """The tokens before the subcommand: where the global flags are."""
    leading = []
    for token in argv:
        if not token.startswith("-"):
            break
        leading.append(token)
    return leading


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    flags, _ = global_flags().parse_known_args(_leading_options(argv))
    debug = flags.debug or os.environ.get("ALOE_DEBUG", "").strip().lower() in ("1", "true", "yes")
    configure_logging(verbose=flags.verbose, quiet=flags.quiet)
    try:
        parser = build_parser()
        args = parser.parse_args(argv)  # a subcommand's `--config` recipe is read as it parses (RecipeParser)
        return int(args.handler(args) or 0)
    except AloeError as exc:
        if debug:
            traceback.print_exc()
        print(f"aloe: error: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
