"""Human ratings of replies: one JSONL record per rating, appended durably; the last rating of a row wins.

A record is `{"rater", "run_id", "persona_id", "turn", "score", "time"}` (score 1-5, or null for a skip).
The Space's Rate tab writes them (one file per rater), `aloe judge agree` and `aloe judge push-ratings` read them.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

from .errors import AloeError

FIELDS = ("rater", "run_id", "persona_id", "turn", "score", "time")
RATER_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RatingsError(AloeError, ValueError):
    """A ratings file is malformed; the message names the file and line."""


def check_rater(rater: str) -> str:
    rater = (rater or "").strip()
    if not RATER_ID.match(rater):
        raise RatingsError(f"rater id {rater!r}: use 1-64 letters, digits, '.', '_' or '-'")
    return rater


def rating_record(rater: str, run_id: str, persona_id: str, turn: int, score: int | None) -> dict:
    if score is not None and (isinstance(score, bool) or score not in (1, 2, 3, 4, 5)):
        raise RatingsError(f"score {score!r}: a rating is an integer 1-5 (or null for a skip)")
    return {"rater": check_rater(rater), "run_id": str(run_id), "persona_id": str(persona_id), "turn": int(turn),
            "score": score, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def append_rating(path: str | Path, record: dict) -> None:
    """Append one record and fsync it, so a rating the page confirmed survives a crash."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def read_ratings(path: str | Path) -> list[dict]:
    """Every record of a ratings file, in order; a torn last line (crash mid-write) is ignored."""
    path = Path(path)
    if not path.is_file():
        raise RatingsError(f"{path}: no such ratings file")
    records = []
    lines = path.read_text(encoding="utf-8").split("\n")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            if number == len(lines):  # no newline after it: torn by a crash
                break
            raise RatingsError(f"{path}:{number}: invalid JSON ({exc.msg})") from None
        missing = [f for f in FIELDS if not isinstance(record, dict) or f not in record]
        if missing:
            raise RatingsError(f"{path}:{number}: missing field(s) {', '.join(missing)}")
        score = record["score"]
        if score is not None and (isinstance(score, bool) or score not in (1, 2, 3, 4, 5)):
            raise RatingsError(f"{path}:{number}: field 'score' must be 1-5 or null, got {score!r}")
        records.append(record)
    return records


def latest_ratings(records: list[dict]) -> dict[tuple, dict]:
    """{(rater, run_id, persona_id, turn): last record}: re-rating a row replaces the earlier rating."""
    out: dict[tuple, dict] = {}
    for record in records:
        out[(record["rater"], record["run_id"], record["persona_id"], int(record["turn"]))] = record
    return out


def is_ratings_file(path: str | Path) -> bool:
    """Whether the first record of a JSONL file looks like a rating (has a `rater` field)."""
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    record = json.loads(line)
                    return isinstance(record, dict) and "rater" in record and "reply" not in record
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return False
    return False
