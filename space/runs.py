"""The Runs tab's data: finished runs listed from a source, one persona's conversation read back with its scores.

A source is a run folder (`aloe eval` outputs, found by `aloe_bench.core.run_files`), a results dataset folder or
`hub:ORG/NAME` (read as the Leaderboard tab reads one: `load_dataset_source`, the `results` config for the list and
one `samples` split per run). A row's extra keys (kept as JSON in the dataset's `extra` column) are restored, so
per-criterion scores, per-judge records and simulator flags show wherever a run carries them. Everything read is
bounded (`max_rows` per run, `CLIP` characters per text) and shown through `redact`; on a public Space a `hub:`
source is read with the visitor's token or anonymously (`token=False`), never the owner's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from aloe_bench.core.errors import AloeError
from aloe_bench.core.judge import clip_text
from aloe_bench.core.run_files import (RunFileError, find_results_files, read_results, read_samples, run_id_of,
                                      samples_path_for)

from .leaderboard import is_results_dataset
from .redact import redact

CLIP = 1500  # characters of each shown text (message, reply, judge answer)
CRITERIA = ("style", "content", "human")


class RunsError(AloeError, ValueError):
    """A runs source cannot be read, or a run or persona asked for is not in it; worded for the page."""


@dataclass
class RunEntry:
    """One finished run of a source: its summary (the results record) and a way to read its sample rows."""

    run_id: str
    results: dict
    source: str
    split: str | None = None  # its samples split in a results dataset; None for run files
    samples_path: Path | None = None
    rows: list[dict] | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        metrics = self.results.get("metrics") or {}
        al = metrics.get("AL_avg")
        score = f" · AL {al:.2f}" if isinstance(al, (int, float)) else ""
        return f"{self.results.get('model', '?')} · {self.run_id}{score}"


def _row(record: dict) -> dict:
    """A results-dataset sample row as the samples log holds it: `extra`'s keys restored beside the typed ones."""
    row = dict(record)
    extra = row.pop("extra", None)
    if isinstance(extra, str) and extra:
        try:
            decoded = json.loads(extra)
        except ValueError:
            decoded = None
        if isinstance(decoded, dict):
            row = {**decoded, **{k: v for k, v in row.items() if v is not None}}
    distribution = row.get("judge_distribution")
    if isinstance(distribution, list):
        row["judge_distribution"] = {d["option"]: d["probability"] for d in distribution if isinstance(d, dict)}
    return row


def _dataset(source: str, config: str, split: str, token):
    from aloe_bench.core.dataset_folder import load_dataset_source

    kwargs = {} if token is None else {"token": token}
    try:
        return load_dataset_source(source, config, split=split, **kwargs)
    except Exception as exc:
        raise RunsError(f"results dataset {source!r} ({config}/{split}) could not be read: "
                        f"{type(exc).__name__}: {exc}") from None


def _dataset_runs(name: str, token) -> list[RunEntry]:
    """The runs of a results dataset (a Hub id or its local folder): its `results` config, one row per run."""
    entries = []
    for record in _dataset(name, "results", "train", token):
        results = dict(record)
        if isinstance(results.get("config"), str):  # the dataset keeps the config block as JSON
            try:
                results["config"] = json.loads(results["config"])
            except ValueError:
                results["config"] = {}
        entries.append(RunEntry(str(results.get("run_id")), results, name, split=results.get("split")))
    return entries


def _folder_runs(source: str, problems: list[str]) -> list[RunEntry]:
    """The runs under a folder of run files; a malformed results file is named in `problems`, the others show."""
    folder = Path(source).expanduser()
    if not folder.exists():
        raise RunsError(f"{source}: no such run folder")
    entries = []
    for path in find_results_files(folder):
        try:
            results = read_results(path)
        except RunFileError as exc:
            problems.append(str(exc).replace(str(folder), source))
            continue
        run_id = str(results.get("run_id") or run_id_of(path))
        entries.append(RunEntry(run_id, results, source, samples_path=samples_path_for(path, results)))
    return entries


def list_runs(source: str, token=None, problems: list[str] | None = None) -> list[RunEntry]:
    """Every finished run of `source`, newest first; unreadable results files are named in `problems`.

    `token` is for a `hub:` source: None reads with the environment's credentials, False anonymously, a string
    with that token.
    """
    source = (source or "").strip()
    if not source:
        raise RunsError("give a run folder, a results dataset folder, or hub:ORG/NAME")
    if source.startswith("hub:"):
        entries = _dataset_runs(source[4:], token)
    elif is_results_dataset(Path(source).expanduser()):
        entries = _dataset_runs(str(Path(source).expanduser()), token)
    else:
        entries = _folder_runs(source, [] if problems is None else problems)
    if not entries:
        raise RunsError(f"{source}: no finished run (no results_*.json, and not a results dataset)")
    return sorted(entries, key=lambda e: str(e.results.get("created") or ""), reverse=True)


def load_rows(entry: RunEntry, max_rows: int, token=None) -> list[dict]:
    """The run's sample rows (at most `max_rows`), read once and kept on the entry."""
    if entry.rows is None:
        if entry.split is not None:
            data = _dataset(entry.source, "samples", entry.split, token)
            rows = [_row(r) for r in data.select(range(min(len(data), max_rows))).to_list()]
        else:
            try:
                rows = read_samples(entry.samples_path)[:max_rows]
            except RunFileError as exc:
                raise RunsError(str(exc).replace(str(entry.samples_path), entry.samples_path.name)) from None
        entry.rows = rows
    return entry.rows


