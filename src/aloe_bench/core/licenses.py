"""Licences of the models the project names, for cards: generated text is published under its generators' terms."""

from __future__ import annotations

MODEL_LICENSES = {
    "HuggingFaceTB/SmolLM2-135M-Instruct": "apache-2.0",
    "mistralai/Mistral-7B-Instruct-v0.3": "apache-2.0",
    "Qwen/Qwen2-7B-Instruct": "apache-2.0",
    "allenai/OLMo-7B-0724-Instruct-hf": "apache-2.0",
    "meta-llama/Meta-Llama-3-8B-Instruct": "llama3",
}


def model_license(model_id: str | None) -> str | None:
    """The licence id of a known model (`embedded:ORG/NAME` and `openai:NAME` specs included), else None."""
    if not model_id:
        return None
    name = str(model_id).split(":", 1)[1] if str(model_id).startswith(("embedded:", "hf:")) else str(model_id)
    if str(model_id).startswith("openai:") or name.startswith("gpt-"):
        return "openai-terms-of-use"
    return MODEL_LICENSES.get(name.split("@")[0])


def generator_licenses(model_ids) -> tuple[str, list[str]]:
    """(card `license` value, one line per generator naming its licence) for text written by `model_ids`."""
    lines, known = [], set()
    for model_id in dict.fromkeys(m for m in model_ids if m):
        licence = model_license(model_id)
        known.add(licence)
        lines.append(f"`{model_id}`: {licence or 'unknown (see its model card)'}")
    single = next(iter(known)) if len(known) == 1 else None
    return (single if single and single != "openai-terms-of-use" else "other"), lines
