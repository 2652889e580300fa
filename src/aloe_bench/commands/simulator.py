"""`aloe simulator check RUN_DIR [RUN_DIR ...]`: the full check of the simulated user of one or more runs.

Each run gets the block its results file carries (leaks, role breaks, reveal curve, length, repetition; overall and
per turn) plus every flagged message with its persona, turn, what was flagged and the start of its text, so several
runs side by side compare their role-play users. The personas' texts come from the run's results file (its persona
set, read again and checked against its hash) or from `--personas`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

EXCERPT_CHARS = 160


@dataclass
class SimulatorCheckConfig:
    """`aloe simulator check`: the runs to check and how."""

    sources: list[str] = field(metadata={"positional": True,
                                         "help": "Run folders or samples files, one per run (several compare runs)."})
    run_id: str | None = field(default=None, metadata={"help": "The run to check in a folder holding several."})
    personas: str | None = field(default=None, metadata={
        "help": "Persona source of the runs (default: the one each run's results file names)."})
    max_personalities: int = 5
    min_span_words: int = field(default=8, metadata={"help": "A leak is a verbatim span of at least this many words."})
    embedder: str | None = field(default=None, metadata={
        "help": "Sentence-transformers model for the reveal curve (default: the bundled all-MiniLM-L6-v2)."})
    output: str | None = field(default=None, metadata={"help": "Also write the JSON here."})


def register(sub) -> None:
    from aloe_bench.core.recipes import add_command_group, add_recipe_command

    actions = add_command_group(sub, "simulator", "Check the simulated (role-play) user of finished runs.",
                                metavar="SIMULATOR")
    add_recipe_command(actions, "check", [SimulatorCheckConfig], _run_check,
                       "Leaks, role breaks, reveal curve, length and repetition of runs' user messages.")


def _run_check(args) -> int:
    from aloe_bench.core.io import emit_report
    from aloe_bench.core.recipes import dataclass_from_args
    from aloe_bench.harness.results import load_reveal_embedder

    cfg = dataclass_from_args(args, SimulatorCheckConfig)
    embedder = load_reveal_embedder(cfg.embedder)
    emit_report({"runs": [check_run(source, cfg, embedder) for source in cfg.sources]}, cfg.output)
    return 0


def check_run(source: str, cfg: SimulatorCheckConfig, embedder) -> dict:
    """One run's report: where it is, its role-play user, the simulator block and the flagged messages;
    `embedder` is a `load_reveal_embedder` triple."""
    from aloe_bench.core.personas import load_persona_set
    from aloe_bench.core.run_files import RunFileError, find_run
    from aloe_bench.core.simulator_check import check_simulator
    from aloe_bench.harness.results import run_persona_set, user_messages

    run = find_run(source, cfg.run_id)
    results = run.results or {}
    if cfg.personas is not None:
        persona_set = load_persona_set(cfg.personas, cfg.max_personalities)
    elif run.results is not None:
        persona_set = run_persona_set(results, str(run.results_path), "pass --personas to check it anyway")
    else:
        raise RunFileError(f"{run.samples_path}: no results file beside it to name the run's personas: "
                           "pass --personas")
    rows = run.samples()
    evaluated = {row["persona_id"] for row in rows}
    known = {p.id for p in persona_set}
    unknown = sorted(evaluated - known)
    if unknown:
        raise RunFileError(f"{run.samples_path}: persona id(s) {', '.join(unknown[:5])} are not in the persona set "
                           f"{persona_set.name!r}")
    personas = [p for p in persona_set if p.id in evaluated]
    turns = max((int(row["turn"]) for row in rows), default=0)
    embed, name, reason = embedder
    block, checked = check_simulator(user_messages(rows, personas), turns, embed, embedder_name=name,
                                     skipped_reason=reason, min_words=cfg.min_span_words)
    texts = {(row["persona_id"], int(row["turn"])): row.get("user_message") or "" for row in rows}
    flagged = [{**item, "excerpt": texts[item["persona_id"], item["turn"]][:EXCERPT_CHARS]}
               for item in checked if item["leaks"] or item["role_breaks"]]
    user = ((results.get("config") or {}).get("models") or {}).get("user_simulator") or {}
    return {"source": source, "run_id": run.run_id, "samples": str(run.samples_path),
            "user_model": (user.get("model") or {}).get("model_id"),
            "personas": {"set": persona_set.name, "evaluated": len(personas)}, "simulator": block,
            "flagged": flagged}
