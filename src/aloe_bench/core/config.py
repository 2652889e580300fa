"""Dataclass configs with a YAML recipe per run that CLI flags override (TRL's convention)."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import yaml

from .errors import ConfigError  # noqa: F401  (raised here; importable from here as before)


def read_recipe(path: str | Path, dataclass_types) -> dict:
    """Load a YAML recipe, rejecting keys no dataclass knows (a typo must not be silently ignored)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such recipe file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe must be a mapping of field: value")
    known = {f.name for t in dataclass_types for f in dataclasses.fields(t)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown field(s) {', '.join(unknown)}")
    return data


def add_recipe_parser(sub, name: str, dataclass_types: list, handler, help: str):
    """A subcommand whose flags come from dataclasses and that takes `--config recipe.yaml`."""
    parser = sub.add_parser(name, dataclass_types=dataclass_types, help=help, description=help)
    parser.add_argument("--config", default=None, help="YAML recipe; flags given on the command line override it")
    parser.set_defaults(handler=handler, recipe_parser=parser, recipe_types=dataclass_types)
    return parser


def apply_recipe(parser, args, argv):
    """Re-parse `argv` with the recipe named by `--config` as defaults, so explicit flags win."""
    recipe_parser = getattr(args, "recipe_parser", None)
    if recipe_parser is None or not getattr(args, "config", None):
        return args
    recipe_parser.set_defaults(**read_recipe(args.config, args.recipe_types))
    return parser.parse_args(argv)


def dataclass_from_args(args, dtype):
    """Build `dtype` from the parsed namespace (its fields only)."""
    names = {f.name for f in dataclasses.fields(dtype) if f.init}
    return dtype(**{k: v for k, v in vars(args).items() if k in names})


def atomic_write_json(path: str | Path, data) -> None:
    """Write JSON through a temp file and a rename, so a reader (or a crash) never sees half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def emit_report(report: dict, output: str | Path | None = None) -> None:
    """Print a benchmark's JSON report and, with `output`, write the same text there (atomically)."""
    print(json.dumps(report, indent=2, ensure_ascii=False))
    if output:
        atomic_write_json(output, report)
