"""ALOE results as `huggingface_hub.EvalResult` entries, for a model card's model-index.

One builder serves both places that write them: the harness (results pushed to a results dataset) and
the training card (a checkpoint with a harness run). The judge goes into `metric_config`, since a score
means nothing without it.
"""

from __future__ import annotations

CARD_METRICS = ("AL_avg", "IR", "N_IR")


def aloe_eval_results(results: dict, dataset_type: str, dataset_name: str, source_url: str | None = None,
                      source_name: str = "aloe-bench") -> list:
    """One EvalResult per available metric of a harness results dict (metrics that are None are left out)."""
    from huggingface_hub import EvalResult

    source = {"source_name": source_name, "source_url": source_url} if source_url else {}
    entries = []
    for name in CARD_METRICS:
        value = results["metrics"].get(name)
        if value is None:
            continue
        entries.append(EvalResult(
            task_type="text-generation", task_name="Personalised multi-turn alignment (ALOE)",
            dataset_type=dataset_type, dataset_name=dataset_name,
            metric_type=name, metric_name=f"ALOE {name}", metric_value=round(float(value), 4),
            metric_config=f"judge: {results['judge']}", **source))
    return entries
