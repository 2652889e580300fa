"""The evaluate module's Space page: personas in, ALOE metrics out (our own Gradio Blocks; no gr.inputs).

The module comes from the Hub id in `SPACE_ID` when running as a Space, else from the script beside this file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import evaluate
import gradio as gr

HERE = Path(__file__).resolve().parent
SCRIPT = next((p for p in sorted(HERE.glob("*.py")) if p.name != "app.py"), HERE / "aloe.py")
MODULE_ID = os.environ.get("SPACE_ID") or str(SCRIPT)


def load_module():
    return evaluate.load(MODULE_ID, module_type="measurement")


def visitor_model_refusal(model_id: str, model_info=None) -> str | None:
    """Why a public Space (SPACE_ID set) will not evaluate `model_id` for a visitor; None when it will.

    The owner's secrets must never reach a model a visitor chose: endpoint specs would spend OPENAI_API_KEY and
    local folders are the Space's own files, so only Hub ids are accepted, and only when the Hub serves them to
    anyone (checked with no token at all), so HF_TOKEN cannot open a gated or private model for a visitor."""
    if not os.environ.get("SPACE_ID") or model_id == "embedded":
        return None
    if os.environ.get("ALOE_SPACE_ALLOW_MODEL_CHANGE", "").strip().lower() not in ("1", "true", "yes"):
        return "this Space evaluates the embedded model only (ALOE_SPACE_ALLOW_MODEL_CHANGE is off)"
    if model_id.startswith(("openai:", ".", "/", "~")) or model_id.count("/") != 1 or Path(model_id).exists():
        return f"{model_id!r}: visitors may choose a public Hub model (ORG/NAME) only"
    if model_info is None:
        from huggingface_hub import model_info
    try:
        info = model_info(model_id, token=False)
    except Exception as exc:  # not found, gated for anonymous users, or the Hub is unreachable
        return f"{model_id!r} is not a public Hub model ({type(exc).__name__})"
    if getattr(info, "private", False) or getattr(info, "gated", False):
        return f"{model_id!r} is private or gated: this Space only evaluates public models for visitors"
    return None


def run(rows: str, model_id: str, turns: int, max_new_tokens: int):
    """Parse `profile | personality` lines and evaluate them; returns (metrics JSON, status)."""
    profiles, personalities = [], []
    for n, line in enumerate((rows or "").splitlines(), 1):
        if not line.strip():
            continue
        if "|" not in line:
            return None, f"⚠️ line {n}: write `profile | personality`"
        profile, personality = (part.strip() for part in line.split("|", 1))
        profiles.append(profile)
        personalities.append(personality)
    if not profiles:
        return None, "⚠️ give at least one persona line"
    refusal = visitor_model_refusal((model_id or "embedded").strip())
    if refusal:
        return None, f"⚠️ {refusal}"
    module = load_module()
    out = module.compute(profiles=profiles, personalities=personalities, model_id=model_id or "embedded",
                         turns=int(turns), reply_max_new_tokens=int(max_new_tokens),
                         user_max_new_tokens=int(max_new_tokens), progress=False, bootstrap_resamples=100,
                         output_dir=str(Path(os.environ.get("TMPDIR", "/tmp")) / "aloe-evaluate-space"))
    return json.loads(json.dumps(out, default=str)), f"Evaluated {len(profiles)} persona(s) x {int(turns)} turns."


def build_demo() -> gr.Blocks:
    with gr.Blocks(title="ALOE evaluate module") as demo:
        gr.Markdown(f"# ALOE measurement\n`evaluate.load(\"{os.environ.get('SPACE_ID', 'ORG/NAME')}\")`: "
                    "one persona per line as `profile | personality`; the embedded judge is for smoke runs only.")
        rows = gr.Textbox(label="Personas (profile | personality)", lines=4, elem_id="personas",
                          value="A ferry captain in Bergen who builds model ships. | Gruff, brief, secretly sentimental.")
        with gr.Row():
            model = gr.Textbox("embedded", label="Model", elem_id="model", interactive=not os.environ.get("SPACE_ID"))
            turns = gr.Slider(1, 10, value=2, step=1, label="Turns", elem_id="turns")
            tokens = gr.Slider(8, 256, value=32, step=8, label="Max new tokens", elem_id="tokens")
        go = gr.Button("Evaluate", variant="primary", elem_id="evaluate")
        status = gr.Markdown("", elem_id="status")
        metrics = gr.JSON(label="Metrics", elem_id="metrics")
        go.click(run, [rows, model, turns, tokens], [metrics, status], api_name="evaluate", concurrency_limit=1)
    return demo


if __name__ == "__main__":
    build_demo().launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
