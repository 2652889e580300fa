"""Persona model and persona-set loading, with line-accurate validation of messy input files.

A persona is a profile (who someone is: objective facts that give topics) combined with a
personality (how they talk: traits that shape style). A persona set is a list of such pairs.

Accepted sources (`load_persona_set`):
- `default`: the project's own eval set, shipped in the package (20 profiles x 5 personalities);
- a folder holding a profile pool and a personality pool (the paper's `profile_eval.jsonl` +
  `personality_eval.jsonl`, or this project's `profiles.jsonl` + `personalities.jsonl`): every
  profile x the first `max_personalities` (5) personalities;
- a persona JSONL file (this project's format: `id`, `profile`, `personality`, optional ids);
- `hub:ORG/NAME` or a dataset folder with a `personas` config (the dataset this project publishes).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

from .io import PersonaFileError
from .io import read_jsonl as _read_jsonl


@dataclass(frozen=True)
class PoolItem:
    id: str
    text: str


@dataclass(frozen=True)
class Persona:
    id: str
    profile: str
    personality: str
    profile_id: str | None = None
    personality_id: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PersonaSet:
    name: str
    personas: tuple[Persona, ...]
    source: str

    @property
    def sha256(self) -> str:
        payload = json.dumps([p.to_dict() for p in self.personas], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(payload.encode()).hexdigest()

    def __len__(self) -> int:
        return len(self.personas)

    def __iter__(self):
        return iter(self.personas)

    def subset(self, limit: int | None) -> "PersonaSet":
        if limit is None or limit >= len(self.personas):
            return self
        return PersonaSet(f"{self.name}[:{limit}]", self.personas[:limit], self.source)


def read_jsonl(path: str | Path, repair_glued: bool = True) -> list[tuple[int, object]]:
    """`core.io.read_jsonl` for persona-derived files: the same rules, errors raised as `PersonaFileError`."""
    return _read_jsonl(path, repair_glued, error=PersonaFileError)


def _need_text(value, where: str, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise PersonaFileError(f"{where}: field {field!r} must be a non-empty string")
    return value.strip()


def read_pool(path: str | Path, prefix: str) -> list[PoolItem]:
    """A pool file: lines that are JSON strings (the paper's format) or objects with `text` (and `id`)."""
    path = Path(path)
    items: list[PoolItem] = []
    seen: set[str] = set()
    for index, (number, value) in enumerate(read_jsonl(path), start=1):
        where = f"{path}:{number}"
        if isinstance(value, str):
            item = PoolItem(f"{prefix}{index:03d}", _need_text(value, where, "text"))
        elif isinstance(value, dict):
            text = _need_text(value.get("text"), where, "text")
            item_id = value.get("id", f"{prefix}{index:03d}")
            if not isinstance(item_id, str) or not item_id:
                raise PersonaFileError(f"{where}: field 'id' must be a non-empty string")
            item = PoolItem(item_id, text)
        else:
            raise PersonaFileError(f"{where}: expected a JSON string or an object with 'text', got {type(value).__name__}")
        if item.id in seen:
            raise PersonaFileError(f"{where}: duplicate id {item.id!r}")
        seen.add(item.id)
        items.append(item)
    return items


def _optional_id(value: dict, field: str, where: str) -> str | None:
    item = value.get(field)
    if item is None:
        return None
    if not isinstance(item, str) or not item.strip():
        raise PersonaFileError(f"{where}: field {field!r} must be a non-empty string when given")
    return item


def _personas_from_rows(rows) -> list[Persona]:
    """Personas from `(where, default_id, row)` triples: texts required, ids optional but unique; errors say `where`."""
    personas, seen = [], set()
    for where, default_id, row in rows:
        persona = Persona(
            id=_optional_id(row, "id", where) or default_id,
            profile=_need_text(row.get("profile"), where, "profile"),
            personality=_need_text(row.get("personality"), where, "personality"),
            profile_id=_optional_id(row, "profile_id", where),
            personality_id=_optional_id(row, "personality_id", where),
        )
        if persona.id in seen:
            raise PersonaFileError(f"{where}: duplicate id {persona.id!r}")
        seen.add(persona.id)
        personas.append(persona)
    return personas


def read_persona_file(path: str | Path) -> list[Persona]:
    """This project's persona-set format: one object per line with `profile` and `personality`."""
    path = Path(path)

    def rows():
        for index, (number, value) in enumerate(read_jsonl(path), start=1):
            if not isinstance(value, dict):
                raise PersonaFileError(f"{path}:{number}: expected an object with 'profile' and 'personality'")
            yield f"{path}:{number}", f"persona{index:03d}", value

    return _personas_from_rows(rows())


def combine(profiles: list[PoolItem], personalities: list[PoolItem], max_personalities: int | None = 5) -> list[Persona]:
    """Every profile x the first `max_personalities` personalities, profile-major (the benchmark's order)."""
    chosen = personalities[:max_personalities] if max_personalities else personalities
    return [
        Persona(f"{p.id}__{q.id}", p.text, q.text, p.id, q.id)
        for p in profiles
        for q in chosen
    ]


# ---------------------------------------------------------------------------------------------------
# Sources
# ---------------------------------------------------------------------------------------------------
POOL_NAMES = (
    ("profile_eval.jsonl", "personality_eval.jsonl"),  # the paper's public eval files
    ("profiles.jsonl", "personalities.jsonl"),  # this project's pool folders
    ("eval_profiles.jsonl", "eval_personalities.jsonl"),  # the packaged eval pools
)


def packaged_data(name: str) -> Path:
    return Path(str(resources.files("aloe_bench.core").joinpath("data", name)))


def load_pool_folder(folder: str | Path, max_personalities: int | None = 5) -> list[Persona]:
    folder = Path(folder)
    for profile_name, personality_name in POOL_NAMES:
        if (folder / profile_name).exists() and (folder / personality_name).exists():
            profiles = read_pool(folder / profile_name, "profile")
            personalities = read_pool(folder / personality_name, "personality")
            return combine(profiles, personalities, max_personalities)
    for profile_name, personality_name in POOL_NAMES:
        for have, need in ((profile_name, personality_name), (personality_name, profile_name)):
            if (folder / have).exists():
                raise PersonaFileError(f"{folder}: has {have} but no {need} (a persona folder needs both pools)")
    expected = " or ".join(f"{a} + {b}" for a, b in POOL_NAMES)
    raise PersonaFileError(f"{folder}: no persona pools found (expected {expected}, or a dataset folder with "
                           "README.md and a personas config)")


def load_persona_set(source: str = "default", max_personalities: int | None = 5, split: str = "test") -> PersonaSet:
    """Resolve any accepted persona source (see module docstring) into a `PersonaSet`."""
    if source in (None, "", "default"):
        folder = packaged_data("")
        return PersonaSet("aloe-bench-eval", tuple(load_pool_folder(folder, max_personalities)), "default")
    if source == "paper":  # the authors' eval files, fetched at a pinned commit and checksum-verified
        from . import paper_personas

        folder = paper_personas.ensure_paper_files()
        return PersonaSet("aloe-paper-eval", tuple(load_pool_folder(folder, max_personalities)), paper_personas.describe())
    if source.startswith("hub:"):
        return _load_dataset_personas(source[4:], split, source)
    path = Path(source).expanduser()
    if path.is_dir():
        if (path / "README.md").exists() and (path / "personas").is_dir():
            return _load_dataset_personas(str(path), split, source)
        return PersonaSet(path.name, tuple(load_pool_folder(path, max_personalities)), str(path))
    if path.is_file():
        return PersonaSet(path.stem, tuple(read_persona_file(path)), str(path))
    raise PersonaFileError(f"persona source {source!r}: no such file or folder "
                           "(not 'default', 'paper', 'hub:ORG/NAME', a folder or a .jsonl file)")


def _load_dataset_personas(repo_or_folder: str, split: str, source: str) -> PersonaSet:
    from .dataset_folder import check_dataset_folder, load_dataset_source

    local = Path(repo_or_folder).is_dir()
    if local:  # a folder is checked first, so a broken one is named precisely (file, field) before datasets reads it
        check_dataset_folder(repo_or_folder, {"personas": (split,)}, error=PersonaFileError,
                             columns={"personas": ("profile", "personality")})
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rows = load_dataset_source(repo_or_folder, "personas", split=split)
    except Exception as exc:  # datasets raises many types (ValueError, FileNotFoundError, ArrowInvalid, ...)
        raise PersonaFileError(f"{source}: cannot load config 'personas', split {split!r} "
                               f"({type(exc).__name__}: {str(exc)[:300]})") from None
    personas = _personas_from_rows((f"{source} (personas/{split}, row {number})", f"persona{number:03d}", row)
                                   for number, row in enumerate(rows))
    if not personas:
        raise PersonaFileError(f"{source}: config 'personas', split {split!r} has no rows")
    return PersonaSet(Path(repo_or_folder).name, tuple(personas), source)
