"""A run's files and its results: the append-only samples log (resumable), the manifest, and the one builder of
the results dict that `aloe eval` and `aloe judge rescore` both write, so their numbers are counted the same way.

Files go to `output_dir/<model name>/` (as lm-eval writes them, `core.run_files`); the manifest `runs.json` and
the request cache stay in `output_dir`.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import queue
import threading
import time
from importlib import metadata
from pathlib import Path

import numpy as np

from aloe_bench.core.eval_results import benchmark_dataset, metric_args
from aloe_bench.core.io import append_jsonl, atomic_write_json, read_json, read_log, repair_tail
from aloe_bench.core.judge import CRITERIA, Judge
from aloe_bench.core.metrics import summarise
from aloe_bench.core.run_files import RunFileError, locate_run_files
from aloe_bench.core.simulator_check import UserMessage, check_simulator

PACKAGES = ("aloe-bench", "torch", "transformers", "datasets", "evaluate", "huggingface-hub",
            "sentence-transformers", "openai", "trl", "peft", "gradio", "vllm")


def package_versions() -> dict[str, str | None]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def fingerprint(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def new_run_id(taken: set[str]) -> str:
    """A run id: the UTC time to the second, with `-2`, `-3`, ... when a run of the folder already has it (two runs
    started within one second, such as the repeats of `--repeats K` with cached answers, must not share files)."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    run_id, n = stamp, 1
    while run_id in taken:
        n += 1
        run_id = f"{stamp}-{n}"
    return run_id


