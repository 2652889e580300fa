"""The paper's own eval personas (`--personas paper`), fetched from the authors' public repository.

The two files are downloaded once at a pinned commit, checked against pinned sha256 digests and cached
under the project's cache folder; the texts are never part of this package. `ALOE_PAPER_PERSONAS_URL`
names a mirror (a folder URL that holds both files), for machines that cannot reach GitHub.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

from .embedded import cache_dir
from .io import PersonaFileError, atomic_write_bytes

#: The authors' repository and the commit whose eval files the paper's Table 1 used.
REPOSITORY = "ShujinWu-0814/ALOE"
COMMIT = "d5015c530d6ec4194c0f3062140cd8fad4241df4"
BASE_URL = f"https://raw.githubusercontent.com/{REPOSITORY}/{COMMIT}/datasets"
MIRROR_ENV = "ALOE_PAPER_PERSONAS_URL"
FILES = {
    "profile_eval.jsonl": "3d58a1d36fb2b6a39069ebd5f65b7ac34894f3fbe36a05ac0eb5779c4fde9652",
    "personality_eval.jsonl": "01251b2537c838cf417fad652c692ede14182875b834f821bbc7e8b74dd53cc6",
}
TIMEOUT_S = 30.0


class PaperPersonasError(PersonaFileError):
    """The paper's persona files could not be fetched or failed their checksum."""


def source_url() -> str:
    """The folder URL the files come from: the mirror when set, else the pinned GitHub commit."""
    return (os.environ.get(MIRROR_ENV) or BASE_URL).rstrip("/")


def cache_folder() -> Path:
    return cache_dir() / "paper-personas" / COMMIT[:12]


def _verified(path: Path, digest: str) -> bool:
    return path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == digest


def _download(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:  # noqa: S310 (https or a user's mirror)
            return response.read()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise PaperPersonasError(
            f"--personas paper: cannot download {url} ({reason}); with no network, download the authors' "
            f"datasets/profile_eval.jsonl and personality_eval.jsonl (commit {COMMIT[:12]}) into a folder and "
            f"pass --personas /path/to/that/folder, or set {MIRROR_ENV} to a folder URL that serves them") from None


def ensure_paper_files() -> Path:
    """A folder holding both verified files: the cache if complete, else downloaded now (all or nothing)."""
    folder = cache_folder()
    if all(_verified(folder / name, digest) for name, digest in FILES.items()):
        return folder
    base = source_url()
    fetched: dict[str, bytes] = {}
    for name, digest in FILES.items():
        url = f"{base}/{name}"
        data = _download(url)
        actual = hashlib.sha256(data).hexdigest()
        if actual != digest:
            raise PaperPersonasError(f"--personas paper: {url} has sha256 {actual[:16]}..., expected {digest[:16]}... "
                                     f"(commit {COMMIT[:12]}); refusing it, nothing was cached")
        fetched[name] = data
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in fetched.items():  # each file through a temp file and a rename: never half a file in the cache
        atomic_write_bytes(folder / name, data)
    return folder


def describe() -> str:
    """What a result file records as the source of this persona set."""
    return f"paper: {source_url()} @ {COMMIT[:12]} (sha256 {FILES['profile_eval.jsonl'][:12]}, " \
           f"{FILES['personality_eval.jsonl'][:12]})"
