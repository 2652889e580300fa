"""One clear house: the product never imports the test apparatus (aloe_bench.testing), only the `aloe bench` command
(commands/bench.py) imports the benchmarks (aloe_bench.bench), and without their extra `aloe eval` still runs while
`aloe bench ...` says what to install."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: folder -> the package it is installed as (pyproject.toml's package-dir)
PRODUCT_FOLDERS = {"src/aloe_bench/core": "aloe_bench.core", "harness": "aloe_bench.harness",
                   "training": "aloe_bench.training", "space": "aloe_bench.space",
                   "src/aloe_bench/commands": "aloe_bench.commands"}
PRODUCT_FILES = {"src/aloe_bench/__init__.py": "aloe_bench"}
FORBIDDEN = ("aloe_bench.bench", "aloe_bench.testing")
#: the one product module that may name a forbidden package: `aloe bench` runs the benchmarks
ALLOWED = {"src/aloe_bench/commands/bench.py": ("aloe_bench.bench",)}


def product_modules() -> dict[Path, str]:
    """Every product source file with its module name."""
    modules = {REPO / path: name for path, name in PRODUCT_FILES.items()}
    for folder, package in PRODUCT_FOLDERS.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            parts = path.relative_to(REPO / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[path] = ".".join((package, *parts))
    return modules


def imported_modules(source: str, module: str, is_package: bool) -> set[str]:
    """Absolute names of everything `source` imports (`from a import b` gives both a and a.b)."""
    package = module if is_package else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def forbidden_imports(source: str, module: str, is_package: bool = False, allowed: tuple[str, ...] = ()) -> list[str]:
    return sorted(name for name in imported_modules(source, module, is_package)
                  if any(name == f or name.startswith(f + ".") for f in FORBIDDEN if f not in allowed))


def test_the_checker_sees_absolute_relative_and_from_package_imports():
    assert forbidden_imports("import aloe_bench.testing.serve", "aloe_bench.core.x") == [
        "aloe_bench.testing.serve"]
    assert forbidden_imports("def f():\n    from aloe_bench.bench.faults import check_rows\n",
                             "aloe_bench.commands.eval") == ["aloe_bench.bench.faults", "aloe_bench.bench.faults.check_rows"]
    assert forbidden_imports("from .. import testing", "aloe_bench.core.faults") == ["aloe_bench.testing"]
    assert forbidden_imports("from ...testing import backends", "aloe_bench.core.backends.hf") == [
        "aloe_bench.testing", "aloe_bench.testing.backends"]
    assert forbidden_imports("from aloe_bench import bench", "aloe_bench.space.ui") == ["aloe_bench.bench"]
    assert forbidden_imports("from . import session\nimport aloe_bench.core.judge", "aloe_bench.space.ui") == []
    assert forbidden_imports("from .testing import x", "aloe_bench.space", is_package=True) == []  # aloe_bench.space.testing


def test_the_checker_lets_only_the_named_package_through():
    source = "from aloe_bench.bench.faults import bench_faults\nfrom aloe_bench.testing import serve\n"
    assert forbidden_imports(source, "aloe_bench.commands.bench", allowed=("aloe_bench.bench",)) == [
        "aloe_bench.testing", "aloe_bench.testing.serve"]


def test_no_product_module_imports_the_benchmarks_or_the_test_apparatus():
    modules = product_modules()
    assert len(modules) > 40 and REPO / "harness" / "runner.py" in modules  # the walk found the product
    assert set(ALLOWED) <= {str(path.relative_to(REPO)) for path in modules}
    offenders = {}
    for path, module in modules.items():
        where = str(path.relative_to(REPO))
        found = forbidden_imports(path.read_text(encoding="utf-8"), module, path.name == "__init__.py",
                                  ALLOWED.get(where, ()))
        if found:
            offenders[where] = found
    assert not offenders, f"product modules import benchmark/test code: {offenders}"


def test_every_bench_command_is_registered_by_the_bench_command_module():
    from aloe_bench.commands.main import build_parser

    parser = build_parser()
    bench = parser._subparsers._group_actions[0].choices["bench"]
    commands = bench._subparsers._group_actions[0].choices
    assert set(commands) == {"eval", "hostile", "faults", "schedule", "personas", "space", "turns"}
    for name, sub in commands.items():
        assert sub.get_default("handler").__module__ == "aloe_bench.commands.bench", name


# Runs `aloe` commands in one fresh interpreter where the bench extra's packages (and the Space's) cannot be
# imported, as after `pip install aloe-bench` with no extras; prints each command's exit code, stdout and stderr.
WITHOUT_EXTRAS = r"""
import contextlib, io, json, sys

