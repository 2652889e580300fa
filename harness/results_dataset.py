"""The ALOE results dataset: many runs in one Hub dataset repo, every row typed and traceable to its run.

`merge_runs` builds (or merges into) the folder exactly as the repo holds it, `push_runs` uploads it in one commit;
the fixed schemas `SAMPLES` and `RESULTS` let runs with different null patterns load together. A run's files are
named by its split, so pushing the same run again replaces them. The layout is described in docs/results.md.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from datasets import Dataset, Features, List, Value

from aloe_bench.core.eval_results import benchmark_dataset, personas_evaluated, protocol_of
from aloe_bench.core.dataset_folder import save_dataset_card
from aloe_bench.core.errors import AloeError
from aloe_bench.core.judge import CRITERIA
from aloe_bench.core.licenses import generator_licenses
from aloe_bench.core.run_files import Run, find_runs, model_dir_name

DISTRIBUTION = List({"option": Value("string"), "probability": Value("float64")})
JUDGE_RECORD = {
    "judge": Value("int32"), "name": Value("string"), "spec": Value("string"), "preset": Value("string"),
    "scoring": Value("string"), "sample": Value("int32"), "seed": Value("int64"), "score": Value("float64"),
    "criteria": {name: Value("float64") for name in CRITERIA}, "error": Value("string"), "raw": Value("string"),
    "distribution": DISTRIBUTION, "attempts": Value("int32"),
}

SAMPLES = Features({
    "run_id": Value("string"),
    "model": Value("string"),
    "model_revision": Value("string"),
    "judge": Value("string"),
    "protocol": Value("string"),
    "persona_id": Value("string"),
    "profile_id": Value("string"),
    "personality_id": Value("string"),
    "turn": Value("int32"),
    "user_message": Value("string"),
    "reply": Value("string"),
    "error": Value("string"),
    "score": Value("float64"),
    "judge_raw": Value("string"),
    "judge_distribution": DISTRIBUTION,
    "judge_error": Value("string"),
    "judge_attempts": Value("int32"),
    "criteria_scores": {name: Value("float64") for name in CRITERIA},  # null for a one-integer judge's rows
    "criteria_errors": {name: Value("string") for name in CRITERIA},
    "latency_s": {"user": Value("float64"), "reply": Value("float64"), "judge": Value("float64")},
    "tokens": {"user": Value("int64"), "reply": Value("int64")},
    # a jury's row: one record per judge and sample (`core.jury.record`); null for a lone judge's row
    "judges": List(JUDGE_RECORD),
    "extra": Value("string"),  # JSON of any other key a sample row carries (null when none)
})

RESULTS = Features({
    "run_id": Value("string"),
    "split": Value("string"),
    "fingerprint": Value("string"),
    "model": Value("string"),
    "model_revision": Value("string"),
    "judge": Value("string"),
    "protocol": Value("string"),
    "personas": Value("int64"),
    "turns": Value("int64"),
    "benchmark": Value("string"),
    "created": Value("string"),
    "metrics": {
        "AL": List(Value("float64")),
        "AL_avg": Value("float64"), "IR": Value("float64"), "N_IR": Value("float64"),
        "R2": Value("float64"), "N_R2": Value("float64"),
        "intervals": {name: List(Value("float64")) for name in ("AL_avg", "IR", "N_IR", "R2", "N_R2")},
    },
    **{f"AL_{name}": Value("float64") for name in CRITERIA},  # AL_avg per criterion (null for other judges)
    "criteria": Value("string"),  # the results' `criteria` block (curves, IR, intervals per criterion), as JSON
    "judges": Value("string"),  # the results' `judges` block (requests, failures, spread, agreement), as JSON
    "counts": {name: Value("int64") for name in ("conversations", "turns", "rows", "scored", "judge_failures",
                                                 "generation_failures", "stopped_conversations")},
    "config": Value("string"),  # the full config block, as JSON
})

SAMPLE_KEYS = set(SAMPLES) - {"run_id", "model", "model_revision", "judge", "protocol", "extra"}
TEMPLATE = """---
{{ card_data }}
---

