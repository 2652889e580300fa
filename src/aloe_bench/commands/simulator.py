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
    llm_check: str | None = field(default=None, metadata={
        "help": "Also ask this model (a spec: embedded, a Hub id, a folder, openai:NAME) whether each user message "
                "breaks role (prompt role_break_check, yes/no; another answer is a recorded failure)."})
    llm_check_base_url: str | None = field(default=None, metadata={"help": "OpenAI-compatible base URL of --llm_check."})
    llm_check_max_new_tokens: int = field(default=8, metadata={"help": "Max new tokens of the --llm_check answer."})
    output: str | None = field(default=None, metadata={"help": "Also write the JSON here."})


def _check_types() -> list:
    """The check's dataclasses: its own and the backend options of `--llm_check` (parsed when the command is)."""
    from aloe_bench.core.backends import BackendOptions

    return [SimulatorCheckConfig, BackendOptions]


@dataclass
class LlmCheck:
    """The `--llm_check` model, its prompt and its generation settings (greedy), built once for every run named."""

    backend: object
    prompt: object
    generation: object

    @classmethod
    def build(cls, cfg: SimulatorCheckConfig, options) -> "LlmCheck | None":
        if not cfg.llm_check:
            return None
        from aloe_bench.core.backends import GenerationConfig, build_backend
        from aloe_bench.core.prompts import load_prompts
        from aloe_bench.core.simulator_check import LLM_CHECK_PROMPT

        backend = build_backend(cfg.llm_check, options, base_url=cfg.llm_check_base_url)
        return cls(backend, load_prompts()[LLM_CHECK_PROMPT],
                   GenerationConfig(max_new_tokens=cfg.llm_check_max_new_tokens, temperature=0.0))

    def describe(self) -> dict:
        return {"model": self.backend.model_id, "prompt": self.prompt.name, "prompt_sha256": self.prompt.sha256[:16],
                "generation": self.generation.to_dict()}


def register(sub) -> None:
    from aloe_bench.core.recipes import add_command_group, add_recipe_command

    actions = add_command_group(sub, "simulator", "Check the simulated (role-play) user of finished runs.",
                                metavar="SIMULATOR")
    add_recipe_command(actions, "check", _check_types, _run_check,
                       "Leaks, role breaks, reveal curve, length and repetition of runs' user messages.")


def _run_check(args) -> int:
    from aloe_bench.core.backends import BackendOptions
    from aloe_bench.core.io import emit_report
    from aloe_bench.core.recipes import dataclass_from_args
    from aloe_bench.harness.results import load_reveal_embedder

    cfg = dataclass_from_args(args, SimulatorCheckConfig)
    llm = LlmCheck.build(cfg, dataclass_from_args(args, BackendOptions))
    embedder = load_reveal_embedder(cfg.embedder)
    emit_report({"runs": [check_run(source, cfg, embedder, llm) for source in cfg.sources]}, cfg.output)
    return 0


def check_run(source: str, cfg: SimulatorCheckConfig, embedder, llm: LlmCheck | None = None) -> dict:
    """One run's report: where it is, its role-play user, the simulator block and the flagged messages;
    `embedder` is a `load_reveal_embedder` triple; with `llm`, its role-break answers sit beside the rules' (overall
    and per turn, under `role_breaks.llm`) and its failures are listed."""
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
    messages = user_messages(rows, personas)
    block, checked = check_simulator(messages, turns, embed, embedder_name=name,
                                     skipped_reason=reason, min_words=cfg.min_span_words)
    verdicts = _add_llm_check(block, checked, messages, llm) if llm is not None else {}
    texts = {(row["persona_id"], int(row["turn"])): row.get("user_message") or "" for row in rows}
    flagged = [{**item, **verdicts.get((item["persona_id"], item["turn"]), {}),
                "excerpt": texts[item["persona_id"], item["turn"]][:EXCERPT_CHARS]}
               for item in checked if item["leaks"] or item["role_breaks"]
               or verdicts.get((item["persona_id"], item["turn"]), {}).get("llm_role_break")]
    user = ((results.get("config") or {}).get("models") or {}).get("user_simulator") or {}
    return {"source": source, "run_id": run.run_id, "samples": str(run.samples_path),
            "user_model": (user.get("model") or {}).get("model_id"),
            "personas": {"set": persona_set.name, "evaluated": len(personas)}, "simulator": block,
            "flagged": flagged}


def _add_llm_check(block: dict, checked: list[dict], messages, llm: LlmCheck) -> dict:
    """Ask `llm` about every message; put its counts beside the rules' in `block` (overall and per turn) and return
    `{(persona, turn): {llm_role_break, llm_failure}}` for the flagged list."""
    from aloe_bench.core.simulator_check import llm_role_breaks, summarise_llm_checks

    answers = llm_role_breaks(messages, llm.backend, llm.prompt, llm.generation)
    block["role_breaks"]["llm"] = {**llm.describe(), **summarise_llm_checks(answers, checked),
                                   "failed": [{k: a[k] for k in ("persona_id", "turn", "failure")}
                                              for a in answers if a["failure"]]}
    for entry in block["per_turn"]:
        turn = entry["turn"]
        entry["role_breaks"]["llm"] = summarise_llm_checks([a for a in answers if a["turn"] == turn],
                                                           [c for c in checked if c["turn"] == turn])
    return {(a["persona_id"], a["turn"]): {"llm_role_break": a["verdict"], "llm_failure": a["failure"]}
            for a in answers}