for name in ("aiohttp", "psutil", "gradio", "gradio_client"):
    sys.modules[name] = None  # import raises ModuleNotFoundError; importlib.util.find_spec answers None
from aloe_bench.commands.main import main

results = []
for argv in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    results.append([code, out.getvalue(), err.getvalue()])
print(json.dumps(results))
"""
BENCH_CASES = [  # argv, the packages named, the extras to install
    (["bench", "faults", "--personas", "1"], "aiohttp", "bench"),
    (["bench", "schedule", "--personas", "1", "--no-mixed"], "aiohttp", "bench"),
    (["bench", "space", "--sessions", "1"], "gradio, gradio_client, psutil", "bench,space"),
]


@pytest.fixture(scope="module")
def without_extras() -> list:
    import json

    commands = [["eval", "--print-config"]] + [argv for argv, _, _ in BENCH_CASES]
    proc = subprocess.run([sys.executable, "-c", WITHOUT_EXTRAS, json.dumps(commands)], capture_output=True,
                          text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_aloe_eval_needs_no_extra(without_extras):
    code, out, err = without_extras[0]
    assert code == 0, err
    assert '"protocol"' in out


@pytest.mark.parametrize("case", range(len(BENCH_CASES)))
def test_a_benchmark_without_its_extra_fails_with_one_line_naming_it(without_extras, case):
    code, out, err = without_extras[1 + case]
    _, missing, extras = BENCH_CASES[case]
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert f"needs {missing}" in lines[0] and f"pip install 'aloe-bench[{extras}]'" in lines[0], lines[0]


def test_the_fault_proxy_without_aiohttp_names_the_extra(monkeypatch):
    from aloe_bench.core.extras import MissingExtra
    from aloe_bench.testing.fault_proxy import FaultPlan, FaultProxy

    monkeypatch.setitem(sys.modules, "aiohttp", None)  # find_spec reports a None entry as not importable
    proxy = FaultProxy("http://127.0.0.1:9", FaultPlan())
    try:
        with pytest.raises(MissingExtra, match=r"aiohttp.*aloe-bench\[bench\]"):
            proxy.start()
    finally:
        proxy._sock.close()


def test_areas_reach_backends_through_the_one_registry_function_only():
    """harness/, training/ and space/ build backends with `build_backend`; no area imports a backend kind's module
    (the registry imports it lazily) or builds a backend another way."""
    from aloe_bench.core.backends import BACKEND_KINDS

    kind_modules = {"aloe_bench.core.backends" + kind.factory.partition(":")[0] for kind in BACKEND_KINDS.values()}
    assert "aloe_bench.core.backends.hf" in kind_modules and len(kind_modules) == len(BACKEND_KINDS)
    offenders = {}
    for path, module in product_modules().items():
        if not module.startswith(("aloe_bench.harness", "aloe_bench.training", "aloe_bench.space")):
            continue
        names = imported_modules(path.read_text(encoding="utf-8"), module, path.name == "__init__.py")
        bad = sorted(n for n in names if any(n == m or n.startswith(m + ".") for m in kind_modules)
                     or n.endswith((".load_backend", ".backend_factory")))
        if bad:
            offenders[str(path.relative_to(REPO))] = bad
    assert not offenders, f"area modules reach backends around build_backend: {offenders}"
