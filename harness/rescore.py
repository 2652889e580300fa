"""Re-judging a finished run with another judge: the same conversations, messages and replies, a new score.

Each row is shown to the new judge with the history the original judge had (the conversation's earlier turns,
rebuilt from the run's own rows). Rows are appended as each batch is judged, so an interrupted re-score resumes
where it stopped; requests are cached in the output folder; an unparsable answer is a recorded failure (score
null), as in `aloe eval`. The result file is marked `rescore_of` the source run and has its own fingerprint.

The new judge asks with the source run's own judge settings (preset, temperature, token limit, retries, as its
results' `config.run` records them) unless a flag names another value (`resolve_judge_settings`). With
`--keep_judges` the new judge joins the run's judges instead of replacing them: each row's `judges` lists the
source's verdicts and the new judge's, and its score is their jury's (`core.jury`).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace

from tqdm.auto import tqdm

from aloe_bench import __version__
from aloe_bench.core.backends import BackendOptions, build_backend
from aloe_bench.core.backends.cache import CachedBackend, RequestCache
from aloe_bench.core.errors import ConfigError
from aloe_bench.core.judge import Judge, JudgeConfig, JudgeItem, Verdict
from aloe_bench.core.jury import jury_verdict, record
from aloe_bench.core.prompts import load_prompts
from aloe_bench.core.run_files import RunFileError, find_run

from .results import RunFiles, build_run_results, fingerprint, package_versions, run_persona_set

JUDGE_FIELDS = ("score", "judge_raw", "judge_distribution", "judge_error", "judge_attempts")
CRITERIA_FIELDS = ("criteria_scores", "criteria_errors")


@dataclass
class RescoreConfig:
    """A re-score: the run to re-judge, where to write, and the new judge (`aloe judge rescore` parses it beside
    `BackendOptions`, which build the judge's backend; their `batch_size` is also how many rows go to the judge
    between two appends to the samples log, i.e. what an interruption can lose)."""

    run_dir: str = field(metadata={"positional": True,
                                   "help": "A run folder (results_*/samples_* at any depth) or a samples file."})
    output_dir: str
    judge_model: str = field(default="embedded", metadata={"required": True})  # the command needs it named
    judge_base_url: str | None = None
    judge_preset: str | None = field(default=None, metadata={"help": "paper | robust | criteria (default: the run's own)."})
    judge_scoring: str = "auto"
    judge_max_retries: int | None = field(default=None, metadata={"help": "Retries of an unparsable answer (default: "
                                                                          "the run's own)."})
    judge_temperature: float | None = field(default=None, metadata={"help": "Judge temperature (default: the run's "
                                                                            "own)."})
    judge_max_new_tokens: int | None = field(default=None, metadata={"help": "Judge token limit (default: the run's "
                                                                            "own)."})
    keep_judges: bool = field(default=False, metadata={"switch": True, "help": (
        "Add the new judge to the run's judges: rows keep the source's verdicts beside the new one in `judges`, and "
        "the score is the jury's (the run's jury_aggregate, mean by default).")})
    run_id: str | None = None
    seed: int = 0
    cache: bool = True
    bootstrap_resamples: int = 1000
    progress: bool = True


#: judge settings a re-score takes from the source run when not given: (RescoreConfig field, default of a run
#: that did not record it)
INHERITED = {"judge_preset": "paper", "judge_max_retries": 2, "judge_temperature": 0.0, "judge_max_new_tokens": None}


def resolve_judge_settings(cfg: RescoreConfig, source_results: dict, where: str) -> tuple[RescoreConfig, dict]:
    """`cfg` with each judge setting left None filled from the source run's (`config.rescore` for a re-score,
    else `config.run`), and where each came from (`given`, `run`, or `default` when the run did not record it)."""
    config = source_results.get("config") or {}
    recorded = config.get("rescore") or config.get("run") or {}
    values, origin = {}, {}
    for name, default in INHERITED.items():
        if getattr(cfg, name) is not None:
            origin[name] = "given"
            continue
        value = recorded.get(name, default)
        if isinstance(value, list):  # a jury's presets, one per judge
            if len(set(value)) != 1:
                raise ConfigError(f"{name}: {where} ran a jury with {name} {value}; name the new judge's with "
                                  f"--{name}")
            value = value[0]
        values[name], origin[name] = value, "run" if name in recorded else "default"
    return replace(cfg, **values), origin


def judge_config(cfg: RescoreConfig) -> JudgeConfig:
    """The new judge's settings (of a `resolve_judge_settings` result)."""
    return JudgeConfig(cfg.judge_preset, cfg.judge_scoring, cfg.judge_max_retries, seed=cfg.seed,
                       temperature=cfg.judge_temperature, max_new_tokens=cfg.judge_max_new_tokens)


