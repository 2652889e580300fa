"""The results dataset (`aloe results push`), the results-file layouts, the cards and the Hub's eval results.

Fast: runs are written on disk in the shape `aloe eval` writes them (the real runs are in test_results_e2e.py);
the Hub is a stub on 127.0.0.1 (tests/hub_stub.py) reached through HF_ENDPOINT.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import yaml
from datasets import load_dataset

from aloe_bench.core.eval_results import (EVAL_RESULTS_PATH, aloe_eval_results, benchmark_dataset,
                                          benchmark_eval_yaml, eval_result_entries, eval_results_yaml)
from aloe_bench.core.run_files import find_runs, locate_run_files, model_dir_name
from aloe_bench.harness.results_dataset import RESULTS, SAMPLES, load_runs, push_runs

sys.path.insert(0, str(Path(__file__).parent))
from hub_stub import HubStub  # noqa: E402
from publish_helpers import parse_eval_results_yaml  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def make_run(out: Path, run_id: str, model: str, text_judge: bool, created_day: int = 1,
             fingerprint: str = "ab" * 8) -> Path:
    """A run folder as `aloe eval` writes it: text-judged runs have failures (null score, judge_error, no
    distribution); probability-judged ones have a distribution and a judge latency."""
    folder = out / model_dir_name(model)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for persona in ("p1", "p2"):
        for turn in (1, 2):
            row = {"persona_id": persona, "profile_id": "prof", "personality_id": "pers", "turn": turn,
                   "user_message": f"hello {turn}", "reply": "hi there", "latency_s": {"user": 0.1, "reply": 0.2},
                   "tokens": {"user": 3, "reply": 4}, "error": None}
            if text_judge:
                failed = turn == 2
                row.update(score=None if failed else 3.0, judge_raw="The reply is good" if failed else "3",
                           judge_distribution=None, judge_error="no score in the answer" if failed else None,
                           judge_attempts=3 if failed else 1)
            else:
                row.update(score=2.6, judge_raw=None, judge_distribution={"1": 0.1, "2": 0.3, "3": 0.5, "4": 0.05,
                                                                           "5": 0.05}, judge_error=None,
                           judge_attempts=1)
                row["latency_s"]["judge"] = 0.3
            rows.append(row)
    (folder / f"samples_{run_id}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    judge = "embedded:HuggingFaceTB/SmolLM2-135M-Instruct (paper, " + ("text)" if text_judge else "logprobs)")
    results = {
        "benchmark": "ALOE", "run_id": run_id, "fingerprint": fingerprint, "model": model, "judge": judge,
        "created": f"2026-01-0{created_day}T00:00:00Z",
        "metrics": {"AL": [3.0, None] if text_judge else [2.6, 2.6], "AL_avg": 3.0 if text_judge else 2.6,
                    "IR": None if text_judge else 0.0, "N_IR": None, "R2": None, "N_R2": None,
                    "intervals": {"AL_avg": [3.0, 3.0]}},
        "counts": {"conversations": 2, "turns": 2, "rows": 4, "scored": 2 if text_judge else 4,
                   "judge_failures": 2 if text_judge else 0, "generation_failures": 0, "stopped_conversations": 0},
        "files": {"samples": f"samples_{run_id}.jsonl"},
        "config": {"run": {"protocol": "paper"} if not text_judge else {},
                   "personas": {"name": "default", "count": 100, "evaluated": 2},
                   "models": {"model": {"model_id": model, "resolved_revision": "abc123",
                                        "spec": {"kind": "hf", "name": model}},
                              "user_simulator": {"model_id": "embedded:HuggingFaceTB/SmolLM2-135M-Instruct"},
                              "judge": {"model_id": "embedded:HuggingFaceTB/SmolLM2-135M-Instruct"}}},
    }
    (folder / f"results_{run_id}.json").write_text(json.dumps(results))
    return out


def cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "aloe_bench.commands.main", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


def test_runs_are_found_at_any_depth_and_new_runs_go_to_the_model_folder(tmp_path):
    make_run(tmp_path / "one", "20260101T000001", "org/a", True)
    make_run(tmp_path / "two", "20260101T000002", "org/a", False)
    assert [r.run_id for r in find_runs(tmp_path)] == ["20260101T000001", "20260101T000002"]
    assert all(r.samples_path.exists() and len(r.samples()) == 4 for r in find_runs(tmp_path))
    # a run goes to <model name>/, named like lm-eval's folders
    results, samples = locate_run_files(tmp_path / "one", "20260101T000009", "org/a")
    assert results == tmp_path / "one" / "org__a" / "results_20260101T000009.json"
    assert samples.name == "samples_20260101T000009.jsonl"
    assert model_dir_name("embedded:HuggingFaceTB/SmolLM2-135M-Instruct") == "embedded_HuggingFaceTB__SmolLM2-135M-Instruct"
    assert model_dir_name("/ckpt/runs/dpo") == "dpo"


def test_local_dir_merges_runs_with_different_nulls_into_typed_splits(tmp_path):
    make_run(tmp_path / "a", "20260101T000001", "org/a", text_judge=True, created_day=1)
    make_run(tmp_path / "b", "20260101T000002", "org/a", text_judge=False, created_day=2, fingerprint="cd" * 8)
    make_run(tmp_path / "c", "20260101T000003", "org/b", text_judge=False, created_day=3, fingerprint="ef" * 8)
    out = tmp_path / "ds"
    for args in ([tmp_path / "a"], [tmp_path / "b", tmp_path / "c"]):  # two pushes merge into one folder
        proc = cli("results", "push", *map(str, args), "--local-dir", str(out))
        assert proc.returncode == 0, proc.stderr[-2000:]
    results = load_dataset(str(out), "results", split="train", download_mode="force_redownload")
    assert sorted(results["run_id"]) == ["20260101T000001", "20260101T000002", "20260101T000003"]
    assert results.features == RESULTS
    assert sorted(results["protocol"]) == ["custom", "paper", "paper"] and set(results["personas"]) == {2}
    samples = load_dataset(str(out), "samples", download_mode="force_redownload")
    assert set(samples) == {*results["split"], "latest_org__a", "latest_org__b"}
    for split in samples.values():
        assert split.features == SAMPLES  # fixed, never inferred
    text_run = samples[results["split"][results["run_id"].index("20260101T000001")]]
    assert text_run["judge_distribution"] == [None] * 4 and text_run["score"].count(None) == 2
    assert all(r["latency_s"]["judge"] is None for r in text_run)
    assert set(text_run["run_id"]) == {"20260101T000001"} and set(text_run["model_revision"]) == {"abc123"}
    assert set(text_run["judge"]) == {"embedded:HuggingFaceTB/SmolLM2-135M-Instruct (paper, text)"}
    # latest per model: org/a's newest run is the probability-judged one
    assert samples["latest_org__a"]["run_id"] == ["20260101T000002"] * 4
    assert samples["latest_org__a"]["judge_distribution"][0][2] == {"option": "3", "probability": 0.5}
    # pushing a run again replaces its split: no duplicate rows
    before = {p.name: pq.ParquetFile(p).metadata.num_rows for p in (out / "samples").glob("*.parquet")}
    proc = cli("results", "push", str(tmp_path / "a"), "--local-dir", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    after = {p.name: pq.ParquetFile(p).metadata.num_rows for p in (out / "samples").glob("*.parquet")}
    assert after == before
    assert len(load_dataset(str(out), "results", split="train", download_mode="force_redownload")) == 3


def test_results_card_round_trips_through_huggingface_hub(tmp_path):
    from huggingface_hub import DatasetCard

    make_run(tmp_path / "a", "20260101T000001", "org/a", text_judge=False)
    push_runs(load_runs([tmp_path / "a"]), "me/aloe-results", local_dir=tmp_path / "ds")
    card = DatasetCard.load(tmp_path / "ds" / "README.md")
    data = card.data.to_dict()
    assert data["annotations_creators"] == ["machine-generated"] and data["size_categories"] == ["n<1K"]
    assert {c["config_name"] for c in data["configs"]} == {"results", "samples"}
    again = DatasetCard(str(card))
    assert again.data.to_dict() == data and again.text == card.text
    assert 'load_dataset("me/aloe-results", "results"' in card.text
    assert "`embedded:HuggingFaceTB/SmolLM2-135M-Instruct`: apache-2.0" in card.text


def test_model_index_and_eval_results_name_one_benchmark_and_parse_back(tmp_path):
    from huggingface_hub import ModelCard, ModelCardData

    make_run(tmp_path, "20260101T000002", "org/a", text_judge=False)
    (run,) = find_runs(tmp_path)
    legacy = aloe_eval_results(run.results, source_url="https://huggingface.co/datasets/me/r")
    assert {e.dataset_type for e in legacy} == {benchmark_dataset()}
    assert all(e.metric_args == {"judge": run.results["judge"], "protocol": "paper", "turns": 2, "personas": 2}
               for e in legacy)
    assert "2 personas x 2 turns" in legacy[0].dataset_name  # what was scored, not the set's 100
    card = ModelCard.from_template(ModelCardData(model_name="a", eval_results=legacy))
    assert ModelCard(str(card)).data.eval_results == legacy
    entries = eval_result_entries(run.results, source_url="https://huggingface.co/datasets/me/r", source_name="r")
    assert [e.task_id for e in entries] == ["aloe_al_avg", "aloe_ir"]  # N_IR is None: left out, not invented
    text = eval_results_yaml(entries)
    assert parse_eval_results_yaml(text) == entries
    assert yaml.safe_load(text)[0]["dataset"] == {"id": benchmark_dataset(), "task_id": "aloe_al_avg"}
    tasks = {t["id"] for t in yaml.safe_load(benchmark_eval_yaml())["tasks"]}
    assert {e.task_id for e in entries} <= tasks


def test_benchmark_id_is_configurable(monkeypatch, tmp_path):
    monkeypatch.setenv("ALOE_BENCHMARK_DATASET", "someone/aloe-personas")
    make_run(tmp_path, "20260101T000002", "org/a", text_judge=False)
    (run,) = find_runs(tmp_path)
    assert {e.dataset_id for e in eval_result_entries(run.results)} == {"someone/aloe-personas"}


def test_push_is_private_and_a_model_you_do_not_own_gets_a_pull_request(tmp_path):
    make_run(tmp_path / "theirs", "20260101T000001", "other-org/model", text_judge=False)
    make_run(tmp_path / "mine", "20260101T000002", "my-org/model", text_judge=False, fingerprint="cd" * 8)
    with HubStub() as stub:
        env = {"HF_ENDPOINT": stub.url, "HF_TOKEN": "hf_stub_token", "HF_HUB_OFFLINE": "0"}
        proc = cli("results", "push", str(tmp_path / "theirs"), "--repo-id", "me/aloe-results", env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        report = json.loads(proc.stdout)
        assert report["model_cards"][0]["status"] == "skipped" and "--create-pr" in report["model_cards"][0]["reason"]
        assert [c["repo"] for c in stub.commits] == ["me/aloe-results"]  # the model repo was left alone
        assert stub.created[0]["visibility"] == "private" and stub.created[0]["type"] == "dataset"

        proc = cli("results", "push", str(tmp_path / "theirs"), str(tmp_path / "mine"), "--repo-id",
                   "me/aloe-results", "--create-pr", "--public", env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert stub.created[-1]["visibility"] == "public"
        by_repo = {c["repo"]: c for c in stub.commits[1:]}
        assert by_repo["other-org/model"]["create_pr"] is True and by_repo["other-org/model"]["repo_type"] == "model"
        assert by_repo["my-org/model"]["create_pr"] is True  # --create-pr asks for PRs everywhere
        files = by_repo["other-org/model"]["files"]
        entries = parse_eval_results_yaml(files[EVAL_RESULTS_PATH].decode())
        assert [e.task_id for e in entries] == ["aloe_al_avg", "aloe_ir"] and entries[0].value == 2.6
        assert "source" in yaml.safe_load(files[EVAL_RESULTS_PATH])[0]
        assert "model-index" in files["README.md"].decode() and benchmark_dataset() in files["README.md"].decode()
        uploaded = by_repo["me/aloe-results"]["files"]
        assert sorted(uploaded) == ["README.md", "results/run_20260101T000001_abababab.parquet",
                                    "results/run_20260101T000002_cdcdcdcd.parquet",
                                    "samples/latest_my_org__model.parquet",
                                    "samples/latest_other_org__model.parquet",
                                    "samples/run_20260101T000001_abababab.parquet",
                                    "samples/run_20260101T000002_cdcdcdcd.parquet"]
        assert "hf_stub_token" not in proc.stdout + proc.stderr


def test_owned_model_gets_a_direct_commit(tmp_path):
    make_run(tmp_path, "20260101T000002", "me/model", text_judge=False)
    (run,) = find_runs(tmp_path)
    with HubStub() as stub:
        env = {"HF_ENDPOINT": stub.url, "HF_TOKEN": "hf_stub_token", "HF_HUB_OFFLINE": "0"}
        code = (f"import json; from aloe_bench.harness.publish import publish_model_eval_results as p; "
                f"print(json.dumps(p(json.load(open({str(run.results_path)!r})), 'me/model', 'me/r')))")
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env={**os.environ, **env}, timeout=120)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert json.loads(proc.stdout.strip().splitlines()[-1])["status"] == "committed"
        assert [(c["repo"], c["create_pr"]) for c in stub.commits] == [("me/model", False)]
        assert sorted(stub.commits[0]["files"]) == [EVAL_RESULTS_PATH, "README.md"]


def test_push_errors_name_the_source(tmp_path):
    proc = cli("results", "push", str(tmp_path), "--local-dir", str(tmp_path / "ds"))
    assert proc.returncode == 2 and "no results_*.json" in proc.stderr
    make_run(tmp_path / "a", "20260101T000001", "org/a", text_judge=True)
    proc = cli("results", "push", str(tmp_path / "a"))
    assert proc.returncode == 2 and "--repo-id" in proc.stderr
    samples = next((tmp_path / "a").rglob("samples_*.jsonl"))
    samples.write_text('{"persona_id": "p1", "turn": 1}\n{broken\n{"persona_id": "p1", "turn": 2}\n')
    proc = cli("results", "push", str(tmp_path / "a"), "--local-dir", str(tmp_path / "ds"))
    assert proc.returncode == 2 and f"{samples}:2: invalid JSON" in proc.stderr
    assert not (tmp_path / "ds").exists()


def test_eval_push_to_hub_goes_through_the_same_push(tmp_path, upstream_dir, monkeypatch):
    """`aloe eval --push-to-hub` (scripted backends) uploads the same folder `aloe results push` builds."""
    import huggingface_hub.constants as hub_constants

    from aloe_bench.harness import EvalConfig, evaluate_model
    from test_harness_loop import make_roles

    with HubStub() as stub:
        monkeypatch.setattr(hub_constants, "ENDPOINT", stub.url)
        monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setenv("HF_TOKEN", "hf_stub_token")
        cfg = EvalConfig(personas=str(upstream_dir), max_personas=2, turns=2, output_dir=str(tmp_path / "run"),
                         bootstrap_resamples=20, progress=False, push_to_hub="me/aloe-results")
        results = evaluate_model(cfg, roles=make_roles()[0])
    assert stub.created[0]["visibility"] == "private"
    (commit,) = stub.commits
    split = f"run_{results['run_id']}_{results['fingerprint'][:8]}"
    assert commit["repo"] == "me/aloe-results" and f"samples/{split}.parquet" in commit["files"]
    local = tmp_path / "local"
    proc = cli("results", "push", str(tmp_path / "run"), "--local-dir", str(local))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (local / "samples" / f"{split}.parquet").read_bytes() == commit["files"][f"samples/{split}.parquet"]
