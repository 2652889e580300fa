"""ALOE scores for the Hub: one benchmark identity, the legacy model-index and `.eval_results/aloe.yaml`.

The benchmark is the personas dataset (its `personas` config, `test` split): every model-index entry and every
`.eval_results` entry names it as the dataset, with its revision when known, so the same benchmark has one name
everywhere. `ALOE_BENCHMARK_DATASET` in the environment points at another copy of it. The dataset carries an
`eval.yaml` (`benchmark_eval_yaml`) so the Hub lists it as a benchmark with one task per metric.

Each score names its judge, protocol, turns and the number of personas actually evaluated: a score means
nothing without them.
"""

from __future__ import annotations

import os

import yaml

DEFAULT_BENCHMARK_DATASET = "aloe-bench/aloe"
BENCHMARK_CONFIG = "personas"
BENCHMARK_SPLIT = "test"
EVAL_RESULTS_PATH = ".eval_results/aloe.yaml"
CARD_METRICS = ("AL_avg", "IR", "N_IR")
TASK_IDS = {"AL_avg": "aloe_al_avg", "IR": "aloe_ir", "N_IR": "aloe_n_ir"}
TASK_NAMES = {"AL_avg": "ALOE average alignment level (AL_avg, 1-5)",
              "IR": "ALOE improvement rate (IR, slope of AL per turn)",
              "N_IR": "ALOE normalised improvement rate (N_IR)"}


def benchmark_dataset() -> str:
    """The Hub id of the benchmark dataset (`ALOE_BENCHMARK_DATASET`, default `aloe-bench/aloe`)."""
    return os.environ.get("ALOE_BENCHMARK_DATASET") or DEFAULT_BENCHMARK_DATASET


def benchmark_eval_yaml() -> str:
    """The benchmark dataset's `eval.yaml`: name, description and one task per metric on `personas`/`test`."""
    doc = {
        "name": "ALOE",
        "description": ("Personalised alignment through interaction: a role-played user with a hidden profile and "
                        "personality chats with the model for several turns; a judge scores each reply 1-5. "
                        "AL_avg is the mean score, IR the slope of the per-turn mean (does the model adapt?)."),
        "evaluation_framework": "aloe-bench",
        "tasks": [{"id": TASK_IDS[m], "name": TASK_NAMES[m], "config": BENCHMARK_CONFIG, "split": BENCHMARK_SPLIT}
                  for m in CARD_METRICS],
    }
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


def protocol_of(results: dict) -> str:
    """The run's protocol label: the preset's name, or `custom` when settings differ from it (the top-level
    `protocol` of a results file; `config.run.protocol` names only the preset a custom run started from)."""
    label = results.get("protocol")
    if isinstance(label, str) and label:
        return label
    return ((results.get("config") or {}).get("run") or {}).get("protocol") or "custom"


def personas_evaluated(results: dict) -> int | None:
    """How many personas the run scored (not the size of the set it drew them from)."""
    personas = (results.get("config") or {}).get("personas") or {}
    value = personas.get("evaluated", (results.get("counts") or {}).get("conversations"))
    return None if value is None else int(value)


def metric_args(results: dict) -> dict:
    """Judge, protocol, turns and personas of a run: what every published score carries."""
    counts = results.get("counts") or {}
    return {"judge": results["judge"], "protocol": protocol_of(results), "turns": counts.get("turns"),
            "personas": personas_evaluated(results)}


def _notes(results: dict) -> str:
    args = metric_args(results)
    return (f"judge: {args['judge']}; protocol: {args['protocol']}; turns: {args['turns']}; "
            f"personas: {args['personas']}")


def _revision(results: dict, revision: str | None) -> str | None:
    if revision:
        return revision
    personas = (results.get("config") or {}).get("personas") or {}
    return personas.get("revision")


def _card_scores(results: dict) -> list[tuple[str, float]]:
    """(metric, value rounded to 4 places) for each card metric the run has; metrics that are None are left out."""
    return [(name, round(float(results["metrics"][name]), 4)) for name in CARD_METRICS
            if results["metrics"].get(name) is not None]


def aloe_eval_results(results: dict, dataset_type: str | None = None, dataset_name: str | None = None,
                      source_url: str | None = None, source_name: str = "aloe-bench",
                      dataset_revision: str | None = None) -> list:
    """One legacy `EvalResult` (model-index) per available metric; metrics that are None are left out."""
    from huggingface_hub import EvalResult

    dataset_type = dataset_type or benchmark_dataset()
    personas = personas_evaluated(results)
    dataset_name = dataset_name or f"ALOE ({personas} personas x {(results.get('counts') or {}).get('turns')} turns)"
    source = {"source_name": source_name, "source_url": source_url} if source_url else {}
    return [EvalResult(
        task_type="text-generation", task_name="Personalised multi-turn alignment (ALOE)",
        dataset_type=dataset_type, dataset_name=dataset_name, dataset_config=BENCHMARK_CONFIG,
        dataset_split=BENCHMARK_SPLIT, dataset_revision=_revision(results, dataset_revision),
        metric_type=name, metric_name=f"ALOE {name}", metric_value=value,
        metric_config=f"judge: {results['judge']}", metric_args=metric_args(results), **source)
        for name, value in _card_scores(results)]


def eval_result_entries(results: dict, source_url: str | None = None, source_name: str | None = None,
                        dataset_revision: str | None = None) -> list:
    """`huggingface_hub.EvalResultEntry` per available metric, for `.eval_results/aloe.yaml`."""
    from huggingface_hub import EvalResultEntry

    created = results.get("created")
    return [EvalResultEntry(
        dataset_id=benchmark_dataset(), task_id=TASK_IDS[name], value=value,
        dataset_revision=_revision(results, dataset_revision), date=created,
        source_url=source_url, source_name=source_name if source_url else None, notes=_notes(results))
        for name, value in _card_scores(results)]


def eval_results_yaml(entries: list) -> str:
    """The text of `.eval_results/aloe.yaml` for `entries` (huggingface_hub's own serialiser)."""
    from huggingface_hub import eval_result_entries_to_yaml

    return yaml.safe_dump(eval_result_entries_to_yaml(entries), sort_keys=False, allow_unicode=True)