class RunFiles:
    """Files of one run in `output_dir`. Runs with the same fingerprint share a run id, so re-running resumes."""

    def __init__(self, output_dir: str | Path, run_fingerprint: str, model_id: str):
        self.dir = Path(output_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        manifest_path = self.dir / "runs.json"
        manifest = read_json(manifest_path) if manifest_path.exists() else {}
        if run_fingerprint not in manifest:
            manifest[run_fingerprint] = new_run_id(set(manifest.values()))
            atomic_write_json(manifest_path, manifest)
        self.run_id = manifest[run_fingerprint]
        self.fingerprint = run_fingerprint
        self.results_path, self.samples_path = locate_run_files(self.dir, self.run_id, model_id)
        self.samples_path.parent.mkdir(parents=True, exist_ok=True)
        self.cache_path = self.dir / "requests_cache.sqlite"

    def load_samples(self) -> list[dict]:
        """Rows written so far. A torn last line (a crash mid-append) is cut first (`core.io.repair_tail`): the
        row it held is run again."""
        if not self.samples_path.exists():
            return []
        repair_tail(self.samples_path, "that row is run again")
        return read_log(self.samples_path, RunFileError, "a sample row")

    def append_samples(self, rows: list[dict]) -> None:
        """Append rows durably (fsynced); callable from a writer thread."""
        append_jsonl(self.samples_path, rows)

    def write_results(self, results: dict) -> None:
        atomic_write_json(self.results_path, results)


class SampleWriter:
    """Appends rows to a run's samples log on its own thread, in the order `write` was called.

    Durable appends (fsync) block for milliseconds each; on the event loop they would stall every conversation.
    Rows queued while an append runs go out together with one fsync; each row is still a whole line, in order,
    so a run killed at any point resumes as before. `close` waits for every queued row and raises the first
    error; after an error, `write` raises it too (the caller stops; nothing already written is lost).
    """

    def __init__(self, files: RunFiles, on_written=None):
        self.files = files
        self.on_written = on_written or (lambda rows: None)
        self.error: BaseException | None = None
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="aloe-samples-writer", daemon=True)
        self._thread.start()

    def write(self, rows: list[dict]) -> None:
        if self.error is not None:
            raise self.error
        if rows:
            self._queue.put(rows)

    def close(self, raise_error: bool = True) -> None:
        """Wait until every queued row is on disk; raise the first error (unless `raise_error` is false)."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        if self.error is not None and raise_error:
            raise self.error

    def _loop(self) -> None:
        while True:
            batch = [self._queue.get()]
            while True:  # take whatever else is queued: one append, one fsync
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = None in batch
            rows = [row for item in batch if item is not None for row in item]
            if rows and self.error is None:
                try:
                    self.files.append_samples(rows)
                    self.on_written(rows)
                except BaseException as exc:  # surfaced by the next `write` and by `close`
                    self.error = exc
            if stop:
                return


SMOKE_NOTE = ("judged by the embedded 135M model: a smoke-run signal only, not a number anyone should cite; "
              "use a real judge (an OpenAI-compatible endpoint) for results")


def score_matrix(rows: list[dict], persona_ids: list[str], turns: int) -> tuple[np.ndarray, dict]:
    """The scores as a persona x turn matrix (NaN where a turn has no score) and the counts a results file reports.

    Rows of other personas or of turns past `turns` are left out. A row with an error is a generation failure (its
    conversation stopped there); a row without a score is a judge failure.
    """
    position = {pid: i for i, pid in enumerate(persona_ids)}
    scores = np.full((len(persona_ids), max(turns, 1)), np.nan)
    judge_failures = generation_failures = 0
    stopped = set()
    for row in rows:
        i, turn = position.get(row["persona_id"]), int(row["turn"])
        if i is None or turn > turns:
            continue
        if row.get("error"):
            generation_failures += 1
            stopped.add(row["persona_id"])
        elif row.get("score") is None:
            judge_failures += 1
        else:
            scores[i, turn - 1] = row["score"]
    scored = int(np.isfinite(scores).sum())
    counts = {"conversations": len(persona_ids), "turns": turns, "rows": scored + judge_failures + generation_failures,
              "scored": scored, "judge_failures": judge_failures, "generation_failures": generation_failures,
              "stopped_conversations": len(stopped)}
    return scores, counts


def run_persona_set(results: dict, where: str, refusal: str):
    """The persona set a finished run used, read again from its results' config; `RunFileError` (ending in
    `refusal`) when the config does not name it or the set has changed since the run (its sha256 differs)."""
    from aloe_bench.core.personas import load_persona_set

    block = results.get("config", {})
    run, info = block.get("run", {}), block.get("personas", {})
    if "personas" not in run:
        raise RunFileError(f"{where}: config.run.personas missing: cannot tell which personas the run used")
    persona_set = load_persona_set(run["personas"], run.get("max_personalities", 5))
    if info.get("sha256") and persona_set.sha256[:16] != info["sha256"]:
        raise RunFileError(f"{where}: the persona set {run['personas']!r} has changed since the run "
                           f"(sha256 {persona_set.sha256[:16]} vs {info['sha256']}): {refusal}")
    return persona_set


def user_messages(rows: list[dict], personas) -> list[UserMessage]:
    """The simulated user's messages of `rows` whose persona is among `personas` (Persona objects), in row order."""
    by_id = {p.id: p for p in personas}
    return [UserMessage(row["persona_id"], int(row["turn"]), row["user_message"], by_id[row["persona_id"]].profile,
                        by_id[row["persona_id"]].personality)
            for row in rows if row.get("user_message") and row.get("persona_id") in by_id]


REVEAL_IN_CHECK = ("not computed during a run (importing sentence-transformers and warming MiniLM cost seconds to tens "
                   "of seconds on a CPU, on every run, however small): `aloe simulator check RUN_DIR` computes it")


def load_reveal_embedder(name: str | None = None) -> tuple:
    """`(embed, model name, None)` for the reveal curve, or `(None, None, reason)` when sentence-transformers or the
    embedder's wheel is missing: the curve is then skipped with the reason, and nothing fails."""
    from aloe_bench.core.embedded import sentence_embedder
    from aloe_bench.core.errors import DependencyError

    try:
        return (*sentence_embedder(name), None)
    except DependencyError as exc:
        return None, None, f"embedder unavailable: {exc}"


def simulator_block(rows: list[dict], personas, turns: int, embedder: tuple | None = None) -> dict:
    """The results file's check of the simulated user (`core.simulator_check`) over the messages of `personas`.

    The reveal curve needs `embedder`, a `load_reveal_embedder` triple; without one it is recorded as skipped
    (`REVEAL_IN_CHECK`), so a results file costs no model load."""
    embed, name, reason = embedder or (None, None, REVEAL_IN_CHECK)
    messages = [m for m in user_messages(rows, personas) if m.turn <= turns]
    block, _ = check_simulator(messages, turns, embed, embedder_name=name, skipped_reason=reason)
    return block


