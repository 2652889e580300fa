"""`aloe` reports a user's mistake on one line (exit 2), shows a traceback only with --debug, and logs status lines
through module loggers that -q silences. Every user-facing error class derives from AloeError."""

from __future__ import annotations

import importlib
import inspect
import logging
import pkgutil
import subprocess
import sys

import pytest

import aloe_bench
from aloe_bench.commands.main import main
from aloe_bench.core.backends import BackendKind
from aloe_bench.harness import runner
from aloe_bench.core.errors import AloeError, HubUploadError
from fakes import ScriptedBackend

USER_ERRORS = [  # (module, class): where callers import them from
    ("aloe_bench.core.recipes", "ConfigError"),
    ("aloe_bench.core.errors", "ConfigError"),
    ("aloe_bench.core.errors", "MissingFileError"),
    ("aloe_bench.core.errors", "DependencyError"),
    ("aloe_bench.core.errors", "HubUploadError"),
    ("aloe_bench.core.io", "PersonaFileError"),
    ("aloe_bench.core.paper_personas", "PaperPersonasError"),
    ("aloe_bench.core.run_files", "RunFileError"),
    ("aloe_bench.core.ratings", "RatingsError"),
    ("aloe_bench.core.backends", "BackendError"),
    ("aloe_bench.harness.results_dataset", "ResultsDatasetError"),
    ("aloe_bench.training.dataset", "DatasetBuildError"),
    ("aloe_bench.training.sft", "TrainingDataError"),
    ("aloe_bench.space.leaderboard", "LeaderboardError"),
    ("aloe_bench.space.rate", "RateError"),
    ("aloe_bench.space.errors", "SpaceError"),
    ("aloe_bench.commands.hub_space_folder", "DeployError"),
]
KEPT_BASES = {"ConfigError": ValueError, "MissingFileError": FileNotFoundError, "PersonaFileError": ValueError,
              "RunFileError": ValueError, "RatingsError": ValueError, "BackendError": RuntimeError,
              "HubUploadError": RuntimeError, "DeployError": RuntimeError, "SpaceError": ValueError}


