"""Model cards and Hub uploads for trained checkpoints.

The card is written by the project (not by the Trainer, whose card names the local base path): the true Hub base
model, the dataset, the recipe, tags, the paper citation, held-out preference numbers and, when an ALOE harness run
exists for the checkpoint, its results as `model-index` eval results. The push folder is built on disk first and
uploaded as it is, in one commit.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from aloe_bench.core.errors import ConfigError, MissingFileError
from aloe_bench.core.eval_results import EVAL_RESULTS_PATH, eval_result_entries, eval_results_yaml
from aloe_bench.core.io import atomic_write_json, atomic_write_text, read_json
from aloe_bench.core.hub_upload import upload_folder_once
from aloe_bench.core.licenses import MODEL_LICENSES
from aloe_bench.core.run_files import find_results_files, read_results

from .common import RECIPE_FILE, TRAINING_INFO

PUSH_DIR = "hub"
EVAL_RESULTS_FILE = "aloe_eval_results.json"
PREFERENCE_EVAL_FILE = "aloe_preference_eval.json"
ONLINE_ROUNDS_FILE = "aloe_rounds.md"  # the rounds section `aloe train online` leaves in its last checkpoint
# Top-level files of a checkpoint that never go to the Hub (optimizer/trainer state, pickles).
NOT_PUSHED = {"training_args.bin", "trainer_state.json", "optimizer.pt", "scheduler.pt", "rng_state.pth"}
KNOWN_LICENSES = MODEL_LICENSES
CITATION = """@inproceedings{wu-etal-2025-aligning,
    title = "Aligning {LLM}s with Individual Preferences via Interaction",
    author = "Wu, Shujin and Fung, May and Qian, Cheng and Kim, Jeonghwan and Hakkani-Tur, Dilek and Ji, Heng",
    booktitle = "Proceedings of the 31st International Conference on Computational Linguistics",
    year = "2025",
}"""
SMALL_JUDGE_CAVEAT = (
    "These ALOE scores were produced with the embedded 135M model as both user simulator and judge. Such a judge "
    "barely separates a tailored reply from a generic one (its expected score over the tokens 1-5 moves within a "
    "few tenths of a point), so the numbers can show that the pipeline runs end to end and flag gross breakage; "
    "they cannot tell whether one model is better personalised than another. Treat differences between rows as "
    "noise unless a real judge (an OpenAI-compatible endpoint) confirms them.")

TEMPLATE = """---
{{ card_data }}
---

# {{ model_name }}

{{ summary }}

## Training