def criteria_matrices(rows: list[dict], persona_ids: list[str], turns: int) -> dict[str, np.ndarray] | None:
    """Each criterion's scores as a persona x turn matrix (NaN where a criterion has no score), or None when no row
    carries `criteria_scores` (a run of a one-integer judge)."""
    if not any(row.get("criteria_scores") is not None for row in rows):
        return None
    position = {pid: i for i, pid in enumerate(persona_ids)}
    matrices = {name: np.full((len(persona_ids), max(turns, 1)), np.nan) for name in CRITERIA}
    for row in rows:
        i, turn = position.get(row["persona_id"]), int(row["turn"])
        if i is None or turn > turns or row.get("error"):
            continue
        for name, value in (row.get("criteria_scores") or {}).items():
            if name in matrices and value is not None:
                matrices[name][i, turn - 1] = value
    return matrices


def build_run_results(rows: list[dict], persona_ids: list[str], turns: int, *, files: RunFiles, model: str,
                      judge: Judge, config: dict, bootstrap_resamples: int, seed: int, protocol: str | None = None,
                      rescore_of: str | None = None, personas=None, reveal_embedder: tuple | None = None) -> dict:
    """The results dict of a run (an eval, or a re-score when `rescore_of` names its source run): metrics over the
    score matrix of `persona_ids` x `turns`, counts, the judge's label, `config`, the run's config block, and the
    check of the simulated user over `personas` (the Persona objects of `persona_ids`; without them the block
    records that it was skipped); `reveal_embedder` (a `load_reveal_embedder` triple) adds the reveal curve."""
    scores, counts = score_matrix(rows, persona_ids, turns)
    results = {"benchmark": "ALOE"}
    if protocol is not None:
        results["protocol"] = protocol
    results.update(run_id=files.run_id, fingerprint=files.fingerprint)
    if rescore_of is not None:
        results["rescore_of"] = rescore_of
    results.update({
        "model": model,
        "judge": judge.label,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "metrics": summarise(scores, n_resamples=bootstrap_resamples, seed=seed),
        "counts": counts,
        **criteria_block(rows, persona_ids, turns, bootstrap_resamples, seed),
        "judges": judges_block(rows, persona_ids, turns, judge, bootstrap_resamples, seed),
        "files": {"samples": files.samples_path.relative_to(files.dir).as_posix()},
        "config": config,
    })
    results["simulator"] = (simulator_block(rows, personas, turns, reveal_embedder) if personas is not None
                            else {"skipped": "the run's personas were not given to the results builder"})
    if judge.is_embedded:
        results["judge_note"] = SMOKE_NOTE
    return results


def criteria_block(rows: list[dict], persona_ids: list[str], turns: int, bootstrap_resamples: int,
                   seed: int) -> dict:
    """`{"criteria": {criterion: metrics}}` (each shaped like `results["metrics"]`, same summary and bootstrap) for a
    run judged per criterion; empty for any other run, so its results keep today's keys."""
    matrices = criteria_matrices(rows, persona_ids, turns)
    if matrices is None:
        return {}
    return {"criteria": {name: summarise(m, n_resamples=bootstrap_resamples, seed=seed)
                         for name, m in matrices.items()}}


SPREAD_NOTE = ("mean over rows of the population SD (ddof 0) of the row's scores: `mean_sd` over every judge and "
               "sample of the row, `mean_sd_between_judges` over the judges' own scores (each the mean of its "
               "samples), `mean_sd_within_judge` over one judge's samples; rows with fewer than two scores left out")


def _row_records(row: dict, label: str) -> list[dict]:
    """A judged row's per-judge records: its `judges` list (a jury), or one record made from a lone judge's
    fields (judge 1, sample 0)."""
    if row.get("judges") is not None:
        return row["judges"]
    return [{"judge": 1, "name": label, "sample": 0, "score": row.get("score"), "error": row.get("judge_error"),
             "attempts": row.get("judge_attempts") or 0}]


