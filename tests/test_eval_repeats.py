"""`aloe eval --repeats K`: K ordinary runs with seeds seed..seed+K-1 sharing a group id, a group summary with the
spread across repeats, resumable (a finished repeat makes no model call)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from aloe_bench.commands.main import main
from aloe_bench.harness import runner
from aloe_bench.harness.repeats import spread
from aloe_bench.testing.backends import ScriptedBackend


def _reply(messages, config):
    turn = sum(m["role"] == "user" for m in messages)
    return f"reply seed {config.seed} turn {turn}"


def _judge(messages, config):
    seed, turn = map(int, re.search(r"reply seed (\d+) turn (\d+)", messages[-1]["content"]).groups())
    return str(min(5, 1 + turn + 2 * seed))  # seed 0: 2, 3; seed 1: 4, 5


@pytest.fixture
def backends(monkeypatch):
    """The three scripted roles, in the order `build_roles` builds them, for every repeat."""
    made = {"model": ScriptedBackend(fn=_reply), "user": ScriptedBackend(fn=lambda m, c: "hello there"),
            "judge": ScriptedBackend(fn=_judge)}
    order = iter(["model", "user", "judge"] * 10)
    monkeypatch.setattr(runner, "build_backend", lambda spec, options=None, **kw: made[next(order)])
    return made


ARGS = ["eval", "--max_personas", "2", "--turns", "2", "--bootstrap_resamples", "20", "--progress", "false",
        "--cache", "false", "--repeats", "2"]


def test_two_repeats_give_two_runs_with_their_seeds_and_a_group_summary(tmp_path, backends, capsys):
    assert main([*ARGS, "--output_dir", str(tmp_path)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["repeats"] == 2 and printed["seeds"] == [0, 1]
    results_files = sorted(tmp_path.rglob("results_*.json"))
    assert len(results_files) == 2 and len(set(json.loads((tmp_path / "runs.json").read_text()).values())) == 2
    runs = [json.loads(p.read_text()) for p in results_files]
    by_seed = {r["config"]["run"]["seed"]: r for r in runs}
    assert sorted(by_seed) == [0, 1]
    for index, seed in enumerate((0, 1), 1):
        assert by_seed[seed]["repeat"] == {"group_id": printed["group_id"], "index": index, "repeats": 2,
                                           "seed": seed, "seeds": [0, 1]}
    assert by_seed[0]["metrics"]["AL"] == [2.0, 3.0] and by_seed[1]["metrics"]["AL"] == [4.0, 5.0]
    assert {c.seed for _, c in backends["model"].calls} == {0, 1}  # each repeat sampled with its own seed

    summary_file = Path(printed["summary_file"])
    assert summary_file.name == f"group_{printed['group_id']}.json" and summary_file.parent == results_files[0].parent
    summary = json.loads(summary_file.read_text())
    assert [r["run_id"] for r in summary["runs"]] == [by_seed[0]["run_id"], by_seed[1]["run_id"]]
    al = summary["metrics"]["AL_avg"]
    assert al["values"] == [2.5, 4.5] and al["mean"] == 3.5 and al["min"] == 2.5 and al["max"] == 4.5
    assert al["sd"] == pytest.approx(2 ** 0.5, abs=1e-6)  # sample SD of 2.5 and 4.5
    assert al["bootstrap_intervals"] == [by_seed[0]["metrics"]["intervals"]["AL_avg"],
                                         by_seed[1]["metrics"]["intervals"]["AL_avg"]]
    widths = [hi - lo for lo, hi in al["bootstrap_intervals"]]
    assert al["bootstrap_width_mean"] == pytest.approx(sum(widths) / 2, abs=1e-6)
    assert summary["metrics"]["IR"]["values"] == [1.0, 1.0] and summary["metrics"]["IR"]["sd"] == 0.0
    assert printed["metrics"]["AL_avg"]["sd"] == al["sd"] and "bootstrap_intervals" not in printed["metrics"]["IR"]

    # the repeats are ordinary runs: a reader pairing rows by persona and turn compares them
    samples = [str(p) for p in sorted(tmp_path.rglob("samples_*.jsonl"))]
    assert main(["judge", "agree", *samples, "--resamples", "20"]) == 0
    pair = json.loads(capsys.readouterr().out)["pairs"][0]
    assert pair["pairs"] == 4 and pair["mean_difference"] in (-2.0, 2.0)


def test_a_finished_repeat_is_not_run_again(tmp_path, backends, capsys):
    assert main([*ARGS, "--output_dir", str(tmp_path)]) == 0
    first = json.loads(capsys.readouterr().out)
    calls = {role: sum(len(batch) for batch, _ in b.calls) for role, b in backends.items()}
    assert calls == {"model": 8, "user": 8, "judge": 8}  # 2 repeats x 2 personas x 2 turns
    assert main([*ARGS, "--output_dir", str(tmp_path)]) == 0
    again = json.loads(capsys.readouterr().out)
    assert {role: sum(len(batch) for batch, _ in b.calls) for role, b in backends.items()} == calls  # no model call: both repeats were done
    assert again["group_id"] == first["group_id"] and again["runs"] == first["runs"]
    assert again["metrics"] == first["metrics"] and len(list(tmp_path.rglob("group_*.json"))) == 1


def test_spread_leaves_undefined_repeats_out_and_says_why():
    out = spread([None, 2.0], [None, [1.0, 3.0]])
    assert out["repeats_defined"] == 1 and out["mean"] == 2.0 and out["sd"] is None
    assert out["undefined"] == {"sd": "fewer than 2 repeats with a value"}
    assert out["bootstrap_width_mean"] == 2.0
    assert spread([1.0, 2.0, 6.0], [None] * 3)["sd"] == pytest.approx(2.645751, abs=1e-6)


@pytest.mark.slow
def test_repeats_end_to_end_on_the_embedded_model(tmp_path):
    import os
    import subprocess
    import sys

    import numpy as np

    proc = subprocess.run([sys.executable, "-m", "aloe_bench.commands.main", "eval", "--max_personas", "2",
                           "--turns", "2", "--reply_max_new_tokens", "16", "--user_max_new_tokens", "16",
                           "--bootstrap_resamples", "50", "--repeats", "2", "--progress", "false",
                           "--output_dir", str(tmp_path)], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = json.loads(proc.stdout)
    runs = {r["seed"]: r for r in (json.loads(p.read_text()) for p in tmp_path.rglob("results_*.json"))
            for r in [r["repeat"] | {"results": r}]}
    assert sorted(runs) == [0, 1] and printed["seeds"] == [0, 1]
    values = [runs[s]["results"]["metrics"]["AL_avg"] for s in (0, 1)]
    summary = json.loads(Path(printed["summary_file"]).read_text())
    assert summary["metrics"]["AL_avg"]["values"] == [round(v, 6) for v in values]
    assert summary["metrics"]["AL_avg"]["sd"] == pytest.approx(np.std(values, ddof=1), abs=1e-5)
    assert all(r["results"]["counts"]["rows"] == 4 for r in runs.values())


def test_runs_started_in_the_same_second_get_their_own_run_ids(tmp_path, monkeypatch):
    from aloe_bench.harness import results as results_module

    monkeypatch.setattr(results_module.time, "strftime", lambda fmt, t=None: "20260101T000000")
    ids = [results_module.RunFiles(tmp_path, fp, "m").run_id for fp in ("a" * 16, "b" * 16, "c" * 16, "a" * 16)]
    assert ids == ["20260101T000000", "20260101T000000-2", "20260101T000000-3", "20260101T000000"]


def test_one_run_refuses_repeats_instead_of_ignoring_them(tmp_path):
    from aloe_bench.core.errors import ConfigError

    with pytest.raises(ConfigError, match="repeats=2: one run evaluates one seed"):
        runner.evaluate_personas(["p"], ["q"], repeats=2, output_dir=str(tmp_path))
