"""Checking a Hub dataset folder (`<config>/<split>-*.parquet` + README.md whose YAML declares `configs`).

`check_dataset_folder` reads the card's metadata (`huggingface_hub.DatasetCard.load(...).data`, with `data_files`
validated and normalised by `datasets`' own helpers) and every parquet file of the configs asked for, and
raises one clear error naming the file and the field (or line) that is wrong: a missing or malformed
README, a card without `configs`, a config or split that is not declared, a `data_files` path that
matches nothing, a file that is not parquet, a missing column or a column of the wrong type. Readers
(persona sets from a dataset folder) and `aloe dataset push` call it before handing the folder on.
"""

from __future__ import annotations

from pathlib import Path

import yaml


def _card_data(readme: Path, error) -> dict:
    """The card's metadata as `huggingface_hub.DatasetCard.load(readme).data`, with errors that name the file and line.

    The checks before parsing exist because the card parser reads a file without front matter as an empty card;
    a dataset folder needs one.
    """
    from huggingface_hub import DatasetCard

    if not readme.is_file():
        raise error(f"{readme}: missing (a dataset folder needs a card whose YAML declares its configs)")
    try:
        text = readme.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{readme}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    lines = text.split("\n")
    if not lines or lines[0].strip() != "---":
        raise error(f"{readme}:1: no YAML front matter (the card must start with a '---' line)")
    if not any(line.strip() == "---" for line in lines[1:]):
        raise error(f"{readme}: the YAML front matter opened on line 1 is never closed with '---'")
    try:
        data = DatasetCard.load(readme).data
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 2}" if mark is not None else ""
        raise error(f"{readme}{line}: invalid YAML front matter ({getattr(exc, 'problem', None) or exc})") from None
    except ValueError as exc:  # the metadata block is not a mapping
        raise error(f"{readme}: the YAML front matter must be a mapping ({exc})") from None
    return data.to_dict()