def judges_block(rows: list[dict], persona_ids: list[str], turns: int, judge, bootstrap_resamples: int,
                 seed: int) -> dict:
    """Each judge's request and failure counts, the judges' spread per row and their pairwise agreement
    (`harness.agreement.compare`, judges paired by persona and turn), over the judged rows of `persona_ids`.

    A lone judge's run has one judge, no spread and no pairs (each undefined with its reason). Requests count
    every attempt (re-asks included; a criteria judge read from probabilities asks one prompt per criterion);
    answers served by the request cache count too, as they were asked when the run first met them.
    """
    wanted = set(persona_ids)
    members: dict[int, dict] = {}
    scores_of: dict[int, dict] = {}
    sds, between, within = [], [], []
    for row in rows:
        if row["persona_id"] not in wanted or int(row["turn"]) > turns or row.get("error") or row.get("reply") is None:
            continue
        records = _row_records(row, judge.label)
        key = (row["persona_id"], int(row["turn"]))
        by_judge: dict[int, list[float]] = {}
        for r in records:
            m = members.setdefault(r["judge"], {"judge": r["judge"], "name": r.get("name"), "requests": 0,
                                                "answers": 0, "failures": 0})
            m["requests"] += int(r.get("attempts") or 0)
            m["answers"] += 1
            m["failures"] += r.get("score") is None
            by_judge.setdefault(r["judge"], [])
            if r.get("score") is not None:
                by_judge[r["judge"]].append(float(r["score"]))
        values = [v for vs in by_judge.values() for v in vs]
        if len(values) >= 2:
            sds.append(float(np.std(values)))
        own = [float(np.mean(vs)) for vs in by_judge.values() if vs]
        if len(own) >= 2:
            between.append(float(np.std(own)))
        within += [float(np.std(vs)) for vs in by_judge.values() if len(vs) >= 2]
        for j, vs in by_judge.items():
            scores_of.setdefault(j, {})[key] = float(np.mean(vs)) if vs else None

    def mean(values, reason):
        return ({"value": round(float(np.mean(values)), 6), "rows": len(values)} if values
                else {"value": None, "rows": 0, "undefined": reason})

    block = {
        "aggregate": getattr(judge, "aggregate", None), "samples": getattr(judge, "samples", 1),
        "members": [members[j] for j in sorted(members)],
        "spread": {"note": SPREAD_NOTE,
                   "mean_sd": mean(sds, "no row has two scores (one judge, asked once)"),
                   "mean_sd_between_judges": mean(between, "no row has scores of two judges"),
                   "mean_sd_within_judge": mean(within, "no judge was asked twice for a row")},
        "agreement": [],
    }
    if len(scores_of) >= 2:  # scipy and scikit-learn are imported only for a jury
        from .agreement import Rater, compare, inter_rater

        raters = [Rater(f"judge {j}: {members[j]['name']}", scores_of[j]) for j in sorted(scores_of)]
        block["agreement"] = [compare(a, b, bootstrap_resamples, seed) for a, b in itertools.combinations(raters, 2)]
        if len(raters) >= 3:
            block["inter_rater"] = inter_rater(raters)
    return block


LM_EVAL_METRICS = ("AL_avg", "IR", "N_IR", "R2", "N_R2")


def add_lm_eval_keys(results: dict) -> dict:
    """Add the keys leaderboard tooling built for lm-eval/lighteval reads, next to the project's own:
    `results: {aloe: {metric: value, metric_stderr-style intervals...}}`, `config.model_name`, `config.model_sha`."""
    metrics = results["metrics"]
    task = {name: metrics.get(name) for name in LM_EVAL_METRICS}
    for name in LM_EVAL_METRICS:
        interval = (metrics.get("intervals") or {}).get(name)
        if interval:
            task[f"{name}_ci95"] = interval
    task["alias"] = "aloe"
    task.update(metric_args(results))
    results["results"] = {"aloe": task}
    results["versions"] = {"aloe": (results.get("config") or {}).get("prompts", {}).get("version")}
    results["n-samples"] = {"aloe": {"original": (results["config"].get("personas") or {}).get("count"),
                                     "effective": (results.get("counts") or {}).get("conversations")}}
    config = results["config"]
    config["model_name"] = results["model"]
    config["model_sha"] = ((config.get("models") or {}).get("model") or {}).get("resolved_revision")
    config["benchmark"] = {"dataset": benchmark_dataset(), "config": "personas", "split": "test"}
    return results