def build_judge(cfg: RescoreConfig, options: BackendOptions | None = None, backend=None) -> Judge:
    """The new judge (of a resolved `cfg`), its backend built with the judge role's options (or `backend`)."""
    options = options or BackendOptions()
    options.check_roles(("judge",))
    backend = backend or build_backend(cfg.judge_model, options.for_role("judge"), base_url=cfg.judge_base_url)
    return Judge(backend, judge_config(cfg), load_prompts())


def _personas(source_results: dict, where: str):
    return {p.id: p for p in run_persona_set(source_results, where, "refusing to re-score")}


def rescore_run(cfg: RescoreConfig, judge: Judge | None = None, options: BackendOptions | None = None,
                judge_backend=None) -> dict:
    """Re-judge every judged row of the run in `cfg.run_dir`; write and return the new results dict.

    `judge` replaces the one `cfg` names (tests); `options` builds it otherwise, on `judge_backend` when given
    (tests: the run's settings still decide the judge's)."""
    source = find_run(cfg.run_dir, cfg.run_id)
    source_results = source.results
    if source_results is None:
        raise RunFileError(f"{source.samples_path}: no results_{source.run_id}.json beside it (the run's config, "
                           f"personas and model are read from it)")
    personas = _personas(source_results, str(source.results_path))
    if not source_results.get("model"):
        raise RunFileError(f"{source.results_path}: no 'model' (the re-score is written to that model's folder)")
    cfg, origin = resolve_judge_settings(cfg, source_results, str(source.results_path))
    judge = judge or build_judge(cfg, options, judge_backend)
    prompts = load_prompts()
    identity = {"rescore_of": source.run_id, "source_fingerprint": source_results.get("fingerprint"),
                "judge": judge.describe() | {"generation": judge.config.generation().to_dict()}, "seed": cfg.seed,
                "prompts": {"version": prompts.version, "sha256": prompts.hashes([judge.config.prompt_name])}}
    if cfg.keep_judges:
        identity["keep_judges"] = True
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

    added = AddedJudge(source_results, judge, cfg) if cfg.keep_judges else None
    done = {(r["persona_id"], r["turn"]) for r in files.load_samples()}
    todo = [r for r in rows if (r["persona_id"], r["turn"]) not in done]
    began = time.perf_counter()
    bar = tqdm(total=len(rows), initial=len(rows) - len(todo), unit="row", desc="rescore", disable=not cfg.progress)
    try:
        rows_per_call = (options or BackendOptions()).batch_size or 16
        for start in range(0, len(todo), rows_per_call):
            batch = todo[start:start + rows_per_call]
            judged = [r for r in batch if not r.get("error") and r.get("reply") is not None
                      and r.get("user_message") is not None]
            verdicts = judge.score([JudgeItem(personas[r["persona_id"]], r["user_message"], r["reply"],
                                              history[(r["persona_id"], r["turn"])]) for r in judged])
            verdict_of = {id(r): v for r, v in zip(judged, verdicts)}
            out = []
            for row in batch:
                new = {**row, "original_score": row.get("score"), "latency_s": dict(row.get("latency_s") or {})}
                new.update({k: None for k in JUDGE_FIELDS}, judge_attempts=0)
                new.pop("judges", None)
                for key in CRITERIA_FIELDS:  # the source run's criteria are not this judge's
                    new.pop(key, None)
                verdict = verdict_of.get(id(row))
                if verdict is not None and added is not None:
                    verdict = added.verdict(row, verdict)
                if verdict is not None:
                    new.update(verdict.row_fields())
                    new["latency_s"]["judge"] = round(verdict.latency_s, 4)
                out.append(new)
            files.append_samples(out)
            bar.update(len(out))
    finally:
        bar.close()
    wall = time.perf_counter() - began
    results = build_rescore_results(files, source_results, added or judge, identity, cfg,
                                    options or BackendOptions(), personas, origin)
    results["throughput"] = {"wall_s": round(wall, 3), "rows_judged_now": len(todo)}
    files.write_results(results)
    results["results_file"] = str(files.results_path)
    return results