@pytest.fixture
def no_model(monkeypatch):
    """Fail the test if a command loads any model: these errors must come before that."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the input was checked")

    monkeypatch.setattr(BackendKind, "create", refuse)


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("aloe: error: ") and "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("module, name", USER_ERRORS)
def test_every_user_facing_error_is_an_aloe_error_and_keeps_its_old_base(module, name):
    cls = getattr(importlib.import_module(module), name)
    assert issubclass(cls, AloeError)
    if name in KEPT_BASES:
        assert issubclass(cls, KEPT_BASES[name])


def test_no_public_exception_class_in_the_package_bypasses_aloe_error():
    """A new error class must derive from AloeError too (private helpers like `_Retryable` are exempt)."""
    found, names = [], [info.name for info in pkgutil.walk_packages(aloe_bench.__path__, "aloe_bench.")]
    for area in ("harness", "training", "space"):  # mapped from top-level folders: walked on their own
        package = importlib.import_module(f"aloe_bench.{area}")
        names += [package.__name__, *(i.name for i in pkgutil.walk_packages(package.__path__, f"{package.__name__}."))]
    for name in names:
        module = importlib.import_module(name)
        for name, obj in vars(module).items():
            if (inspect.isclass(obj) and obj.__module__ == module.__name__ and issubclass(obj, Exception)
                    and not issubclass(obj, Warning) and not name.startswith("_")):
                found.append(obj)
    assert {c.__name__ for c in found} >= {"PersonaFileError", "DeployError", "SpaceError"}  # the walk saw them
    assert [c.__qualname__ for c in found if not issubclass(c, AloeError)] == []


def test_a_missing_persona_file_is_one_line_naming_the_file_in_eval_and_bench(tmp_path, capsys, no_model):
    missing = tmp_path / "no-such-personas.jsonl"
    out = tmp_path / "run"
    assert main(["eval", "--personas", str(missing), "--output_dir", str(out)]) == 2
    eval_line = _one_error_line(capsys.readouterr().err)
    assert str(missing) in eval_line and not out.exists()
    assert main(["bench", "hostile", "--persona-source", str(missing)]) == 2
    assert _one_error_line(capsys.readouterr().err) == eval_line  # same error, same report


@pytest.mark.parametrize("flags, names", [
    (["--schedule", "bogus"], ["schedule", "'bogus'"]),
    (["--protocol", "fast"], ["protocol", "'fast'"]),
    (["--judge_preset", "strict"], ["judge preset", "'strict'"]),
    (["--model", "a/b/c"], ["model spec", "'a/b/c'"]),
    (["--turns", "0"], ["turns", "0"]),
])
def test_a_bad_eval_flag_is_one_line_naming_it(flags, names, tmp_path, capsys, no_model):
    assert main(["eval", *flags, "--output_dir", str(tmp_path / "run")]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert all(name in line for name in names), line


def test_the_console_command_prints_one_line_and_exits_2():
    proc = subprocess.run([sys.executable, "-m", "aloe_bench.commands.main", "eval", "--personas", "/no/such/file.jsonl"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stdout == ""
    assert "/no/such/file.jsonl" in _one_error_line(proc.stderr)


def test_debug_adds_the_traceback(capsys, monkeypatch):
    assert main(["--debug", "eval", "--schedule", "bogus"]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "ConfigError" in err
    assert err.strip().splitlines()[-1] == "aloe: error: schedule must be one of free, lockstep, sequential, got 'bogus'"
    monkeypatch.setenv("ALOE_DEBUG", "1")
    assert main(["eval", "--schedule", "bogus"]) == 2
    assert "Traceback (most recent call last)" in capsys.readouterr().err


def test_other_commands_report_through_main_too(tmp_path, capsys, no_model):
    assert main(["bench", "hostile", "--presets", "paper,strict"]) == 2
    assert "judge preset 'strict'" in _one_error_line(capsys.readouterr().err)
    assert main(["metrics", "--al", "3"]) == 2
    assert "--al '3'" in _one_error_line(capsys.readouterr().err)
    assert main(["results", "push", str(tmp_path)]) == 2  # neither --repo-id nor --local-dir
    assert "--repo-id" in _one_error_line(capsys.readouterr().err)
    assert main(["judge", "agree", str(tmp_path / "nothing-here")]) == 2
    assert "nothing-here" in _one_error_line(capsys.readouterr().err)


def test_an_upload_failure_exits_1_and_a_bug_keeps_its_traceback(capsys, monkeypatch):
    from aloe_bench.commands import metrics as metrics_command

    def upload_fails(args):
        raise HubUploadError("upload of x to org/y failed: ConnectionError: no route\n(second line)")

    monkeypatch.setattr(metrics_command, "_run_metrics", upload_fails)
    assert main(["metrics", "--al", "1,2"]) == 1
    assert _one_error_line(capsys.readouterr().err) == (
        "aloe: error: upload of x to org/y failed: ConnectionError: no route | (second line)")

    def bug(args):
        raise KeyError("a bug, not a user error")

    monkeypatch.setattr(metrics_command, "_run_metrics", bug)
    with pytest.raises(KeyError):
        main(["metrics", "--al", "1,2"])


def test_interrupt_keeps_its_message_and_exit_code(capsys, monkeypatch):
    from aloe_bench.commands import metrics as metrics_command

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(metrics_command, "_run_metrics", interrupted)
    assert main(["metrics", "--al", "1,2"]) == 130
    assert capsys.readouterr().err == "interrupted: finished work is saved; re-run the same command to resume\n"


def _scripted_backends(monkeypatch):
    made = iter([ScriptedBackend(fn=lambda m, c: "a reply"), ScriptedBackend(fn=lambda m, c: "a user message"),
                 ScriptedBackend(["4"])])
    monkeypatch.setattr(runner, "build_backend", lambda spec, options=None, **kw: next(made))


def test_status_lines_are_logged_and_quiet_silences_them(tmp_path, capsys, monkeypatch):
    run = ["eval", "--max_personas", "1", "--turns", "1", "--bootstrap_resamples", "10", "--progress", "false"]
    _scripted_backends(monkeypatch)
    assert main([*run, "--output_dir", str(tmp_path / "a")]) == 0
    out, err = capsys.readouterr()
    assert "Results: " in err and "Results: " not in out  # the status line, on stderr, as before
    _scripted_backends(monkeypatch)
    assert main(["-q", *run, "--output_dir", str(tmp_path / "b")]) == 0
    out, err = capsys.readouterr()
    assert err == "" and '"results_file"' in out  # the JSON result still prints
    assert main(["-v", "metrics", "--al", "1,2"]) == 0
    assert logging.getLogger("aloe_bench.commands.eval").isEnabledFor(logging.DEBUG)
    assert len([h for h in logging.getLogger("aloe_bench").handlers if type(h).__name__ == "_StderrHandler"]) == 1
