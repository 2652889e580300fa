"""Read the ALOE authors' released conversations (`--format aloe-release`) into this project's records.

Their file has one JSON object per line: `profile`, `personality`, and `conversations`, a list of turns
`{user, assistant: {preferred, rejected}, chosen, inferred_profile, inferred_personality}`. In that data
`preferred` is already the reply their pair judge picked, and `chosen` names the reply the conversation
went on with. So each turn becomes one of our turns with `judge_choice = "preferred"` and
`continued_with = chosen`: SFT then trains each turn's preferred reply on the history actually taken, and
DPO pairs preferred over rejected on that same history (see `dataset.path_rows`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from aloe_bench.core.io import PersonaFileError
from aloe_bench.core.personas import read_jsonl

FORMATS = ("aloe", "aloe-release")
RELEASE_FILE = "conversations.jsonl"


def _persona_text(value, where: str, name: str) -> str:
    """Their profile/personality lines were read raw from a JSONL of strings, so a value may be a JSON literal."""
    if not isinstance(value, str) or not value.strip():
        raise PersonaFileError(f"{where}: field {name!r} is missing or not a non-empty string")
    text = value.strip()
    if text.startswith('"') and text.endswith('"'):
        try:
            decoded = json.loads(text)
        except json.JSONDecodeError:
            decoded = None
        if isinstance(decoded, str) and decoded.strip():
            text = decoded.strip()
    return text


def _required_text(value, where: str) -> str:
    """`value`, which must be a non-empty string."""
    if not isinstance(value, str) or not value.strip():
        raise PersonaFileError(f"{where}: must be a non-empty string")
    return value


def _first_rejected_reply(value, where: str) -> str:
    """One rejected reply; the authors' DPO script also accepts a list (it samples one): we take the first."""
    if isinstance(value, list):
        if not value:
            raise PersonaFileError(f"{where}: an empty list of rejected replies")
        return _required_text(value[0], f"{where}[0]")
    return _required_text(value, where)


def _optional_text(value, where: str) -> str | None:
    """`value`, which must be a string or None."""
    if value is None or isinstance(value, str):
        return value
    raise PersonaFileError(f"{where}: must be a string or null, got {type(value).__name__}")


def release_record(value, where: str, conversation_id: str) -> dict:
    """One line of the release -> one conversation record of `training/dataset.py`; errors name file:line and field."""
    if not isinstance(value, dict):
        raise PersonaFileError(f"{where}: expected a conversation object, got {type(value).__name__}")
    profile = _persona_text(value.get("profile"), where, "profile")
    personality = _persona_text(value.get("personality"), where, "personality")
    turns_in = value.get("conversations")
    if not isinstance(turns_in, list) or not turns_in:
        raise PersonaFileError(f"{where}: field 'conversations' is missing or not a non-empty list")
    turns = []
    for k, turn in enumerate(turns_in):
        at = f"{where}: conversations[{k}]"
        if not isinstance(turn, dict):
            raise PersonaFileError(f"{at}: expected an object, got {type(turn).__name__}")
        assistant = turn.get("assistant")
        if not isinstance(assistant, dict):
            raise PersonaFileError(f"{at}: field 'assistant' must be an object with 'preferred' and 'rejected'")
        chosen = turn.get("chosen")
        if chosen not in ("preferred", "rejected"):
            raise PersonaFileError(f"{at}: field 'chosen' must be 'preferred' or 'rejected', got {chosen!r}")
        turns.append({
            "turn": k + 1,
            "user_message": _required_text(turn.get("user"), f"{at}.user"),
            "revealed_profile": _optional_text(turn.get("inferred_profile"), f"{at}.inferred_profile"),
            "revealed_personality": _optional_text(turn.get("inferred_personality"), f"{at}.inferred_personality"),
            "preferred": _required_text(assistant.get("preferred"), f"{at}.assistant.preferred"),
            "rejected": _first_rejected_reply(assistant.get("rejected"), f"{at}.assistant.rejected"),
            "judge_choice": "preferred",  # the release's `preferred` is its pair judge's pick by construction
            "continued_with": chosen,
        })
    persona_id = "release-" + hashlib.sha256(f"{profile}\n{personality}".encode()).hexdigest()[:12]
    return {"id": conversation_id, "persona_id": persona_id, "profile": profile, "personality": personality,
            "turns": turns, "models": json.dumps({"source": "aloe-release"}), "prompt_sha256": None, "seed": 0,
            "error": None}


def read_release(path: str | Path) -> list[dict]:
    """Every line of the authors' conversations file as a record; the first bad line stops with file:line."""
    path = Path(path)
    if path.is_dir():
        path = path / RELEASE_FILE
    records = []
    for number, value in read_jsonl(path):
        record = release_record(value, f"{path}:{number}", f"{path.stem}-{number:06d}")
        record["_line"] = number
        records.append(record)
    if not records:
        raise PersonaFileError(f"{path}: no conversations")
    return records
