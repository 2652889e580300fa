"""A small finished run on disk (default personas) for the Rate tab's tests."""

from __future__ import annotations

import json

from aloe_bench.core.personas import load_persona_set

RUN_ID = "20260101T000000"


def write_run(folder, personas=2, turns=3, model="secret-model-name"):
    folder.mkdir(parents=True, exist_ok=True)
    ids = [p.id for p in load_persona_set("default")][:personas]
    rows = [{"persona_id": pid, "turn": t, "user_message": f"message {t} of {pid}", "reply": f"REPLY-{pid}-{t} text",
             "score": 4.75, "judge_raw": "JUDGE-SAID-4", "error": None} for pid in ids for t in range(1, turns + 1)]
    with open(folder / f"samples_{RUN_ID}.jsonl", "w") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    (folder / f"results_{RUN_ID}.json").write_text(json.dumps({
        "run_id": RUN_ID, "model": model, "judge": "JUDGE-LABEL", "created": "2026-01-01T00:00:00Z",
        "config": {"run": {"personas": "default", "max_personalities": 5}}}))
    return rows
