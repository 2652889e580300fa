"""Recipes: one YAML file of dataclass fields per run, parsed by TRL's `TrlParser`; command-line flags override it.

`aloe eval --config eval.yaml --turns 5` makes the recipe's values the defaults of the subcommand's flags (TRL's
`set_defaults_with_config`), so a flag given on the command line wins, in one parse. Two things differ from
`trl sft --config`: a key no flag knows is an error naming the file and the key (a typo must not be dropped
silently), and there is no `env:` block (secrets come from the environment only, never from a recipe).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import sys
import typing
from pathlib import Path
from types import MappingProxyType

import yaml
from trl import TrlParser

from .errors import ConfigError

#: field metadata that HfArgumentParser hands to argparse (any other key stays with the dataclass)
_ARGPARSE_KEYS = ("help", "aliases", "choices", "metavar", "nargs", "const", "required")


def load_recipe(path: str | Path) -> dict:
    """The recipe's mapping of field: value; a missing file, bad YAML (with its line) or a non-mapping is an error."""
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
    return data


def _config_path(argv: list[str]) -> str | None:
    """The value of the last `--config PATH` / `--config=PATH` before a `--` (argparse's rule: the last one wins)."""
    path = None
    for i, token in enumerate(argv):
        if token == "--":
            break
        if token == "--config" and i + 1 < len(argv):
            path = argv[i + 1]
        elif token.startswith("--config="):
            path = token.split("=", 1)[1]
    return path


class _Repeated(argparse.Action):
    """A flag that may be given several times (`--judge_model A --judge_model B`): the values given on the command
    line, in order, replace the default (the field's, or a recipe's value); given once, the one value."""

    def __call__(self, parser, namespace, values, option_string=None):
        marker = f"_repeated_{self.dest}"
        given = getattr(namespace, marker, None) or []
        given = [*given, values]
        setattr(namespace, marker, given)
        setattr(namespace, self.dest, given if len(given) > 1 else given[0])


class RecipeParser(TrlParser):
    """An `aloe` subcommand: flags from dataclasses (HfArgumentParser) and, when it has any, `--config recipe.yaml`.

    `lazy_types` is a function returning the dataclasses, called when the command is parsed or its help shown:
    the training stages use it because TRL's trainer configs import torch, which `aloe metrics` must not pay for.
    Used as the `parser_class` of the `aloe` subcommands, so every subcommand (nested ones too) is one of these.
    A recipe becomes the parser's defaults, so build a fresh parser per command line (as `aloe` does).
    """

    def __init__(self, dataclass_types=None, *, lazy_types=None, **kwargs):
        super().__init__(dataclass_types, **kwargs)
        self._lazy_types = lazy_types
        self.takes_recipe = bool(self.dataclass_types) or lazy_types is not None
        if self.takes_recipe:
            self.add_argument("--config", default=None, metavar="RECIPE.yaml",
                              help="YAML recipe of this command's fields; flags given on the command line override it")

    @staticmethod
    def _parse_dataclass_field(parser, field: dataclasses.Field) -> None:
        """A field's flags, as HfArgumentParser makes them, with what it does not do.

        `metadata={"repeatable": True}`: a flag that may be repeated, each time one more value (`_Repeated`).
        `metadata={"positional": True}`: an argument given without a flag (`nargs="+"` for a list, `choices` for
        a Literal). `metadata={"switch": True}`: a bool flag that takes no value, so it never swallows the
        positional argument written after it (HfArgumentParser's bool flags take an optional `true`/`false`).
        Metadata other than argparse's (such as `BackendOptions`' `kinds`) stays on the field, and a mapping field
        takes its value as text (a JSON object, which the dataclass parses; a recipe gives the mapping itself).
        """
        kwargs = {key: value for key, value in field.metadata.items() if key in _ARGPARSE_KEYS}
        if field.metadata.get("positional"):
            origin, args = typing.get_origin(field.type), typing.get_args(field.type)
            if origin is list:
                kwargs.update(nargs="+", type=args[0])
            elif origin is typing.Literal:
                kwargs["choices"] = args
            else:
                kwargs["type"] = field.type
            parser.add_argument(field.name, **kwargs)
        elif field.metadata.get("repeatable"):
            flags = [f"--{field.name}"] + ([f"--{field.name.replace('_', '-')}"] if "_" in field.name else [])
            default = None if field.default is dataclasses.MISSING else field.default
            parser.add_argument(*flags, dest=field.name, action=_Repeated, default=default, metavar="VALUE",
                                **{k: v for k, v in kwargs.items() if k in ("help", "required")})
        elif field.metadata.get("switch"):
            flags = [f"--{field.name}"] + ([f"--{field.name.replace('_', '-')}"] if "_" in field.name else [])
            aliases = kwargs.pop("aliases", [])
            parser.add_argument(*flags, *aliases, dest=field.name, action="store_true", **kwargs)
        else:
            field = copy.copy(field)
            field.metadata = MappingProxyType(kwargs)
            if field.type in (dict, dict | None):
                field.type = str | None
            TrlParser._parse_dataclass_field(parser, field)

    def _load_types(self) -> None:
        if self._lazy_types is None:
            return
        load, self._lazy_types = self._lazy_types, None
        for dtype in load():
            if "config" in dtype.__dataclass_fields__:  # TrlParser's rule: `config` names the recipe file
                raise ValueError(f"dataclass {dtype.__name__} has a field named 'config', reserved for the recipe file")
            self.dataclass_types.append(dtype)
            self._add_dataclass_arguments(dtype)

    def apply_recipe(self, path: str | Path) -> dict:
        """Make the recipe's values this parser's defaults; return the recipe. Unknown keys raise ConfigError."""
        self._load_types()
        data = load_recipe(path)
        reserved = [key for key in data if key in ("config", "help")]
        left = self.set_defaults_with_config(**{k: v for k, v in data.items() if k not in reserved})
        unknown = sorted(reserved + [flag.removeprefix("--") for flag in left[::2]])
        if unknown:
            raise ConfigError(f"{path}: unknown field(s) {', '.join(unknown)}")
        return data

    def parse_known_args(self, args=None, namespace=None):
        self._load_types()
        args = list(sys.argv[1:] if args is None else args)
        path = _config_path(args) if self.takes_recipe else None
        if path is not None:
            self.apply_recipe(path)
        namespace, extras = super().parse_known_args(args, namespace)
        if self.takes_recipe and getattr(namespace, "config", None) not in (None, path):  # e.g. `--conf x.yaml`
            raise ConfigError(f"{namespace.config}: name the recipe with --config in full")
        return namespace, extras

    def format_help(self) -> str:
        self._load_types()
        return super().format_help()

    def format_usage(self) -> str:
        self._load_types()
        return super().format_usage()


