"""JSON files written whole: through a temp file and a rename, so a reader (or a crash) never sees half a file."""

from __future__ import annotations

import json
import os
from pathlib import Path


def atomic_write_json(path: str | Path, data) -> None:
    """Write `data` as indented JSON to `path` via a temp file in the same folder and `os.replace`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def emit_report(report: dict, output: str | Path | None = None) -> None:
    """Print a benchmark's JSON report and, with `output`, write the same text there (atomically)."""
    print(json.dumps(report, indent=2, ensure_ascii=False))
    if output:
        atomic_write_json(output, report)
