"""The files of a generation run: `conversations.jsonl` (one finished conversation a line, appended as each ends)
and `generation.json` (models, prompts, pools, settings, counts); reading them back to resume a run or build
the dataset."""

from __future__ import annotations

from pathlib import Path

from aloe_bench.core.io import repair_tail
from aloe_bench.core.io import PersonaFileError
from aloe_bench.core.personas import read_jsonl

CONVERSATIONS_FILE = "conversations.jsonl"
META_FILE = "generation.json"


def drop_torn_tail(path: Path) -> int:
    """Cut a last line that has no newline (a crash mid-append); returns the bytes dropped.

    Records are appended as one line each, newline last, so such a line is a conversation that was never
    fully recorded: it is generated again (from the request cache) instead of blocking the resume.
    """
    return repair_tail(path, "that conversation is generated again")


def load_finished(path: Path) -> dict[str, dict]:
    """Finished conversations by id. A torn last line from a crash is dropped (see `drop_torn_tail`); any
    other unreadable line is an error naming the line."""
    drop_torn_tail(path)
    if not path.exists() or path.stat().st_size == 0:
        return {}
    finished = {}
    for number, value in read_jsonl(path):
        if not isinstance(value, dict) or not isinstance(value.get("id"), str):
            raise PersonaFileError(f"{path}:{number}: expected a conversation object with an 'id'")
        finished[value["id"]] = value
    return finished


def count_conversations(records) -> dict:
    """Conversations, failures, turns and the pair judge's choices over conversation records."""
    records = list(records)
    turns = [t for r in records for t in r["turns"]]
    return {
        "conversations": len(records),
        "failed_conversations": sum(1 for r in records if r.get("error")),
        "turns": len(turns),
        "judge_failures": sum(1 for t in turns if t.get("judge_choice") is None),
        "induction_unlabelled": sum(1 for t in turns if t.get("induction_unlabelled")),
        "judge_picked_preferred": sum(1 for t in turns if t.get("judge_choice") == "preferred"),
        "judge_picked_rejected": sum(1 for t in turns if t.get("judge_choice") == "rejected"),
    }