def personas_of(rows: list[dict]) -> list[str]:
    return sorted({str(r["persona_id"]) for r in rows})


def conversation(rows: list[dict], persona_id: str) -> list[dict]:
    """One persona's rows in turn order."""
    return sorted((r for r in rows if str(r.get("persona_id")) == persona_id), key=lambda r: int(r["turn"]))


def _number(value) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "—"


def _mean(value):
    """A curve's mean (AL_<criterion> is a curve by turn), or the value itself when it is already a number."""
    if isinstance(value, list):
        numbers = [v for v in value if isinstance(v, (int, float))]
        return sum(numbers) / len(numbers) if numbers else None
    return value


def _criteria(row: dict) -> dict | None:
    scores = row.get("criteria_scores")
    return scores if isinstance(scores, dict) and scores else None


def _flags(row: dict) -> list[str]:
    """The simulator's flags on this turn's user message, whatever their shape (a dict of named flags or a list)."""
    flags = row.get("simulator")
    if isinstance(flags, dict):
        return [f"{k}: {v}" if not isinstance(v, bool) else k for k, v in flags.items() if v not in (None, False, [], {})]
    if isinstance(flags, list):
        return [str(f) for f in flags]
    return [str(flags)] if flags else []


def turn_markdown(row: dict) -> str:
    """One turn: the user's message, the reply, the score (overall, per criterion, per judge), raw answers, failures."""
    lines = [f"#### Turn {row['turn']}", f"**User:** {clip_text(str(row.get('user_message') or '—'), CLIP)}", ""]
    flags = _flags(row)
    if flags:
        lines += [f"⚠️ *simulator flags:* {', '.join(flags)}", ""]
    if row.get("error"):
        lines += [f"⚠️ *generation failed:* {clip_text(str(row['error']), CLIP)}", ""]
    lines += [f"**Assistant:** {clip_text(str(row.get('reply') or '—'), CLIP)}", ""]
    score = f"**score {_number(row.get('score'))}**"
    criteria = _criteria(row)
    if criteria:
        score += " · " + " · ".join(f"{name} {_number(criteria.get(name))}" for name in CRITERIA if name in criteria)
    lines += [score, ""]
    if row.get("judge_error"):
        lines += [f"⚠️ *judge failed:* {clip_text(str(row['judge_error']), CLIP)}", ""]
    if row.get("judge_raw"):
        lines += [f"*judge said:* `{clip_text(str(row['judge_raw']), CLIP)}`", ""]
    for judge in row.get("judges") or []:
        if isinstance(judge, dict):
            failed = f" ⚠️ {clip_text(str(judge['error']), CLIP)}" if judge.get("error") else ""
            raw = f" · `{clip_text(str(judge['raw']), 300)}`" if judge.get("raw") else ""
            who = f"{judge.get('judge', '?')}" + (f" {judge['name']}" if judge.get("name") else "")
            sample = f" (sample {judge['sample']})" if judge.get("sample") else ""
            lines.append(f"- judge `{clip_text(who, 200)}`{sample}: {_number(judge.get('score'))}{failed}{raw}")
    return "\n".join(lines).rstrip()


def summary_markdown(entry: RunEntry, persona_id: str | None = None, rows: list[dict] | None = None) -> str:
    """The run's headline (model, judge, AL_avg, IR, counts) and, with a persona, that conversation's scores."""
    results = entry.results
    metrics = results.get("metrics") or {}
    lines = [f"**{results.get('model', '?')}** · run `{entry.run_id}` · judge {results.get('judge', '?')} · "
             f"{str(results.get('created') or '')[:10]}",
             f"AL_avg {_number(metrics.get('AL_avg'))} · IR {_number(metrics.get('IR'))} · "
             f"N_IR {_number(metrics.get('N_IR'))}"]
    per_criterion = [f"{name} {_number(_mean(metrics[f'AL_{name}']))}" for name in CRITERIA if f"AL_{name}" in metrics]
    if per_criterion:
        lines.append("AL_avg per criterion: " + " · ".join(per_criterion))
    simulator = results.get("simulator")
    if isinstance(simulator, dict) and isinstance(simulator.get("overall"), dict):
        overall = ", ".join(f"{k} {v}" for k, v in list(simulator["overall"].items())[:8])
        lines.append("simulator: " + clip_text(overall, 400))
    if persona_id is not None and rows is not None:
        scores = [_number(r.get("score")) for r in rows]
        lines.append(f"persona `{persona_id}`: {len(rows)} turn(s), scores {', '.join(scores) or '—'}")
    return redact("\n\n".join(lines))


def transcript_markdown(rows: list[dict]) -> str:
    if not rows:
        return "*This run has no turn of this persona.*"
    return redact("\n\n".join(turn_markdown(r) for r in rows))


def persona_curve(rows: list[dict]) -> tuple[list[float | None], dict[str, list[float | None]]]:
    """(overall scores by turn, {criterion: scores by turn}) of one persona's rows, for `views.score_curve`."""
    scores = [r.get("score") for r in rows]
    criteria = {name: [(_criteria(r) or {}).get(name) for r in rows] for name in CRITERIA}
    return scores, {k: v for k, v in criteria.items() if any(s is not None for s in v)}
