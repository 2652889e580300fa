"""Finished runs on disk for the Runs tab's tests: two models on the same personas, rows with every optional part
(per-criterion scores, per-judge records, simulator flags, failures)."""

from __future__ import annotations

import json

PERSONAS = ("evp01__evq01", "evp02__evq02")


def row(persona: str, turn: int, score: float | None, model: str, **more) -> dict:
    return {"persona_id": persona, "profile_id": persona[:5], "personality_id": persona[7:], "turn": turn,
            "user_message": f"USER-{persona}-{turn}", "reply": f"REPLY-{model}-{persona}-{turn}", "error": None,
            "score": score, "judge_raw": f"RAW-{model}-{turn}", "judge_distribution": None, "judge_error": None,
            "judge_attempts": 1, **more}


def write_run(folder, run_id: str, model: str, rows: list[dict], created: str = "2026-12-01T00:00:00Z") -> None:
    """`folder/<model>/results_<run id>.json` and its samples log, as `aloe eval` writes them."""
    out = folder / model.replace("/", "__")
    out.mkdir(parents=True, exist_ok=True)
    with open(out / f"samples_{run_id}.jsonl", "w") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
    scores = [r["score"] for r in rows if r["score"] is not None]
    (out / f"results_{run_id}.json").write_text(json.dumps({
        "run_id": run_id, "model": model, "judge": "JUDGE (criteria, text)", "created": created,
        "protocol": "custom", "fingerprint": f"fp{run_id}",
        "metrics": {"AL": [3.0, 4.0], "AL_avg": sum(scores) / len(scores), "IR": 0.5, "N_IR": 1.0,
                    "AL_style": [3.0, 4.0], "intervals": {"AL_avg": [2.5, 4.5]}},
        "counts": {"conversations": 2, "turns": 2, "rows": len(rows), "scored": len(scores)},
        "simulator": {"overall": {"leaks": 1, "role_breaks": 0}},
        "files": {"samples": f"{out.name}/samples_{run_id}.jsonl"},
        "config": {"run": {"personas": "default", "max_personalities": 5}}}))


def write_two_runs(folder) -> None:
    """Run A (`base/model`): criteria, a jury with one failing judge, a leak flag; run B (`tuned/model`): plain
    scores, a judge failure on turn 2, and only the first persona."""
    a = [row(PERSONAS[0], 1, 3.0, "A", criteria_scores={"style": 2.0, "content": 4.0, "human": 3.0},
             judges=[{"judge": 1, "name": "judge-one", "sample": 0, "score": 3.0, "error": None, "raw": "ONE-SAID-3"},
                     {"judge": 2, "name": "judge-two", "sample": 0, "score": None,
                      "error": "no integer in the answer", "raw": "blah"}],
             simulator={"leak": True, "role_break": False}),
         row(PERSONAS[0], 2, 4.0, "A", criteria_scores={"style": 4.0, "content": 4.0, "human": 4.0}),
         row(PERSONAS[1], 1, 2.0, "A"), row(PERSONAS[1], 2, 5.0, "A")]
    b = [row(PERSONAS[0], 1, 5.0, "B"), row(PERSONAS[0], 2, None, "B", judge_error="JUDGE-TIMEOUT")]
    write_run(folder, "20261201T000000", "base/model", a)
    write_run(folder, "20261202T000000", "tuned/model", b, created="2026-12-02T00:00:00Z")