def build_rescore_results(files: RunFiles, source_results: dict, judge: Judge, identity: dict,
                          cfg: RescoreConfig, options: BackendOptions, personas: dict | None = None,
                          origin: dict | None = None) -> dict:
    """The re-score's results dict: every row it wrote, scored like `aloe eval`'s, with the source run's config;
    `personas` (id -> Persona) gives the simulator check its texts."""
    rows = files.load_samples()
    source_config = source_results.get("config", {})
    config = {"rescore": _rescore_record(cfg, options) | ({"judge_settings_from": origin} if origin else {}),
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
                             rescore_of=identity["rescore_of"],
                             personas=[personas[i] for i in ids if i in personas] if personas else None)


def _rescore_record(cfg: RescoreConfig, options: BackendOptions) -> dict:
    """`config.rescore`: the re-score's settings but `progress`, with the judge's API key variable where results
    files have always had it."""
    record = {}
    for name, value in asdict(cfg).items():
        if name != "progress":
            record[name] = value
        if name == "judge_base_url":
            record["api_key_env"] = options.api_key_env
    return record


class AddedJudge:
    """The new judge joined to a source run's judges (`--keep_judges`): each row's records are the source row's
    (its `judges`, or one record made from a lone judge's fields) followed by the new judge's, and the row's verdict
    is the jury's. Reads like a `Jury` to the results builder (label, aggregate, samples)."""

    def __init__(self, source_results: dict, judge: Judge, cfg: RescoreConfig):
        config = source_results.get("config") or {}
        run = config.get("rescore") or config.get("run") or {}
        source_judge = (config.get("models") or {}).get("judge") or {}
        self.judge, self.cfg = judge, cfg
        self.source_label = source_results.get("judge") or "source judge"
        self.source = {"spec": run.get("judge_model"), "preset": source_judge.get("preset", run.get("judge_preset")),
                       "scoring": source_judge.get("scoring"), "seed": run.get("seed")}
        self.aggregate = run.get("jury_aggregate") or "mean"
        self.samples = 1
        self.source_description = {"spec": self.source["spec"], **source_judge}
        self.is_embedded = judge.is_embedded or "embedded" in self.source_label
        self.label = f"jury {self.aggregate}: {self.source_label} + {judge.label}"

    def describe(self) -> dict:
        return {"aggregate": self.aggregate, "samples": 1,
                "members": [self.source_description, {"spec": self.cfg.judge_model, **self.judge.describe()}]}

    def source_records(self, row: dict) -> list[dict]:
        if row.get("judges") is not None:
            return [dict(r) for r in row["judges"]]
        old = Verdict(row.get("score"), raw=row.get("judge_raw"), distribution=row.get("judge_distribution"),
                      attempts=row.get("judge_attempts") or 0, error=row.get("judge_error"),
                      criteria=row.get("criteria_scores"))
        spec = self.source["spec"]
        return [record(1, self.source_label, spec if isinstance(spec, str) else None,
                       _Named(self.source["preset"], self.source["scoring"]), 0, self.source["seed"], old)]

    def verdict(self, row: dict, new: Verdict) -> Verdict:
        records = self.source_records(row)
        index = max((r["judge"] for r in records), default=0) + 1
        records.append(record(index, self.judge.label, self.cfg.judge_model, self.judge.config, 0,
                              self.judge.config.seed, new))
        return jury_verdict(records, self.aggregate, latency_s=new.latency_s, tokens=new.tokens)


@dataclass(frozen=True)
class _Named:
    """The preset and scoring of a source run's judge, as `core.jury.record` reads them from a config."""

    preset: str | None
    scoring: str | None