# {{ pretty_name }}

Results of the ALOE benchmark (personalised alignment over a multi-turn chat), published by `aloe results push`
and `aloe eval --push-to-hub` (aloe-bench). The benchmark's personas are
[{{ benchmark }}](https://huggingface.co/datasets/{{ benchmark }}) (config `personas`, split `test`).

| config | splits | rows |
|---|---|---|
| `results` | `train`: one row per run | {{ n_runs }} |
| `samples` | one split per run, plus `latest_<model>` per model | {{ n_samples }} |

Runs:

| split | model | judge | protocol | personas x turns | AL_avg | IR | N_IR |
|---|---|---|---|---|---|---|---|
{{ runs_table }}

- `results`: model and resolved revision, judge, protocol, AL per turn, AL_avg, IR, N_IR, R2, N_R2 with bootstrap
  intervals, counts, and the full config (model revisions, prompt hashes, seeds, package versions) as JSON.
- `samples`: one row per persona and turn: user message, reply, judge answer, score (null when the judge failed,
  with the reason in `judge_error`), the judge's probabilities when it was scored by them, latencies and tokens;
  a jury's rows also list every judge's (and sample's) score, error and answer in `judges`.
  Every row carries `run_id`, `model`, `model_revision`, `judge` and `protocol`.

Always read a score together with its judge: runs judged by the embedded 135M model are smoke runs.

## Licence

The texts were written by models (the role-play user, the evaluated model and the judge); they come under those
models' terms:

{{ licenses }}

## Usage

```python
from datasets import load_dataset

results = load_dataset("{{ repo_id }}", "results", split="train")
samples = load_dataset("{{ repo_id }}", "samples", split="{{ example_split }}")
```
"""


class ResultsDatasetError(AloeError, ValueError):
    """A run cannot be published; the message names the run folder or file."""


def split_name(results: dict) -> str:
    """The run's split: `run_<run id>_<fingerprint[:8]>` with only word characters (valid on the Hub)."""
    text = f"run_{results['run_id']}_{str(results.get('fingerprint') or '')[:8]}".rstrip("_")
    return re.sub(r"\W+", "_", text)


def latest_split(model: str) -> str:
    return "latest_" + re.sub(r"\W+", "_", model_dir_name(model))


def _model_revision(results: dict) -> str | None:
    config = results.get("config") or {}
    return config.get("model_sha") or ((config.get("models") or {}).get("model") or {}).get("resolved_revision")


def _float(value):
    return None if value is None else float(value)


def sample_row(row: dict, results: dict, where: str) -> dict:
    """A samples-log row in the `SAMPLES` schema; unknown keys go to `extra` as JSON, nothing is dropped."""
    if not isinstance(row, dict) or "persona_id" not in row or "turn" not in row:
        raise ResultsDatasetError(f"{where}: a sample row needs 'persona_id' and 'turn'")
    distribution = row.get("judge_distribution")
    latency, tokens = row.get("latency_s") or {}, row.get("tokens") or {}
    extra = {k: v for k, v in row.items() if k not in SAMPLE_KEYS}
    try:
        return {
            "run_id": str(results["run_id"]), "model": str(results["model"]), "model_revision": _model_revision(results),
            "judge": str(results["judge"]), "protocol": protocol_of(results),
            "persona_id": str(row["persona_id"]), "profile_id": row.get("profile_id"),
            "personality_id": row.get("personality_id"), "turn": int(row["turn"]),
            "user_message": row.get("user_message"), "reply": row.get("reply"), "error": row.get("error"),
            "score": _float(row.get("score")), "judge_raw": row.get("judge_raw"),
            "judge_distribution": _distribution(distribution),
            "judge_error": row.get("judge_error"), "judge_attempts": row.get("judge_attempts"),
            "criteria_scores": _by_criterion(row.get("criteria_scores"), _float),
            "criteria_errors": _by_criterion(row.get("criteria_errors"), lambda v: None if v is None else str(v)),
            "latency_s": {k: _float(latency.get(k)) for k in ("user", "reply", "judge")},
            "tokens": {k: None if tokens.get(k) is None else int(tokens[k]) for k in ("user", "reply")},
            "judges": None if row.get("judges") is None else [_judge_record(r) for r in row["judges"]],
            "extra": json.dumps(extra, sort_keys=True, ensure_ascii=False) if extra else None,
        }
    except (TypeError, ValueError, AttributeError) as exc:
        raise ResultsDatasetError(f"{where}: sample row of persona {row.get('persona_id')!r} turn "
                                  f"{row.get('turn')!r} has a value of the wrong type ({exc})") from None


def _distribution(distribution: dict | None) -> list | None:
    return None if distribution is None else [
        {"option": str(k), "probability": float(v)} for k, v in distribution.items()]


def _text(value):
    return None if value is None else str(value)


def _int(value):
    return None if value is None else int(value)


def _judge_record(record: dict) -> dict:
    """One per-judge record of a jury's row in `JUDGE_RECORD`'s types."""
    return {"judge": _int(record.get("judge")), "name": _text(record.get("name")), "spec": _text(record.get("spec")),
            "preset": _text(record.get("preset")), "scoring": _text(record.get("scoring")),
            "sample": _int(record.get("sample")), "seed": _int(record.get("seed")),
            "score": _float(record.get("score")), "criteria": _by_criterion(record.get("criteria"), _float),
            "error": _text(record.get("error")), "raw": _text(record.get("raw")),
            "distribution": _distribution(record.get("distribution")), "attempts": _int(record.get("attempts"))}


def _by_criterion(values: dict | None, convert) -> dict | None:
    return None if values is None else {name: convert(values.get(name)) for name in CRITERIA}


def results_row(results: dict) -> dict:
    metrics, counts = results["metrics"], results.get("counts") or {}
    criteria = results.get("criteria")
    intervals = metrics.get("intervals") or {}
    return {
        "run_id": str(results["run_id"]), "split": split_name(results), "fingerprint": results.get("fingerprint"),
        "model": str(results["model"]), "model_revision": _model_revision(results), "judge": str(results["judge"]),
        "protocol": protocol_of(results), "personas": personas_evaluated(results), "turns": counts.get("turns"),
        "benchmark": benchmark_dataset(), "created": results.get("created"),
        "metrics": {"AL": [_float(v) for v in metrics.get("AL") or []],
                    **{k: _float(metrics.get(k)) for k in ("AL_avg", "IR", "N_IR", "R2", "N_R2")},
                    "intervals": {k: [_float(v) for v in intervals.get(k) or []]
                                  for k in ("AL_avg", "IR", "N_IR", "R2", "N_R2")}},
        **{f"AL_{name}": _float(((criteria or {}).get(name) or {}).get("AL_avg")) for name in CRITERIA},
        "criteria": None if criteria is None else json.dumps(criteria, sort_keys=True),
        "judges": None if results.get("judges") is None else json.dumps(results["judges"], sort_keys=True),
        "counts": {k: counts.get(k) for k in RESULTS["counts"]},
        "config": json.dumps(results.get("config") or {}, sort_keys=True),
    }


def _write(rows: list[dict], features: Features, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    Dataset.from_list(rows, features=features).to_parquet(str(tmp))
    os.replace(tmp, path)


def _existing_results(folder: Path) -> dict[str, dict]:
    import pyarrow.parquet as pq

    rows = {}
    for path in sorted((folder / "results").glob("*.parquet")):
        try:
            table = pq.read_table(path)
        except Exception as exc:
            raise ResultsDatasetError(f"{path}: not a readable parquet file ({type(exc).__name__}: {exc})") from None
        if "split" not in table.column_names:
            raise ResultsDatasetError(f"{path}: not a results file of an ALOE results dataset (no 'split' column)")
        for row in table.to_pylist():
            rows[row["split"]] = {**dict.fromkeys(RESULTS), **row}  # rows written before a column existed
    return rows


def _upgrade_old_files(folder: Path) -> None:
    """Rewrite the files written before a column of `SAMPLES` / `RESULTS` existed, with that column null, so every
    file of a config has one schema and old runs load beside new ones."""
    import pyarrow.parquet as pq

    for config, features in (("samples", SAMPLES), ("results", RESULTS)):
        for path in sorted((folder / config).glob("*.parquet")):
            if set(features) - set(pq.ParquetFile(path).schema_arrow.names):
                rows = [{**dict.fromkeys(features), **row} for row in pq.read_table(path).to_pylist()]
                _write(rows, features, path)


def _size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                         (1_000_000, "100K<n<1M")):
        if n < limit:
            return label
    return "1M<n<10M"


def render_results_card(rows: list[dict], n_samples: int, repo_id: str | None):
    """The dataset card (a `huggingface_hub.DatasetCard`) for the runs in `rows` (results-config rows)."""
    from huggingface_hub import DatasetCard, DatasetCardData

    splits = [r["split"] for r in rows]
    latest = sorted({latest_split(r["model"]) for r in rows})
    generators = []
    for r in rows:
        models = (json.loads(r["config"]).get("models") or {})
        generators += [r["model"], *((models.get(role) or {}).get("model_id") for role in ("user_simulator", "judge"))]
    license_id, license_lines = generator_licenses(generators)
    data = DatasetCardData(
        pretty_name="ALOE results", license=license_id, language=["en"], annotations_creators=["machine-generated"],
        language_creators=["machine-generated"], size_categories=[_size_category(n_samples)],
        task_categories=["text-generation"], tags=["aloe", "evaluation", "personalization", "aloe-bench"],
        configs=[{"config_name": "results", "data_files": [{"split": "train", "path": "results/*.parquet"}],
                  "default": True},
                 {"config_name": "samples", "data_files": [{"split": s, "path": f"samples/{s}.parquet"}
                                                           for s in splits + latest]}],
    )
    table = "\n".join(
        f"| `{r['split']}` | `{r['model']}` | {r['judge']} | {r['protocol']} | {r['personas']} x {r['turns']} | "
        + " | ".join("n/a" if r["metrics"][k] is None else f"{r['metrics'][k]:.4f}" for k in ("AL_avg", "IR", "N_IR"))
        + " |" for r in rows)
    return DatasetCard.from_template(
        data, template_str=TEMPLATE, pretty_name="ALOE results", benchmark=benchmark_dataset(), n_runs=len(rows),
        n_samples=n_samples, runs_table=table, licenses="\n".join(f"- {line}" for line in license_lines),
        repo_id=repo_id or "ORG/NAME", example_split=latest[0] if latest else "train")


@dataclass
class MergeReport:
    folder: str
    pushed: list[str]
    runs: int
    samples: dict[str, int]


def merge_runs(runs: list[Run], folder: str | Path, repo_id: str | None = None, complete: bool = True) -> MergeReport:
    """Write `runs` into `folder` (created or merged), exactly as the Hub repo holds them.

    `complete` means the folder holds every run's samples (a `--local-dir`); then it is checked with
    `load_dataset` config by config. A staging folder for a Hub push holds only the existing `results` rows.
    """
    import pyarrow.parquet as pq

    folder = Path(folder)
    if not runs:
        raise ResultsDatasetError("no runs to push (give run folders holding results_*.json)")
    rows = _existing_results(folder)
    pushed, latest_written = [], {}
    prepared = []
    for run in runs:  # every run is read and checked before anything is written
        results = run.results
        if "run_id" not in results:
            raise ResultsDatasetError(f"{run.results_path}: no 'run_id' (not written by aloe eval)")
        samples = [sample_row(r, results, f"{run.samples_path}") for r in run.samples()]
        if not samples:
            raise ResultsDatasetError(f"{run.samples_path}: no sample rows")
        prepared.append((split_name(results), samples, results_row(results)))
    _upgrade_old_files(folder)
    for split, samples, row in prepared:
        _write(samples, SAMPLES, folder / "samples" / f"{split}.parquet")
        _write([row], RESULTS, folder / "results" / f"{split}.parquet")
        rows[split] = row
        pushed.append(split)
    newest: dict[str, dict] = {}
    for row in rows.values():
        best = newest.get(row["model"])
        if best is None or (row["created"] or "", row["run_id"]) > (best["created"] or "", best["run_id"]):
            newest[row["model"]] = row
    for model, row in newest.items():
        source = folder / "samples" / f"{row['split']}.parquet"
        if row["split"] in pushed or (complete and source.exists()):
            shutil.copyfile(source, folder / "samples" / f"{latest_split(model)}.parquet")
            latest_written[model] = row["split"]
    ordered = sorted(rows.values(), key=lambda r: (r["created"] or "", r["run_id"]))
    counts = {}
    for path in sorted((folder / "samples").glob("*.parquet")):
        counts[path.stem] = pq.ParquetFile(path).metadata.num_rows
    n_samples = sum(v for k, v in counts.items() if not k.startswith("latest_"))
    # a staging folder for a Hub push holds no samples of earlier runs: only `results` is described there
    save_dataset_card(folder, render_results_card(ordered, n_samples, repo_id),
                      described=None if complete else ["results"])
    if complete:
        check_folder(folder, [r["split"] for r in ordered])
    return MergeReport(str(folder), pushed, len(ordered), counts)


def check_folder(folder: Path, splits: list[str]) -> None:
    """Load the folder as the Hub would (`load_dataset(folder, config)`): every config, every split."""
    import warnings

    from aloe_bench.core.dataset_folder import load_dataset_source

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = load_dataset_source(str(folder), "results", split="train")
        samples = load_dataset_source(str(folder), "samples")
    if sorted(results["split"]) != sorted(splits):
        raise ResultsDatasetError(f"{folder}: config 'results' loads runs {sorted(results['split'])}, "
                                  f"expected {sorted(splits)}")
    missing = [s for s in splits if s not in samples]
    if missing:
        raise ResultsDatasetError(f"{folder}: config 'samples' has no split {missing[0]!r}")


def load_runs(sources) -> list[Run]:
    """Every run under the given run folders or results files (either layout), each once."""
    runs, seen = [], set()
    for source in sources:
        found = find_runs(source)
        if not found:
            raise ResultsDatasetError(f"{source}: no results_*.json (give an `aloe eval --output_dir` folder or a "
                                      "results file)")
        for run in found:
            key = run.results_path.resolve()
            if key not in seen:
                seen.add(key)
                runs.append(run)
    return runs


def push_runs(runs: list[Run], repo_id: str, public: bool = False, token: str | None = None,
              local_dir: str | Path | None = None) -> dict:
    """Publish `runs` to the dataset repo `repo_id` in one commit (private unless `public`).

    With `local_dir`, build or merge the folder there and upload nothing (`repo_id` may then be None).
    """
    if local_dir is not None:
        report = merge_runs(runs, local_dir, repo_id, complete=True)
        return {"local_dir": report.folder, "pushed": report.pushed, "runs": report.runs, "samples": report.samples}
    from huggingface_hub import HfApi, snapshot_download

    if not repo_id or repo_id.count("/") != 1:
        raise ResultsDatasetError(f"--repo-id {repo_id!r}: expected ORG/NAME")
    api = HfApi(token=token or os.environ.get("HF_TOKEN"))
    api.create_repo(repo_id, repo_type="dataset", private=not public, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="aloe-results-") as staging:
        snapshot_download(repo_id, repo_type="dataset", allow_patterns=["results/*.parquet"], local_dir=staging,
                          token=api.token)
        report = merge_runs(runs, staging, repo_id, complete=False)
        commit = api.upload_folder(repo_id=repo_id, repo_type="dataset", folder_path=staging,
                                   commit_message=f"ALOE results: {', '.join(report.pushed)}")
    return {"repo_id": repo_id, "pushed": report.pushed, "runs": report.runs,
            "commit": str(getattr(commit, "commit_url", commit))}
