"""Juries and judge repeats (`aloe eval --judge_model A --judge_model B`, `--judge_samples N`) on scripted judges:
aggregation with failing judges, refusals, the results' `judges` block, run identity, the results dataset, and
`aloe judge rescore` keeping the run's judge settings (and adding a judge with `--keep_judges`)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasets import load_dataset

from aloe_bench.core.backends import BackendOptions, GenerationConfig
from aloe_bench.core.errors import ConfigError
from aloe_bench.core.jury import SAMPLE_SEED_STEP, Jury
from aloe_bench.core.run_files import find_runs
from aloe_bench.core.simulator import UserSimulator
from aloe_bench.harness import EvalConfig, evaluate_model
from aloe_bench.harness.protocol import resolve_run
from aloe_bench.harness.rescore import RescoreConfig, rescore_run
from aloe_bench.harness.results_dataset import merge_runs
from aloe_bench.harness.runner import EvalRoles, build_judges
from aloe_bench.testing.backends import ScriptedBackend
from test_harness_loop import user_fn


def run_with_judges(tmp_path, upstream_dir, answers, out="run", **settings):
    """An eval of 2 personas x 2 turns whose judges answer from `answers` (one text, or a function of the request's
    generation config, per judge); every judge is `paper` read from text, no re-asks unless `settings` say."""
    values = dict(personas=str(upstream_dir), max_personas=2, turns=2, output_dir=str(tmp_path / out),
                  bootstrap_resamples=20, progress=False, schedule="lockstep", judge_scoring="text",
                  judge_max_retries=0, judge_model=[f"fake/judge-{i + 1}" for i in range(len(answers))])
    run = resolve_run(EvalConfig(**{**values, **settings}))
    backends = [ScriptedBackend(fn=(lambda a: (lambda m, c: a(c) if callable(a) else a))(a), name=f"fake/judge-{i + 1}")
                for i, a in enumerate(answers)]
    judge = build_judges(run, backends=backends)
    roles = EvalRoles(ScriptedBackend(fn=lambda m, c: f"reply to: {m[-1]['content']}"),
                      UserSimulator(ScriptedBackend(fn=user_fn), GenerationConfig(16, 0.7)), judge,
                      GenerationConfig(16), None)
    results = evaluate_model(run, roles=roles)
    rows = [json.loads(line) for line in (tmp_path / out / results["files"]["samples"]).read_text().splitlines()]
    return results, rows, backends


@pytest.mark.parametrize("how, expected", [("mean", round((1 + 2 + 5) / 3, 6)), ("median", 2.0)])
def test_a_failing_judge_leaves_the_others_aggregate_and_is_recorded(tmp_path, upstream_dir, how, expected):
    results, rows, _ = run_with_judges(tmp_path, upstream_dir, ["1", "2", "5", "no idea"], jury_aggregate=how)
    assert len(rows) == 4
    for row in rows:
        assert row["score"] == expected and row["judge_error"] is None
        records = row["judges"]
        assert [(r["judge"], r["score"]) for r in records] == [(1, 1.0), (2, 2.0), (3, 5.0), (4, None)]
        assert records[3]["error"] == "unparsable judge answer" and records[3]["raw"] == "no idea"
        assert records[0]["spec"] == "fake/judge-1" and records[0]["preset"] == "paper"
        assert {r["sample"] for r in records} == {0} and {r["seed"] for r in records} == {0}
    assert results["metrics"]["AL"] == [expected, expected]
    assert results["counts"]["scored"] == 4 and results["counts"]["judge_failures"] == 0
    members = results["judges"]["members"]
    assert [(m["judge"], m["requests"], m["failures"]) for m in members] == [(1, 4, 0), (2, 4, 0), (3, 4, 0),
                                                                             (4, 4, 4)]
    assert results["judges"]["aggregate"] == how
    assert results["judge"].startswith(f"jury {how} of 4: fake/judge-1 (paper, text)")


def test_all_judges_failing_is_a_failed_row(tmp_path, upstream_dir):
    results, rows, _ = run_with_judges(tmp_path, upstream_dir, ["nothing", "still nothing"])
    for row in rows:
        assert row["score"] is None
        assert row["judge_error"].startswith("all judges failed: judge 1: unparsable judge answer; judge 2:")
        assert [r["score"] for r in row["judges"]] == [None, None]
    assert results["counts"]["judge_failures"] == 4 and results["counts"]["scored"] == 0
    assert results["metrics"]["AL_avg"] is None


def test_spread_agreement_and_request_counts_in_results(tmp_path, upstream_dir):
    # judge 2 fails its first attempt on every row, then answers 4 when re-asked (with the re-ask's seed)
    results, rows, backends = run_with_judges(tmp_path, upstream_dir, ["2", lambda c: "x" if c.seed == 0 else "4"],
                                              judge_max_retries=1)
    block = results["judges"]
    assert [(m["requests"], m["failures"]) for m in block["members"]] == [(4, 0), (8, 0)]
    assert sum(len(batch) for batch, _ in backends[1].calls) == 8  # what the judge was really asked
    assert block["spread"]["mean_sd"] == {"value": 1.0, "rows": 4}  # scores 2 and 4: population SD 1
    assert block["spread"]["mean_sd_between_judges"]["value"] == 1.0
    assert block["spread"]["mean_sd_within_judge"]["value"] is None
    [pair] = block["agreement"]
    assert pair["pairs"] == 4 and pair["mean_difference"] == -2.0 and pair["exact"] == 0.0 and pair["within_1"] == 0.0
    assert pair["a"].startswith("judge 1: fake/judge-1") and pair["b"].startswith("judge 2: fake/judge-2")
    assert all(r["score"] == 3.0 for r in rows)


def test_a_lone_judge_reports_its_requests_and_no_spread(tmp_path, upstream_dir):
    results, rows, _ = run_with_judges(tmp_path, upstream_dir, ["3"])
    assert all("judges" not in row for row in rows)  # a lone judge's rows keep their keys
    block = results["judges"]
    assert [(m["judge"], m["requests"], m["failures"]) for m in block["members"]] == [(1, 4, 0)]
    assert block["spread"]["mean_sd"]["value"] is None and block["agreement"] == []
    assert results["judge"] == "fake/judge-1 (paper, text)"


def test_judge_samples_record_their_seeds_and_spread(tmp_path, upstream_dir):
    # the scripted judge answers by the seed it is asked with: sample 0 -> 2, sample 1 -> 4, sample 2 -> 3
    by_seed = {0: "2", SAMPLE_SEED_STEP: "4", 2 * SAMPLE_SEED_STEP: "3"}
    results, rows, _ = run_with_judges(tmp_path, upstream_dir, [lambda c: by_seed[c.seed]], judge_samples=3,
                                       judge_temperature=0.8)
    for row in rows:
        assert [(r["sample"], r["seed"], r["score"]) for r in row["judges"]] == [
            (0, 0, 2.0), (1, SAMPLE_SEED_STEP, 4.0), (2, 2 * SAMPLE_SEED_STEP, 3.0)]
        assert row["score"] == 3.0
    spread = results["judges"]["spread"]
    assert spread["mean_sd_within_judge"]["value"] == pytest.approx(float(np.std([2, 4, 3])), abs=1e-6)
    assert results["judges"]["samples"] == 3 and results["judges"]["agreement"] == []


def test_judge_samples_are_refused_with_probabilities_and_at_temperature_zero(upstream_dir):
    with pytest.raises(ConfigError, match=r"judge_samples 2: judge 1 \(embedded, paper\) scores from probabilities"):
        resolve_run(EvalConfig(judge_samples=2, judge_temperature=0.7))  # the embedded judge: logprobs
    with pytest.raises(ConfigError, match=r"judge_samples 3: judge 1 \(openai:a, paper\) is greedy \(judge_temperature 0\)"):
        resolve_run(EvalConfig(model="ORG/M", judge_model=["openai:a", "openai:b"], judge_samples=3,
                               judge_temperature=0.0, judge_scoring="text"))
    with pytest.raises(ConfigError, match="judge_samples must be an integer >= 1"):
        EvalConfig(judge_samples=0)


def test_per_judge_fields_are_checked_and_applied():
    with pytest.raises(ConfigError, match=r"^judge_preset: 3 values for 2 judge_model\(s\)"):
        EvalConfig(judge_model=["a", "b"], judge_preset=["paper", "robust", "criteria"])
    with pytest.raises(ConfigError, match="jury_aggregate 'mode'"):
        EvalConfig(jury_aggregate="mode")
    run = resolve_run(EvalConfig(model="ORG/M", judge_model=["openai:a", "openai:b"], judge_preset=["paper", "robust"],
                                 judge_base_url="http://127.0.0.1:9/v1"),
                      BackendOptions(role_options={"judge": {"request_timeout_s": 5.0},
                                                   "judge_2": {"api_key_env": "OTHER_KEY"}}))
    first, second = run.judges
    assert (first.config.preset, second.config.preset) == ("paper", "robust")
    assert first.base_url == second.base_url == "http://127.0.0.1:9/v1"
    assert first.options.api_key_env == "OPENAI_API_KEY" and second.options.api_key_env == "OTHER_KEY"
    assert first.options.request_timeout_s == second.options.request_timeout_s == 5.0
    assert run.settings["jury"]["judges"][1]["preset"] == "robust"
    with pytest.raises(ConfigError, match="role_options.judge_3: no such role"):
        resolve_run(EvalConfig(judge_model=["a", "b"]), BackendOptions(role_options={"judge_3": {"device": "cpu"}}))
    # a one-element list is the lone judge, recorded as the same string as before
    assert EvalConfig(judge_model=["openai:a"]).judge_model == "openai:a"


def test_the_cli_takes_repeated_judge_flags(capsys):
    from aloe_bench.commands.main import main

    assert main(["eval", "--model", "ORG/M", "--judge_model", "openai:a", "--judge-model", "openai:b",
                 "--judge_preset", "paper", "--judge_preset", "criteria", "--jury_aggregate", "median",
                 "--print-config"]) == 0
    settings = json.loads(capsys.readouterr().out)
    assert settings["run"]["judge_model"] == ["openai:a", "openai:b"]
    assert settings["run"]["judge_preset"] == ["paper", "criteria"] and settings["run"]["jury_aggregate"] == "median"
    assert settings["jury"]["aggregate"] == "median"
    assert main(["eval", "--model", "ORG/M", "--judge_model", "openai:a", "--print-config"]) == 0
    settings = json.loads(capsys.readouterr().out)
    assert settings["run"]["judge_model"] == "openai:a"
    assert "jury" not in settings and "jury_aggregate" not in settings["run"]
    assert "judge_samples" not in settings["run"]


def test_jury_settings_count_in_the_fingerprint_only_when_set():
    from test_core_run_identity import PINNED, block

    from aloe_bench.core.run_identity import eval_identity
    from aloe_bench.harness.results import fingerprint

    base = dict(model="ORG/NAME", judge_model="openai:gpt-4o-mini", judge_base_url="http://127.0.0.1:9/v1")
    assert fingerprint(eval_identity(block(EvalConfig(**base, jury_aggregate="mean", judge_samples=1)))) == PINNED
    assert fingerprint(eval_identity(block(EvalConfig(**{**base, "judge_model": ["openai:gpt-4o-mini"]})))) == PINNED
    # one judge: the median of one member's score is its mean, the same run
    assert fingerprint(eval_identity(block(EvalConfig(**base, jury_aggregate="median")))) == PINNED
    for changed in (dict(judge_samples=2, judge_scoring="text"),
                    dict(judge_model=["openai:gpt-4o-mini", "openai:other"])):
        assert fingerprint(eval_identity(block(EvalConfig(**{**base, **changed})))) != PINNED, changed
    two = dict(judge_model=["openai:gpt-4o-mini", "openai:other"])
    assert (fingerprint(eval_identity(block(EvalConfig(**{**base, **two}, jury_aggregate="median"))))
            != fingerprint(eval_identity(block(EvalConfig(**{**base, **two})))))


def test_a_jury_description_counts_each_judge_in_the_identity():
    from aloe_bench.core.run_identity import eval_identity

    member = {"spec": "openai:a", "preset": "paper", "scoring": "text", "max_retries": 2, "max_text_chars": 4000,
              "prompt_sha256": "x", "model": {"model_id": "a", "device": "cpu", "batch_size": 9}}
    config = {"run": {}, "models": {"model": {"model_id": "m"},
                                    "judge": {"aggregate": "mean", "samples": 1, "members": [member, member]}}}
    identity = eval_identity(config)["models"]["judge"]
    assert identity["members"][1] == {**{k: member[k] for k in ("preset", "scoring", "max_retries", "max_text_chars",
                                                                 "prompt_sha256", "spec")},
                                      "model": {"model_id": "a", "device": "cpu"}}
    other = {**member, "preset": "robust"}
    config["models"]["judge"]["members"] = [member, other]
    assert eval_identity(config)["models"]["judge"] != identity


def test_results_dataset_merges_lone_judge_rows_and_jury_rows(tmp_path, upstream_dir):
    run_with_judges(tmp_path, upstream_dir, ["3"], out="lone")
    run_with_judges(tmp_path, upstream_dir, ["2", "oops", "4"], out="jury")
    folder = tmp_path / "dataset"
    merge_runs(find_runs(tmp_path / "lone"), folder)
    # a file written before the `judges` column existed: drop it, as an older aloe-bench wrote the file
    [old] = list((folder / "samples").glob("run_*.parquet"))
    table = pq.read_table(old)
    pq.write_table(table.drop(["judges"]), old)
    assert "judges" not in pq.ParquetFile(old).schema_arrow.names
    report = merge_runs(find_runs(tmp_path / "jury"), folder)
    assert "judges" in pq.ParquetFile(old).schema_arrow.names  # upgraded, null
    splits = {s: load_dataset(str(folder), "samples", split=s) for s in report.samples if s.startswith("run_")}
    assert len(splits) == 2
    lone, jury = sorted(splits.values(), key=lambda d: d[0]["judges"] is not None)
    assert all(r["judges"] is None for r in lone) and set(lone["score"]) == {3.0}
    row = jury[0]
    assert [(r["judge"], r["score"], r["error"]) for r in row["judges"]] == [
        (1, 2.0, None), (2, None, "unparsable judge answer"), (3, 4.0, None)]
    assert row["score"] == 3.0 and jury.features["judges"].feature["score"].dtype == "float64"
    results = load_dataset(str(folder), "results", split="train")
    blocks = [json.loads(b) for b in results["judges"]]
    assert sorted(len(b["members"]) for b in blocks) == [1, 3]


def source_with_settings(tmp_path, upstream_dir, **settings):
    results, rows, _ = run_with_judges(tmp_path, upstream_dir, ["[[3]]"], out="source", judge_preset="robust",
                                       judge_temperature=0.9, judge_max_new_tokens=33, **settings)
    return results


def test_rescore_keeps_the_runs_judge_settings_unless_told(tmp_path, upstream_dir):
    source = source_with_settings(tmp_path, upstream_dir)
    backend = ScriptedBackend(["[[5]]"], name="fake/new")
    out = rescore_run(RescoreConfig(str(tmp_path / "source"), str(tmp_path / "re"), judge_model="fake/new",
                                    progress=False, bootstrap_resamples=20), judge_backend=backend)
    configs = {c for _, c in backend.calls}
    assert configs == {GenerationConfig(max_new_tokens=33, temperature=0.9, seed=0)}
    assert all("[[N]]" in batch[0][-1]["content"] or "fenced" in batch[0][0]["content"].lower()
               for batch, _ in backend.calls)  # the robust prompt
    record = out["config"]["rescore"]
    assert record["judge_preset"] == "robust" and record["judge_temperature"] == 0.9
    assert record["judge_settings_from"] == {"judge_preset": "run", "judge_max_retries": "run",
                                             "judge_temperature": "run", "judge_max_new_tokens": "run"}
    assert out["metrics"]["AL_avg"] == 5.0 and out["rescore_of"] == source["run_id"]
    # told otherwise: the flag wins, and the re-score is another run
    backend2 = ScriptedBackend(["5"], name="fake/new")
    other = rescore_run(RescoreConfig(str(tmp_path / "source"), str(tmp_path / "re2"), judge_model="fake/new",
                                      judge_preset="paper", judge_temperature=0.0, progress=False,
                                      bootstrap_resamples=20), judge_backend=backend2)
    assert {c for _, c in backend2.calls} == {GenerationConfig(max_new_tokens=33, temperature=0.0, seed=0)}
    assert other["config"]["rescore"]["judge_settings_from"]["judge_preset"] == "given"
    assert other["fingerprint"] != out["fingerprint"]


def test_rescore_keep_judges_adds_a_judge_to_the_run(tmp_path, upstream_dir):
    source_with_settings(tmp_path, upstream_dir)
    out = rescore_run(RescoreConfig(str(tmp_path / "source"), str(tmp_path / "re"), judge_model="fake/new",
                                    keep_judges=True, progress=False, bootstrap_resamples=20),
                      judge_backend=ScriptedBackend(["[[5]]"], name="fake/new"))
    path = tmp_path / "re" / out["files"]["samples"]
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for row in rows:
        assert [(r["judge"], r["score"], r["sample"]) for r in row["judges"]] == [(1, 3.0, 0), (2, 5.0, 0)]
        assert row["judges"][0]["name"] == "fake/judge-1 (robust, text)" and row["judges"][0]["raw"] == "[[3]]"
        assert row["score"] == 4.0 and row["original_score"] == 3.0
    assert out["metrics"]["AL_avg"] == 4.0
    assert [m["judge"] for m in out["judges"]["members"]] == [1, 2]
    assert out["judges"]["agreement"][0]["mean_difference"] == -2.0
    assert out["judge"].startswith("jury mean: fake/judge-1 (robust, text) + fake/new (robust, text)")


def test_rescore_of_a_jury_with_mixed_presets_asks_for_one(tmp_path, upstream_dir):
    run_with_judges(tmp_path, upstream_dir, ["3", "[[3]]"], out="source", judge_preset=["paper", "robust"])
    with pytest.raises(ConfigError, match=r"judge_preset: .* ran a jury with judge_preset \['paper', 'robust'\]"):
        rescore_run(RescoreConfig(str(tmp_path / "source"), str(tmp_path / "re"), judge_model="fake/new",
                                  progress=False), judge_backend=ScriptedBackend(["3"]))


def test_jury_object_scores_batches_like_one_at_a_time():
    """`score` (lockstep, sequential) and `ascore` (free) give the same verdict for the same item."""
    import asyncio

    from aloe_bench.core.judge import Judge, JudgeConfig, JudgeItem
    from aloe_bench.core.jury import Member
    from aloe_bench.core.personas import Persona

    judges = [Judge(ScriptedBackend([a], name=f"j{i}"), JudgeConfig("paper", "text", max_retries=0))
              for i, a in enumerate(["2", "5"])]
    jury = Jury([Member(i + 1, f"j{i}", j) for i, j in enumerate(judges)], "median")
    item = JudgeItem(Persona("p", "a profile", "a personality"), "hi", "hello")
    batch, = jury.score([item])
    one = asyncio.run(jury.ascore(item))
    assert batch.score == one.score == 3.5 and batch.judges == one.judges


def test_a_recipe_names_a_jury_and_the_command_line_replaces_it(tmp_path, capsys):
    from aloe_bench.commands.main import main

    recipe = tmp_path / "eval.yaml"
    recipe.write_text("model: ORG/M\njudge_model: [openai:a, openai:b]\njudge_preset: [paper, robust]\n")
    assert main(["eval", "--config", str(recipe), "--print-config"]) == 0
    run = json.loads(capsys.readouterr().out)["run"]
    assert run["judge_model"] == ["openai:a", "openai:b"] and run["judge_preset"] == ["paper", "robust"]
    assert main(["eval", "--config", str(recipe), "--judge_model", "openai:c", "--judge_preset", "criteria",
                 "--print-config"]) == 0
    run = json.loads(capsys.readouterr().out)["run"]
    assert run["judge_model"] == "openai:c" and run["judge_preset"] == "criteria"


def test_the_free_schedule_judges_with_the_jury_like_lockstep(tmp_path, upstream_dir):
    answers = ["1", "4", "nope"]
    _, lockstep, _ = run_with_judges(tmp_path, upstream_dir, answers, out="lockstep")
    _, free, _ = run_with_judges(tmp_path, upstream_dir, answers, out="free", schedule="free")
    key = lambda r: (r["persona_id"], r["turn"])  # noqa: E731
    assert [(key(r), r["score"], r["judges"]) for r in sorted(free, key=key)] == \
        [(key(r), r["score"], r["judges"]) for r in sorted(lockstep, key=key)]
    assert {r["score"] for r in free} == {2.5}


def test_judge_agree_on_a_jury_run_compares_each_judge(tmp_path, upstream_dir):
    """`aloe judge agree RUN` on a jury run: the jury's combined score, and one rater per judge (the mean of its
    samples that parsed; a judge that failed a row leaves a recorded failure there, not a number)."""
    from aloe_bench.harness.agreement import agree, load_raters

    answers = ["2", lambda c: "nope" if c.seed == 0 else "4"]  # judge 2 answers only when re-asked
    run_with_judges(tmp_path, upstream_dir, answers, judge_max_retries=0)
    jury, one, two = load_raters(str(tmp_path / "run"))
    assert "(judge 1)" in one.name and "fake/judge-1" in one.name and "(judge 2)" in two.name
    assert set(one.scores.values()) == {2.0} and set(two.scores.values()) == {None} and two.failures == 4
    assert set(jury.scores.values()) == {2.0} and len(jury.scores) == len(one.scores) == 4
    report = agree([str(tmp_path / "run")], n_resamples=10)
    assert len(report["raters"]) == 3
