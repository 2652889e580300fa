"""The command layout: every `aloe` subcommand is handled in the module README's Layout table names for it, every
command parses its options from dataclasses through the recipe parser, and the areas hold no command modules."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from aloe_bench.commands.main import build_parser
from aloe_bench.core.recipes import RecipeParser

REPO = Path(__file__).resolve().parents[1]
AREAS = ("harness", "training", "space")
ROW = re.compile(r"^\| `(aloe_bench\.commands\.\w+)` \| `([^`]+)`[^|]* \|[^|]*\| (.*) \|$", re.M)


def readme_command_modules() -> dict[str, str]:
    """README's Layout table: top-level command -> the commands module named for it."""
    section = (REPO / "README.md").read_text(encoding="utf-8").split("## Layout", 1)[1]
    modules = {}
    for module, folder, commands in ROW.findall(section):
        assert (REPO / folder).is_file(), f"README's Layout names {folder} for {module}: no such file"
        for command in re.findall(r"`aloe (\w[\w-]*)`", commands):
            assert command not in modules, f"README's Layout names two modules for `aloe {command}`"
            modules[command] = module
    return modules


def leaf_commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(path, parser) of every subcommand that runs something, nested ones included."""
    subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subparsers:
        yield path, parser
        return
    for name, child in subparsers[0].choices.items():
        yield from leaf_commands(child, (*path, name))


LEAVES = list(leaf_commands(build_parser()))


def test_the_walk_finds_every_command_and_nested_subcommand():
    paths = {" ".join(path) for path, _ in LEAVES}
    assert {"eval", "metrics", "judge rescore", "judge push-ratings", "results push", "train sft", "train card",
            "hub build", "bench schedule", "personas overlap", "dataset push", "reproduce", "space"} <= paths
    assert len(paths) >= 26


@pytest.mark.parametrize("path", [" ".join(path) for path, _ in LEAVES])
def test_every_subcommand_is_handled_in_the_module_readme_names(path):
    modules = readme_command_modules()
    parser = dict((" ".join(p), q) for p, q in LEAVES)[path]
    handler = parser.get_default("handler")
    assert handler is not None, f"aloe {path} has no handler"
    top = path.split()[0]
    assert top in modules, f"README's Layout table names no module for `aloe {top}`"
    assert handler.__module__ == modules[top], f"aloe {path}: handled in {handler.__module__}, README names {modules[top]}"


@pytest.mark.parametrize("path", [" ".join(path) for path, _ in LEAVES])
def test_every_subcommand_parses_dataclasses_through_the_recipe_parser(path):
    parser = dict((" ".join(p), q) for p, q in LEAVES)[path]
    assert isinstance(parser, RecipeParser) and parser.takes_recipe, f"aloe {path} types its flags by hand"
    parser.format_usage()  # loads lazily declared dataclasses
    assert parser.dataclass_types, f"aloe {path} parses no dataclass"


def test_every_top_level_command_has_its_own_module_named_after_it():
    top_level = {path[0] for path, _ in LEAVES}
    modules = readme_command_modules()
    assert set(modules) == top_level, "README's Layout table and the `aloe` command list different commands"
    for command in top_level:
        assert modules[command] == f"aloe_bench.commands.{command}", command


def test_the_areas_hold_no_command_modules():
    found = [str(path.relative_to(REPO)) for area in AREAS for path in (REPO / area).rglob("*.py")
             if path.stem == "cli" or path.stem.endswith("_cli")]
    assert not found, f"command code belongs in src/aloe_bench/commands/: {found}"


def test_commands_are_registered_by_explicit_imports():
    source = (REPO / "src" / "aloe_bench" / "commands" / "main.py").read_text(encoding="utf-8")
    assert "importlib" not in source and "not built" not in source


def test_positional_and_switch_fields_parse_like_the_hand_typed_flags_they_replace():
    """A switch takes no value, so `--public RUN` leaves RUN to the positional (a bool flag with an optional value
    would swallow it); a list field given `positional` takes one or more values."""
    args = build_parser().parse_args(["results", "push", "--public", "runs/a", "runs/b", "--no-model-card",
                                      "--create-pr", "--repo-id", "org/name"])
    assert (args.runs, args.public, args.create_pr, args.model_card, args.repo_id) == (
        ["runs/a", "runs/b"], True, True, False, "org/name")
    args = build_parser().parse_args(["hub", "build", "evaluate", "out", "--overwrite"])
    assert (args.kind, args.out_dir, args.overwrite, args.oauth) == ("evaluate", "out", True, False)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["hub", "build", "nonsense", "out"])  # a Literal positional keeps its choices
