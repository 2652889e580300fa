"""Re-judging a finished run with another judge: the same conversations, messages and replies, a new score.

Each row is shown to the new judge with the history the original judge had (the conversation's earlier turns,
rebuilt from the run's own rows). Rows are appended as each batch is judged, so an interrupted re-score resumes
where it stopped; requests are cached in the output folder; an unparsable answer is a recorded failure (score
null), as in `aloe eval`. The result file is marked `rescore_of` the source run and has its own fingerprint.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

from tqdm.auto import tqdm

from aloe_bench import __version__
from aloe_bench.core.backends import BackendOptions, build_backend
from aloe_bench.core.backends.cache import CachedBackend, RequestCache
from aloe_bench.core.judge import Judge, JudgeConfig, JudgeItem
from aloe_bench.core.personas import load_persona_set
from aloe_bench.core.prompts import load_prompts
from aloe_bench.core.run_files import RunFileError, find_run

from .results import RunFiles, build_run_results, fingerprint, package_versions

JUDGE_FIELDS = ("score", "judge_raw", "judge_distribution", "judge_error", "judge_attempts")


@dataclass
class RescoreConfig:
    """A re-score: the run to re-judge, where to write, and the new judge (`aloe judge rescore` parses it)."""

    run_dir: str = field(metadata={"positional": True,
                                   "help": "A run folder (results_*/samples_* at any depth) or a samples file."})
    output_dir: str
    judge_model: str = field(default="embedded", metadata={"required": True})  # the command needs it named
    judge_base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    judge_preset: str = "paper"
    judge_scoring: str = "auto"
    judge_max_retries: int = 2
    run_id: str | None = None
    batch_size: int = 16
    seed: int = 0
    cache: bool = True
    bootstrap_resamples: int = 1000
    progress: bool = True


def build_judge(cfg: RescoreConfig) -> Judge:
    backend = build_backend(cfg.judge_model, BackendOptions(api_key_env=cfg.api_key_env), base_url=cfg.judge_base_url)
    return Judge(backend, JudgeConfig(cfg.judge_preset, cfg.judge_scoring, cfg.judge_max_retries,
                                                 seed=cfg.seed), load_prompts())


def _personas(source_results: dict, where: str):
    block = source_results.get("config", {})
    run, info = block.get("run", {}), block.get("personas", {})
    if "personas" not in run:
        raise RunFileError(f"{where}: config.run.personas missing: cannot tell which personas the run used")
    persona_set = load_persona_set(run["personas"], run.get("max_personalities", 5))
    if info.get("sha256") and persona_set.sha256[:16] != info["sha256"]:
        raise RunFileError(f"{where}: the persona set {run['personas']!r} has changed since the run "
                           f"(sha256 {persona_set.sha256[:16]} vs {info['sha256']}): refusing to re-score")
    return {p.id: p for p in persona_set}


def rescore_run(cfg: RescoreConfig, judge: Judge | None = None) -> dict:
    """Re-judge every judged row of the run in `cfg.run_dir`; write and return the new results dict."""
    source = find_run(cfg.run_dir, cfg.run_id)
    source_results = source.results
    if source_results is None:
        raise RunFileError(f"{source.samples_path}: no results_{source.run_id}.json beside it (the run's config, "
                           f"personas and model are read from it)")
    personas = _personas(source_results, str(source.results_path))
    if not source_results.get("model"):
        raise RunFileError(f"{source.results_path}: no 'model' (the re-score is written to that model's folder)")
    judge = judge or build_judge(cfg)
    prompts = load_prompts()
    identity = {"rescore_of": source.run_id, "source_fingerprint": source_results.get("fingerprint"),
                "judge": judge.describe(), "seed": cfg.seed,
                "prompts": {"version": prompts.version, "sha256": prompts.hashes([judge.config.prompt_name])}}
    files = RunFiles(cfg.output_dir, fingerprint(identity), source_results["model"])
    if cfg.cache:
        judge = Judge(CachedBackend(judge.backend, RequestCache(files.cache_path)), judge.config, judge.prompts)

    rows = sorted(source.samples(), key=lambda r: (int(r["turn"]), r["persona_id"]))
    unknown = sorted({r["persona_id"] for r in rows} - personas.keys())
    if unknown:
        raise RunFileError(f"{source.samples_path}: persona id(s) {', '.join(unknown[:5])} are not in the run's "
                           f"persona set")
    history: dict[tuple[str, int], list[dict]] = {}
    for persona_id in {r["persona_id"] for r in rows}:
        turns, so_far = sorted((r for r in rows if r["persona_id"] == persona_id), key=lambda r: r["turn"]), []
        for row in turns:
            history[(persona_id, row["turn"])] = list(so_far)
            if row.get("user_message") is not None and row.get("reply") is not None:
                so_far += [{"role": "user", "content": row["user_message"]},
                           {"role": "assistant", "content": row["reply"]}]

    done = {(r["persona_id"], r["turn"]) for r in files.load_samples()}
    todo = [r for r in rows if (r["persona_id"], r["turn"]) not in done]
    began = time.perf_counter()
    bar = tqdm(total=len(rows), initial=len(rows) - len(todo), unit="row", desc="rescore", disable=not cfg.progress)
    try:
        for start in range(0, len(todo), cfg.batch_size):
            batch = todo[start:start + cfg.batch_size]
            judged = [r for r in batch if not r.get("error") and r.get("reply") is not None
                      and r.get("user_message") is not None]
            verdicts = judge.score([JudgeItem(personas[r["persona_id"]], r["user_message"], r["reply"],
                                              history[(r["persona_id"], r["turn"])]) for r in judged])
            verdict_of = {id(r): v for r, v in zip(judged, verdicts)}
            out = []
            for row in batch:
                new = {**row, "original_score": row.get("score"), "latency_s": dict(row.get("latency_s") or {})}
                new.update({k: None for k in JUDGE_FIELDS}, judge_attempts=0)
                verdict = verdict_of.get(id(row))
                if verdict is not None:
                    new.update(score=verdict.score, judge_raw=verdict.raw, judge_distribution=verdict.distribution,
                               judge_error=verdict.error, judge_attempts=verdict.attempts)
                    new["latency_s"]["judge"] = round(verdict.latency_s, 4)
                out.append(new)
            files.append_samples(out)
            bar.update(len(out))
    finally:
        bar.close()
    wall = time.perf_counter() - began
    results = build_rescore_results(files, source_results, judge, identity, cfg)
    results["throughput"] = {"wall_s": round(wall, 3), "rows_judged_now": len(todo)}
    files.write_results(results)
    results["results_file"] = str(files.results_path)
    return results


def build_rescore_results(files: RunFiles, source_results: dict, judge: Judge, identity: dict,
                          cfg: RescoreConfig) -> dict:
    """The re-score's results dict: every row it wrote, scored like `aloe eval`'s, with the source run's config."""
    rows = files.load_samples()
    source_config = source_results.get("config", {})
    config = {"rescore": {k: v for k, v in asdict(cfg).items() if k != "progress"},
              "source": {"run_id": identity["rescore_of"], "fingerprint": identity["source_fingerprint"],
                         "judge": source_results.get("judge")},
              "run": source_config.get("run", {}),
              "models": {**source_config.get("models", {}), "judge": judge.describe()},
              "prompts": identity["prompts"],
              "personas": source_config.get("personas"),
              "harness_version": __version__, "packages": package_versions()}
    ids, turns = sorted({r["persona_id"] for r in rows}), max((int(r["turn"]) for r in rows), default=0)
    return build_run_results(rows, ids, turns, files=files, model=source_results.get("model"), judge=judge,
                             config=config, bootstrap_resamples=cfg.bootstrap_resamples, seed=cfg.seed,
                             rescore_of=identity["rescore_of"])