| | |
|---|---|
| Base model | [{{ base_model }}](https://huggingface.co/{{ base_model }}) |
| Stage | {{ stage_text }} |
| Dataset | {{ dataset_text }} |
| Training rows | {{ train_rows }} |
| LoRA | {{ lora }} |
| Throughput | {{ throughput }} |

{% if recipe %}Recipe as run (`{{ recipe_file }}`; the command is recorded in `{{ info_file }}`):

```yaml
{{ recipe }}
```
{% endif %}
{% if preference %}## Held-out preference pairs

{{ preference }}
{% endif %}
{% if aloe_table %}## ALOE evaluation

{{ aloe_table }}
{% endif %}
{% if extra %}{{ extra }}
{% endif %}
## Usage

```python
from transformers import AutoModelForCausalLM, AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained("{{ repo_ref }}")
model = AutoModelForCausalLM.from_pretrained("{{ repo_ref }}")
```

Score it on ALOE with `aloe eval --model {{ repo_ref }}`.

## Citation

```bibtex
{{ citation }}
```
"""


def read_info(checkpoint: str | Path) -> dict:
    path = Path(checkpoint) / TRAINING_INFO
    if not path.exists():
        raise MissingFileError(f"{path}: not an ALOE training checkpoint (no {TRAINING_INFO})")
    return read_json(path)


def find_eval_results(checkpoint: str | Path, source: str | Path | None = None) -> dict | None:
    """The newest harness results for this checkpoint: from `source` (folder or results_*.json) or
    `<checkpoint>/aloe_eval/`, in either layout (flat or `<model name>/`). A results file made for another model
    is an error, not a silent skip."""
    checkpoint = Path(checkpoint).resolve()
    source = Path(source) if source else checkpoint / "aloe_eval"
    files = find_results_files(source)
    if not files:
        if source != checkpoint / "aloe_eval":
            raise MissingFileError(f"{source}: no ALOE results_*.json found")
        return None
    results = read_results(files[-1])  # a RunFileError names the file and line
    if Path(str(results["model"])).resolve() != checkpoint:
        raise ConfigError(f"{files[-1]}: results are for model {results['model']!r}, not for {checkpoint}")
    results["_file"] = str(files[-1])
    return results


def _number_or_na(value, digits: int = 3) -> str:
    """`value` with `digits` decimals, or "n/a" when there is none."""
    return "n/a" if value is None else f"{value:.{digits}f}"


def aloe_table(rows: list[tuple[str, dict]]) -> str:
    """A Table-1-style markdown table: AL at each turn, AL_avg, IR and N_IR per named results dict."""
    turns = max(len(r["metrics"]["AL"]) for _, r in rows)
    head = ["Model", *[f"AL@{k}" for k in range(1, turns + 1)], "AL_avg", "IR", "N_IR"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in rows:
        m = r["metrics"]
        al = [_number_or_na(v, 2) for v in m["AL"]] + [""] * (turns - len(m["AL"]))
        lines.append("| " + " | ".join([name, *al, _number_or_na(m.get("AL_avg")), _number_or_na(m.get("IR"), 4),
                                         _number_or_na(m.get("N_IR"), 4)]) + " |")
    judges = sorted({r["judge"] for _, r in rows})
    counts = rows[0][1].get("counts", {})
    lines += ["", f"Judge: {', '.join(judges)}. Conversations: {counts.get('conversations', '?')}, "
                  f"turns: {counts.get('turns', turns)}; judge failures: "
                  f"{sum(r.get('counts', {}).get('judge_failures', 0) for _, r in rows)}."]
    if any("embedded" in j for j in judges):
        lines += ["", SMALL_JUDGE_CAVEAT]
    return "\n".join(lines)


def preference_table(evaluation: dict) -> str:
    pol, ref, rew = evaluation["policy_raw"], evaluation["reference_raw"], evaluation["policy_rewards"]
    return "\n".join([
        f"{evaluation['pairs']} held-out pairs of the dataset's `test` split, beta = {evaluation['beta']}. The "
        "reference (the model this stage started from) has implicit reward 0 by definition, so both models' raw "
        "log-prob margins log p(chosen) - log p(rejected) are shown too.",
        "",
        "| Model | reward accuracy | mean reward margin | log-prob accuracy | mean log-prob margin |",
        "|---|---|---|---|---|",
        f"| this model | {rew['accuracy']:.3f} | {rew['margin']:+.4f} | {pol['logp_accuracy']:.3f} | "
        f"{pol['logp_margin']:+.3f} |",
        f"| reference | 0 (by definition) | 0 (by definition) | {ref['logp_accuracy']:.3f} | "
        f"{ref['logp_margin']:+.3f} |",
    ])


def _model_index_entries(results: dict, dataset_id: str, repo_id: str | None):
    """Model-index entries on the one benchmark identity, with the number of personas actually evaluated."""
    from aloe_bench.core.eval_results import aloe_eval_results

    return aloe_eval_results(
        results, source_url=f"https://huggingface.co/{repo_id}/blob/main/{EVAL_RESULTS_FILE}" if repo_id else None,
        source_name="aloe-bench harness")


def eval_results_file(results: dict, repo_id: str | None) -> str:
    """`.eval_results/aloe.yaml` for a checkpoint's harness run (`EvalResultEntry` via huggingface_hub)."""
    source = f"https://huggingface.co/{repo_id}/blob/main/{EVAL_RESULTS_FILE}" if repo_id else None
    return eval_results_yaml(eval_result_entries(results, source_url=source,
                                                 source_name="aloe-bench harness" if source else None))


def render_model_card(checkpoint: str | Path, repo_id: str | None = None, eval_results: dict | None = None,
                extra: str | None = None, model_name: str | None = None):
    """Render the model card (a `huggingface_hub.ModelCard`) for a checkpoint from its recorded run info."""
    from huggingface_hub import ModelCard, ModelCardData

    checkpoint = Path(checkpoint)
    info = read_info(checkpoint)
    stage = info["stage"]
    method = {"sft": "SFT", "dpo": "DPO", "kto": "KTO"}.get(stage, stage.upper())
    if stage == "dpo" and "ipo" in (info.get("loss_type") or []):
        method = "IPO"
    dataset = info["dataset"]
    datasets = [dataset] if dataset and not Path(dataset).exists() else []
    model_name = model_name or (repo_id.split("/")[-1] if repo_id else checkpoint.name)
    card_data = ModelCardData(
        base_model=info["base_model"], datasets=datasets or None, library_name="transformers",
        license=KNOWN_LICENSES.get(info["base_model"]), pipeline_tag="text-generation", model_name=model_name,
        tags=["aloe", "personalization", "trl", stage, *(["ipo"] if method == "IPO" else []),
              *(["lora"] if info.get("lora") else [])],
        eval_results=_model_index_entries(eval_results, dataset, repo_id) if eval_results else None,
    )
    if stage == "sft":
        source = info.get("sft_source", "preferred")
        stage_text = f"SFT on the {source} replies" + (f", mixed with {info['mix_dataset']}" if info.get(
            "mix_dataset") else "")
    elif info.get("online_round"):
        stage_text = (f"{method} (beta {info.get('beta')}), round {info['online_round']} of `aloe train online` on the "
                      "policy's own judged conversations (every round below)")
    else:
        stage_text = f"{method} (beta {info.get('beta')}) from `{_card_reference(info['parent_model'])}`"
    stats = info.get("metrics", {}).get("throughput", {})
    recipe = (checkpoint / RECIPE_FILE).read_text().strip() if (checkpoint / RECIPE_FILE).exists() else None
    results_rows = [("this model", eval_results)] if eval_results else []
    return ModelCard.from_template(
        card_data, template_str=TEMPLATE, model_name=model_name,  # to_dict() folds model_name into model-index
        summary=(f"A personalised-alignment fine-tune of {info['base_model']} on ALOE data (the benchmark of "
                 "*Aligning LLMs with Individual Preferences via Interaction*, COLING 2025), trained with "
                 f"aloe-bench and TRL: {method}."),
        base_model=info["base_model"], stage_text=stage_text,
        dataset_text=f"`{_card_reference(dataset)}` (config `{info.get('dataset_config')}`)",
        train_rows=info.get("train_rows", "?"), lora="yes (merged)" if info.get("lora") else "no",
        throughput=(f"{stats.get('tokens_per_second')} tokens/s over {stats.get('steps')} steps "
                    f"({stats.get('input_tokens')} tokens, {stats.get('train_runtime_s')} s)") if stats else "n/a",
        recipe=recipe, recipe_file=RECIPE_FILE, info_file=TRAINING_INFO,
        preference=preference_table(info["preference_eval"]) if info.get("preference_eval") else None,
        aloe_table=aloe_table(results_rows) if results_rows else None,
        extra=extra, repo_ref=repo_id or "path/to/checkpoint", citation=CITATION,
    )


def _card_reference(path_or_id: str) -> str:
    """A dataset/model reference for the card: Hub ids as they are, local paths by their folder name only."""
    return Path(path_or_id).name if path_or_id and Path(path_or_id).exists() else path_or_id


def build_push_folder(checkpoint: str | Path, repo_id: str | None = None, eval_source: str | Path | None = None,
                      extra: str | None = None, model_name: str | None = None) -> Path:
    """Write README.md into the checkpoint and assemble `<checkpoint>/hub/`: exactly the files to upload
    (weights, tokenizer, card, recipe, run info, metrics). Files are hard-linked when possible (no extra disk)."""
    checkpoint = Path(checkpoint)
    results = find_eval_results(checkpoint, eval_source)
    if extra is None and (checkpoint / ONLINE_ROUNDS_FILE).exists():  # the last round of `aloe train online`
        extra = (checkpoint / ONLINE_ROUNDS_FILE).read_text()
    card = render_model_card(checkpoint, repo_id=repo_id, eval_results=results, extra=extra, model_name=model_name)
    card.save(checkpoint / "README.md")
    if results is not None:
        clean = {k: v for k, v in results.items() if not k.startswith("_")}
        atomic_write_json(checkpoint / EVAL_RESULTS_FILE, clean)
        atomic_write_text(checkpoint / EVAL_RESULTS_PATH, eval_results_file(results, repo_id))
    target = checkpoint / PUSH_DIR
    if target.exists():
        shutil.rmtree(target)
    target.mkdir()
    for item in sorted(checkpoint.iterdir()):
        if not item.is_file() or item.name in NOT_PUSHED or item.name.startswith("."):
            continue
        try:
            os.link(item, target / item.name)
        except OSError:
            shutil.copy2(item, target / item.name)
    if results is not None:  # `.eval_results/` is the one dot-folder that goes to the Hub
        (target / EVAL_RESULTS_PATH).parent.mkdir()
        shutil.copy2(checkpoint / EVAL_RESULTS_PATH, target / EVAL_RESULTS_PATH)
    return target


def push_checkpoint(checkpoint: str | Path, repo_id: str, private: bool = False,
                    eval_source: str | Path | None = None) -> str:
    """Build the push folder and upload it in one commit (`HF_TOKEN` from the environment); return the commit URL."""
    if repo_id.count("/") != 1:
        raise ConfigError(f"--push_to_hub needs ORG/NAME, got {repo_id!r}")
    folder = build_push_folder(checkpoint, repo_id=repo_id, eval_source=eval_source)
    return upload_folder_once(folder, repo_id, repo_type="model", private=private,
                              token=os.environ.get("HF_TOKEN") or None,
                              commit_message=f"Upload ALOE {read_info(checkpoint)['stage']} checkpoint")