def read_recipe(path: str | Path, dataclass_types) -> dict:
    """Load a recipe and check every key against the dataclasses' fields (what `--config` would apply)."""
    return RecipeParser(dataclass_types).apply_recipe(path)


def add_recipe_command(sub, name: str, dataclass_types, handler, help: str) -> RecipeParser:
    """A subcommand whose flags come from `dataclass_types` and that takes `--config recipe.yaml`.

    `dataclass_types` may be a function returning them: it is called only when this command is parsed or its help
    shown (for dataclasses whose module is slow to import). `sub` comes from `add_subparsers(parser_class=
    RecipeParser)` (the `aloe` command's and every nested one).
    """
    types = {"lazy_types": dataclass_types} if callable(dataclass_types) else {"dataclass_types": dataclass_types}
    parser = sub.add_parser(name, **types, help=help, description=help)
    if not isinstance(parser, RecipeParser):
        raise TypeError(f"{name}: its subparsers need parser_class=RecipeParser to read recipes")
    parser.set_defaults(handler=handler)
    return parser


def add_command_group(sub, name: str, help: str, metavar: str | None = None):
    """`aloe NAME ACTION ...`: a command whose own subcommands are its actions; returns their `add_parser` holder.

    The actions are RecipeParsers too (argparse gives nested subparsers the parser's own class), so each is added
    with `add_recipe_command`.
    """
    return sub.add_parser(name, help=help).add_subparsers(dest=f"{name}_command", metavar=metavar, required=True)


def dataclass_from_args(args, dtype):
    """Build `dtype` from the parsed namespace (its fields only)."""
    names = {f.name for f in dataclasses.fields(dtype) if f.init}
    return dtype(**{k: v for k, v in vars(args).items() if k in names})


def dataclasses_from_keywords(keywords: dict, *dtypes) -> tuple:
    """One instance of each of `dtypes` from `keywords`, each taking the keys that are its fields (a Python
    caller's counterpart of parsing them side by side); a key no dataclass has is a TypeError naming it."""
    names = [{f.name for f in dataclasses.fields(dtype) if f.init} for dtype in dtypes]
    unknown = sorted(set(keywords).difference(*names))
    if unknown:
        raise TypeError(f"unexpected keyword argument(s) {', '.join(map(repr, unknown))}: not a field of "
                        f"{' or '.join(dtype.__name__ for dtype in dtypes)}")
    return tuple(dtype(**{k: v for k, v in keywords.items() if k in fields}) for dtype, fields in zip(dtypes, names))
