"""ALOE as a Hugging Face `evaluate` module: `evaluate.load("harness/aloe").compute(model_id=...)`.

A thin wrapper: the multi-turn loop lives in the installed `aloe-bench` package (`pip install aloe-bench`);
this script only adapts it to the `evaluate` interface. Inputs are the personas (one profile and one
personality per row); with none given, the package's default eval set (100 personas) is used.
"""

import aloe_bench  # noqa: F401 - top level, so `evaluate.load` names the package when it is missing
import datasets
import evaluate

_CITATION = """\
@inproceedings{wu-etal-2025-aligning,
    title = "Aligning {LLM}s with Individual Preferences via Interaction",
    author = "Wu, Shujin and Fung, May and Qian, Cheng and Kim, Jeonghwan and Hakkani-Tur, Dilek and Ji, Heng",
    booktitle = "Proceedings of the 31st International Conference on Computational Linguistics",
    year = "2025",
}
"""

_DESCRIPTION = """\
ALOE measures how well a chat model adapts to a user's unspoken persona over a multi-turn conversation.
A role-play user speaks as each persona for K turns; a judge scores every reply 1-5 for personalisation.
AL(k) is the mean score at turn k, IR the slope of AL(k) over turns, N-IR the slope of the min-max
normalised curve.
"""

_KWARGS_DESCRIPTION = """\
Args:
    profiles (`list[str]`, optional): profile of each persona (who the user is).
    personalities (`list[str]`, optional): personality of each persona (how the user talks), same length.
        Leave both out to use the protocol's persona set (or pass `persona_source=`).
    model_id (`str`): the evaluated model: "embedded", a Hub id, a local folder, or "openai:NAME".
    user_model (`str`): the role-play user model spec (default "embedded").
    judge_model (`str` or `list[str]`): the judge model spec (default "embedded": a smoke-run judge only); a list
        makes a jury (with `judge_preset` / `judge_base_url` one per judge, `jury_aggregate`, `judge_samples`).
    protocol (`str`): "paper" (the authors' settings) or "smoke" (small greedy caps); default "paper" unless
        model_id is "embedded". Any field given explicitly overrides the preset (the run is then "custom").
    turns (`int`): turns per conversation (default: the protocol's, 10 for paper).
    output_dir (`str`): where results/samples files go; re-running resumes (default "runs/aloe-evaluate").
    Any other `aloe_bench.harness.EvalConfig` field (revision, base_url, judge_preset, seed, ...) or
        `aloe_bench.core.backends.BackendOptions` field (batch_size, device, max_concurrency, ...) is accepted.
Returns:
    AL (`list[float]`), AL_avg, IR, N_IR, R2, N_R2 (`float` or None when undefined), intervals (bootstrap 95%),
    judge (`str`), counts (`dict`), results_file (`str`).
Examples:
    >>> aloe = evaluate.load("harness/aloe")
    >>> results = aloe.compute(model_id="embedded", turns=2, max_personas=2)
    >>> sorted(results)[:3]
    ['AL', 'AL_avg', 'IR']
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Aloe(evaluate.Measurement):
    def _info(self):
        return evaluate.MeasurementInfo(
            module_type="measurement",
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"profiles": datasets.Value("string"),
                                        "personalities": datasets.Value("string")}),
            reference_urls=["https://aclanthology.org/2025.coling-main.511/"],
        )

    def compute(self, *, profiles=None, personalities=None, persona_source=None, **kwargs):
        """Run ALOE on the personas given here or with add_batch; with none at all, on those of `persona_source`
        (default: the protocol's persona set)."""
        if profiles is None and personalities is None and getattr(self, "writer", None) is not None:
            return super().compute(**kwargs)  # the personas given with add/add_batch, and only those
        if profiles is None and personalities is None:
            from aloe_bench.core.personas import load_persona_set
            from aloe_bench.harness.protocol import preset

            if persona_source is None:
                persona_source = preset(kwargs.get("protocol"), kwargs.get("model_id", "embedded"))[1]["personas"]
            personas = load_persona_set(persona_source).personas
            profiles = [p.profile for p in personas]
            personalities = [p.personality for p in personas]
            kwargs.setdefault("personas", persona_source)  # recorded as the run's persona source
        return super().compute(profiles=profiles, personalities=personalities, **kwargs)

    def _compute(self, profiles, personalities, model_id="embedded", output_dir="runs/aloe-evaluate", **kwargs):
        from aloe_bench.harness import evaluate_personas

        results = evaluate_personas(profiles, personalities, model=model_id, output_dir=output_dir, **kwargs)
        metrics = results["metrics"]
        return {**{k: metrics[k] for k in ("AL", "AL_avg", "IR", "N_IR", "R2", "N_R2", "intervals")},
                "judge": results["judge"], "counts": results["counts"], "results_file": results["results_file"]}