def _data_files(value, where: str, error) -> dict[str, list[str]]:
    """`data_files` in any of the card's forms -> {split: [path patterns]}, validated and normalised by `datasets`."""
    from datasets.data_files import sanitize_patterns
    from datasets.utils.metadata import MetadataConfigs

    if not value or (isinstance(value, list) and not all(isinstance(v, (str, dict)) for v in value)):
        raise error(f"{where}.data_files: expected a path, a list of paths or a list of {{split, path}}")
    for j, entry in enumerate(value if isinstance(value, list) else []):
        if isinstance(entry, dict):
            paths = entry.get("path")
            if not isinstance(entry.get("split"), str) or not entry["split"]:
                raise error(f"{where}.data_files[{j}].split: must be a non-empty string")
            if isinstance(paths, str):
                paths = [paths]
            if not isinstance(paths, list) or not paths or not all(isinstance(p, str) and p for p in paths):
                raise error(f"{where}.data_files[{j}].path: must be a path or a list of paths")
    try:
        MetadataConfigs._raise_if_data_files_field_not_valid({"data_files": value})
        return {str(split): list(paths) for split, paths in sanitize_patterns(value).items()}
    except (ValueError, TypeError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise error(f"{where}.data_files: not valid for datasets ({first})") from None


def read_card_configs(folder: str | Path, error=ValueError) -> dict[str, dict[str, list[str]]]:
    """`{config_name: {split: [path patterns]}}` from the folder's README.md metadata (`DatasetCard.load`)."""
    readme = Path(folder) / "README.md"
    front = _card_data(readme, error)
    configs = front.get("configs")
    if configs is None:
        raise error(f"{readme}: the YAML front matter has no 'configs' (config_name + data_files per config)")
    if not isinstance(configs, list) or not configs:
        raise error(f"{readme}: field 'configs' must be a non-empty list")
    out: dict[str, dict[str, list[str]]] = {}
    for i, config in enumerate(configs):
        where = f"{readme}: configs[{i}]"
        if not isinstance(config, dict):
            raise error(f"{where}: expected a mapping with 'config_name' and 'data_files'")
        name = config.get("config_name")
        if not isinstance(name, str) or not name:
            raise error(f"{where}.config_name: must be a non-empty string")
        if name in out:
            raise error(f"{where}.config_name: {name!r} is declared twice")
        if "data_files" not in config:
            raise error(f"{where} ({name}): field 'data_files' is missing")
        out[name] = _data_files(config["data_files"], f"{where} ({name})", error)
    return out


def _same_type(actual, expected) -> bool:
    """Arrow types equal up to string/large_string and the name of a list's child field (item / element)."""
    def norm(t) -> str:
        return str(t).replace("large_", "").replace("<element: ", "<item: ")
    return norm(actual) == norm(expected)


def check_parquet(path: Path, config: str, error, read_rows: bool, columns: tuple[str, ...] | None = None) -> int:
    """Open one parquet file and check its columns against the config's schema: every column must be there
    (or only those named in `columns`), and each one present must have the schema's type. Returns its rows."""
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ... for a damaged file
        raise error(f"{path}: not a readable parquet file ({type(exc).__name__}: {str(exc)[:200]})") from None
    actual = parquet.schema_arrow
    from . import schema

    features = schema.CONFIGS.get(config)
    if features is not None:
        for field in features.arrow_schema:
            if columns is not None and field.name not in columns and field.name not in actual.names:
                continue  # an optional column may be absent, but when present it must have the schema's type
            if field.name not in actual.names:
                raise error(f"{path}: field {field.name!r} is missing (config {config!r} has columns "
                            f"{', '.join(features)})")
            if not _same_type(actual.field(field.name).type, field.type):
                raise error(f"{path}: field {field.name!r} has type {actual.field(field.name).type}, "
                            f"config {config!r} needs {field.type}")
    if read_rows:
        try:
            parquet.read()
        except Exception as exc:
            raise error(f"{path}: rows cannot be read ({type(exc).__name__}: {str(exc)[:200]})") from None
    return parquet.metadata.num_rows


def check_dataset_folder(folder: str | Path, required: dict[str, tuple[str, ...]], error=ValueError,
                         read_rows: bool = False, columns: dict[str, tuple[str, ...]] | None = None,
                         ) -> dict[str, dict[str, int]]:
    """Check the configs in `required` (each with the splits it must have) and their parquet files.

    Each file must carry every column of the config's schema (or only those named in `columns[config]`),
    each present column with the schema's type; `read_rows` also reads the rows (what a push needs).
    Returns the row count per config and split.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise error(f"{folder}: not a folder")
    configs = read_card_configs(folder, error)
    readme = folder / "README.md"
    counts: dict[str, dict[str, int]] = {}
    root = folder.resolve()
    for name, splits in required.items():
        if name not in configs:
            raise error(f"{readme}: field 'configs' has no config_name {name!r} (declared: {', '.join(configs)})")
        missing = [s for s in splits if s not in configs[name]]
        if missing:
            raise error(f"{readme}: config {name!r} declares no split {missing[0]!r} "
                        f"(declared: {', '.join(configs[name])})")
        counts[name] = {}
        for split, patterns in configs[name].items():
            files = []
            for pattern in patterns:
                if Path(pattern).is_absolute() or ".." in Path(pattern).parts or "://" in pattern:
                    raise error(f"{readme}: config {name!r} split {split!r}: data_files path {pattern!r} must be "
                                "relative to the folder")
                matched = sorted(p for p in folder.glob(pattern) if p.is_file() and p.resolve().is_relative_to(root))
                if not matched:
                    raise error(f"{readme}: config {name!r} split {split!r}: data_files path {pattern!r} "
                                "matches no file")
                files += matched
            needed = (columns or {}).get(name)
            counts[name][split] = sum(check_parquet(f, name, error, read_rows, needed) for f in files)
    return counts


def _folder_cache_dir(folder: Path) -> str:
    """A `datasets` cache folder keyed by the folder's resolved path and its files' names, sizes and mtimes.

    `datasets` (5.x) keys the cache of a local dataset folder by its base name and config only: a folder that
    was rebuilt in place, or another folder with the same name, is served the first one's stale rows (and
    everything mapped from them). A content-addressed cache folder gives each version its own cache.
    """
    import hashlib

    from datasets import config as datasets_config

    digest = hashlib.sha256(str(folder.resolve()).encode())
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        stat = path.stat()
        digest.update(f"\n{path.relative_to(folder)}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    return str(Path(datasets_config.HF_DATASETS_CACHE) / "aloe-local" / digest.hexdigest()[:20])


def load_dataset_source(source: str, config: str | None = None, **kwargs):
    """`datasets.load_dataset` for a Hub dataset id or a local folder laid out like one; a local folder always
    reads its current files (see `_folder_cache_dir`)."""
    from datasets import load_dataset

    folder = Path(source)
    if folder.is_dir() and "cache_dir" not in kwargs:
        kwargs["cache_dir"] = _folder_cache_dir(folder)
    return load_dataset(source, config, **kwargs)
