"""Build (and push) the Hub dataset repo folder from generated conversations.

The folder is exactly what gets uploaded: `<config>/<split>-00000-of-00001.parquet` for the configs
`personas`, `conversations`, `sft` and `dpo` (Features from `aloe_bench.core.schema`), plus a dataset
card whose YAML declares the configs. It is built in a temporary sibling folder and renamed into
place, so a failed build leaves nothing half-written.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from aloe_bench.core import schema
from aloe_bench.core.errors import AloeError, ConfigError
from aloe_bench.core.eval_results import benchmark_eval_yaml
from aloe_bench.core.dataset_folder import check_dataset_folder, load_dataset_source
from aloe_bench.core.io import PersonaFileError, atomic_write_text
from aloe_bench.core.personas import load_persona_set, read_jsonl

from .generated_files import CONVERSATIONS_FILE, META_FILE, count_conversations

SPLITS = {"personas": ("train", "test"), "conversations": ("train",), "sft": ("train", "test"),
          "dpo": ("train", "test")}
DEFAULT_CONFIG = "dpo"
EVAL_FILE = "eval.yaml"  # makes the Hub treat the dataset as the ALOE benchmark (its personas/test split)


class DatasetBuildError(AloeError, ValueError):
    """The dataset could not be built or pushed; the message says what and where."""


@dataclass
class BuildConfig:
    """`aloe dataset build`: one generation folder (or conversations.jsonl) -> one Hub dataset folder."""

    conversations: str = field(default="data/generated", metadata={
        "help": "Folder written by `aloe generate` (or its conversations.jsonl)."})
    output_dir: str = field(default="data/aloe-preference", metadata={"help": "The dataset repo folder to write."})
    test_fraction: float = field(default=0.1, metadata={
        "help": "Share of conversations held out for the sft/dpo test split (at least one when there are two)."})
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing output folder."})
    pretty_name: str = field(default="ALOE persona preference trees", metadata={"help": "Card title."})
    license: str = field(default="apache-2.0", metadata={"help": "Card license."})
    format: str = field(default="aloe", metadata={
        "choices": ["aloe", "aloe-release"], "help": "Input format: aloe (written by `aloe generate`) or aloe-release (the ALOE authors' "
                "datasets/conversations.jsonl)."})

    def __post_init__(self):
        if not 0.0 <= self.test_fraction < 1.0:
            raise ConfigError(f"test_fraction must be in [0, 1), got {self.test_fraction}")
        if self.format not in ("aloe", "aloe-release"):
            raise ConfigError(f"format must be 'aloe' or 'aloe-release', got {self.format!r}")


# ---------------------------------------------------------------------------------------------------
# Reading and validating conversations
# ---------------------------------------------------------------------------------------------------
_TEXT = (str,)
_CONV_FIELDS = {"id": _TEXT, "persona_id": _TEXT, "profile": _TEXT, "personality": _TEXT, "turns": (list,)}
_TURN_FIELDS = {"turn": (int,), "user_message": _TEXT, "preferred": _TEXT, "rejected": _TEXT,
                "continued_with": _TEXT}
# Optional fields: absent or null, else of this type (they become string / int64 columns of the dataset).
_CONV_OPTIONAL = {"profile_id": _TEXT, "personality_id": _TEXT, "error": _TEXT, "seed": (int,),
                  "models": (str, dict), "prompt_sha256": (str, dict)}
_TURN_OPTIONAL = {name: _TEXT for name in schema.TURN if name not in _TURN_FIELDS}
_INT64 = (-(2 ** 63), 2 ** 63 - 1)


def _check_optional_fields(value: dict, fields: dict, where: str) -> None:
    """Each of `fields` that `value` holds has one of its allowed types (integers within int64)."""
    for name, types in fields.items():
        item = value.get(name)
        if item is None:
            continue
        if not isinstance(item, types) or isinstance(item, bool):
            kinds = " or ".join("object" if t is dict else t.__name__ for t in types)
            raise PersonaFileError(f"{where}: field {name!r} must be null or a {kinds}, got {type(item).__name__}")
        if isinstance(item, int) and not _INT64[0] <= item <= _INT64[1]:
            raise PersonaFileError(f"{where}: field {name!r} = {item} does not fit in int64")


def read_conversations(path: str | Path) -> list[dict]:
    """Conversation records, each checked field by field; errors name the file, line and field."""
    path = Path(path)
    if path.is_dir():
        path = path / CONVERSATIONS_FILE
    records, seen = [], {}
    for number, value in read_jsonl(path):
        where = f"{path}:{number}"
        if not isinstance(value, dict):
            raise PersonaFileError(f"{where}: expected a conversation object, got {type(value).__name__}")
        for name, types in _CONV_FIELDS.items():
            if not isinstance(value.get(name), types) or (types is _TEXT and not value[name].strip()):
                raise PersonaFileError(f"{where}: field {name!r} is missing or not a non-empty {types[0].__name__}")
        _check_optional_fields(value, _CONV_OPTIONAL, where)
        if value["id"] in seen:
            raise PersonaFileError(f"{where}: duplicate conversation id {value['id']!r} (first at line {seen[value['id']]})")
        seen[value["id"]] = number
        for k, turn in enumerate(value["turns"]):
            at = f"{where}: turns[{k}]"
            if not isinstance(turn, dict):
                raise PersonaFileError(f"{at}: expected an object")
            for name, types in _TURN_FIELDS.items():
                if not isinstance(turn.get(name), types) or isinstance(turn.get(name), bool):
                    raise PersonaFileError(f"{at}: field {name!r} is missing or not a {types[0].__name__}")
            _check_optional_fields(turn, _TURN_OPTIONAL, at)
            if turn["turn"] != k + 1:
                raise PersonaFileError(f"{at}: turn number {turn['turn']} out of order (expected {k + 1})")
            for name in ("judge_choice", "continued_with"):
                if turn.get(name) not in (None, "preferred", "rejected") or (name == "continued_with" and turn[name] is None):
                    raise PersonaFileError(f"{at}: field {name!r} must be 'preferred' or 'rejected', got {turn.get(name)!r}")
        value["_line"] = number
        records.append(value)
    return records


def read_meta(path: Path) -> dict | None:
    """The generation metadata next to the conversations (None when absent); a bad file names the field."""
    if not path.exists():
        return None
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise DatasetBuildError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise DatasetBuildError(f"{path}:{exc.lineno}: malformed JSON at column {exc.colno}: {exc.msg}") from None
    if not isinstance(meta, dict):
        raise DatasetBuildError(f"{path}: expected a JSON object, got {type(meta).__name__}")
    for name in ("models", "resolved", "settings", "prompts", "pools"):
        if not isinstance(meta.get(name, {}), dict):
            raise DatasetBuildError(f"{path}: field {name!r} must be an object")
    for group in ("models", "pools"):
        for key, item in meta.get(group, {}).items():
            if not isinstance(item, dict):
                raise DatasetBuildError(f"{path}: field {group}.{key} must be an object")
            if group == "models" and not isinstance(item.get("spec", {}), dict):
                raise DatasetBuildError(f"{path}: field models.{key}.spec must be an object")
            if group == "pools" and not isinstance(item.get("grown") or {}, dict):
                raise DatasetBuildError(f"{path}: field pools.{key}.grown must be an object")
    if not isinstance(meta.get("prompts", {}).get("sha256", {}), dict):
        raise DatasetBuildError(f"{path}: field prompts.sha256 must be an object")
    return meta


def split_of(conversation_id: str, ids: list[str], test_fraction: float) -> str:
    """Deterministic split by conversation: the ids with the smallest hashes go to `test`."""
    if test_fraction <= 0 or len(ids) < 2:
        return "train"
    n_test = max(1, round(test_fraction * len(ids)))
    ranked = sorted(ids, key=lambda i: hashlib.sha256(i.encode()).hexdigest())
    return "test" if conversation_id in ranked[:n_test] else "train"


# ---------------------------------------------------------------------------------------------------
# Rows per config
# ---------------------------------------------------------------------------------------------------
def conversation_row(record: dict) -> dict:
    turns = [{k: t.get(k) for k in schema.TURN} for t in record["turns"]]
    return {"id": record["id"], "persona_id": record["persona_id"], "profile": record["profile"],
            "personality": record["personality"], "turns": turns,
            "models": record.get("models") if isinstance(record.get("models"), str) else json.dumps(record.get("models")),
            "prompt_sha256": record.get("prompt_sha256") if isinstance(record.get("prompt_sha256"), str)
            else json.dumps(record.get("prompt_sha256")),
            "seed": int(record.get("seed") or 0), "error": record.get("error")}


def path_rows(record: dict) -> tuple[list[dict], list[dict], int]:
    """SFT and DPO rows along the path the conversation took; turns without a verdict are skipped (and counted)."""
    sft, dpo, skipped = [], [], 0
    history: list[dict] = []
    for turn in record["turns"]:
        prompt = history + [{"role": "user", "content": turn["user_message"]}]
        choice = turn.get("judge_choice")
        if choice is None:
            skipped += 1
        else:
            chosen = turn[choice]
            other = turn["rejected" if choice == "preferred" else "preferred"]
            meta = {"persona_id": record["persona_id"], "conversation_id": record["id"], "turn": turn["turn"]}
            sft.append({"prompt": prompt, "completion": [{"role": "assistant", "content": chosen}], **meta})
            dpo.append({"prompt": prompt, "chosen": [{"role": "assistant", "content": chosen}],
                        "rejected": [{"role": "assistant", "content": other}], **meta})
        history = prompt + [{"role": "assistant", "content": turn[turn["continued_with"]]}]
    return sft, dpo, skipped


def persona_rows(records: list[dict]) -> dict[str, list[dict]]:
    train, seen = [], set()
    for record in records:
        if record["persona_id"] in seen:
            continue
        seen.add(record["persona_id"])
        train.append({"id": record["persona_id"], "profile_id": record.get("profile_id"), "profile": record["profile"],
                      "personality_id": record.get("personality_id"), "personality": record["personality"]})
    test = [{"id": p.id, "profile_id": p.profile_id, "profile": p.profile, "personality_id": p.personality_id,
             "personality": p.personality} for p in load_persona_set("default")]
    return {"train": train, "test": test}


def present_splits(rows: dict, name: str) -> list[str]:
    """Splits of a config that have rows: `datasets` cannot load an empty parquet split, so those are left out."""
    return [split for split in SPLITS[name] if rows[name][split]]


def build_rows(records: list[dict], test_fraction: float) -> tuple[dict, dict]:
    ids = [r["id"] for r in records]
    rows = {"personas": persona_rows(records), "conversations": {"train": [conversation_row(r) for r in records]},
            "sft": {"train": [], "test": []}, "dpo": {"train": [], "test": []}}
    skipped = 0
    for record in records:
        split = split_of(record["id"], ids, test_fraction)
        sft, dpo, missing = path_rows(record)
        rows["sft"][split] += sft
        rows["dpo"][split] += dpo
        skipped += missing
    counts = {**count_conversations(records), "turns_without_verdict": skipped,
              "rows": {c: {s: len(v) for s, v in splits.items()} for c, splits in rows.items()}}
    return rows, counts


# ---------------------------------------------------------------------------------------------------
# Card
# ---------------------------------------------------------------------------------------------------
def _shortened_example(value, limit: int = 300):
    """A row as the card shows it: long texts cut at `limit` characters, lists at 4 items."""
    if isinstance(value, str):
        return value if len(value) <= limit else value[:limit] + " [...]"
    if isinstance(value, list):
        return [_shortened_example(v, limit) for v in value[:4]] + (["[...]"] if len(value) > 4 else [])
    if isinstance(value, dict):
        return {k: _shortened_example(v, limit) for k, v in value.items()}
    return value


CARD_TEMPLATE = "---\n{{ card_data }}\n---\n\n{{ body }}\n"
USAGE_PLACEHOLDER = "ORG/NAME"


def _hub_size_category(n: int) -> str:
    """The Hub's `size_categories` label for `n` rows."""
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return label
    return "1M<n<10M"


def render_dataset_card(cfg: BuildConfig, rows: dict, counts: dict, meta: dict | None, repo_id: str | None = None) -> str:
    """The dataset card: `DatasetCard.from_template(DatasetCardData(...))` with the configs, sizes and the
    generator models' licences; the usage snippet names `repo_id` (ORG/NAME until it is pushed)."""
    from huggingface_hub import DatasetCard, DatasetCardData

    from aloe_bench.core.licenses import generator_licenses

    generators = [info.get("model_id") for info in (meta or {}).get("models", {}).values()]
    _, licence_lines = generator_licenses(generators)
    largest = max((n for config in counts["rows"].values() for n in config.values()), default=0)
    data = DatasetCardData(
        license=cfg.license, pretty_name=cfg.pretty_name, language=["en"], task_categories=["text-generation"],
        annotations_creators=["machine-generated"], language_creators=["machine-generated"],
        size_categories=[_hub_size_category(largest)], source_datasets=["original"],
        tags=["personalization", "alignment", "dpo", "sft", "synthetic", "aloe-bench"],
        configs=[{"config_name": name, "data_files": [{"split": s, "path": f"{name}/{s}-*.parquet"}
                                                      for s in present_splits(rows, name)],
                  **({"default": True} if name == DEFAULT_CONFIG else {})} for name in SPLITS],
    )
    body = _card_body(cfg, rows, counts, meta, licence_lines).replace(
        f'load_dataset("{USAGE_PLACEHOLDER}"', f'load_dataset("{repo_id or USAGE_PLACEHOLDER}"')
    return str(DatasetCard.from_template(data, template_str=CARD_TEMPLATE, body=body))


def _card_body(cfg: BuildConfig, rows: dict, counts: dict, meta: dict | None, licence_lines: list[str]) -> str:
    lines = [f"# {cfg.pretty_name}", "",
             "Multi-turn conversations in which a simulated user slowly reveals who they are (profile) and shows "
             "how they talk (personality). At every turn two replies were written: one by a responder told what "
             "the user had revealed so far, one by a responder that saw only the conversation; a judge holding "
             "the full persona picked the reply the user would prefer. Built with `aloe generate` and "
             "`aloe dataset build` (aloe-bench).", "",
             "## Configs", "",
             "| config | splits | rows |", "| --- | --- | --- |"]
    for name in SPLITS:
        lines.append(f"| `{name}` | {', '.join(present_splits(rows, name))} | "
                     + ", ".join(f"{s}: {counts['rows'][name][s]}" for s in present_splits(rows, name)) + " |")
    lines += ["", "- `personas`: `test` is the aloe-bench evaluation set (20 profiles x 5 personalities), `train` the "
              "persona pairs used here; the pools are kept apart (check with `aloe personas overlap`).",
              "- `conversations`: one tree per row: every turn's user message, revealed facts, both replies, the "
              "judge's choice, its raw answer, where the preferred reply was shown (A/B) and the branch followed.",
              "- `sft`: conversational `prompt` (history + user message) and `completion` (the judge's pick) along "
              "the path actually taken.",
              "- `dpo`: the same `prompt`, `chosen` (judge's pick) and `rejected` (the other reply).",
              "- sft/dpo `test` holds whole conversations (split by conversation id hash).", "",
              "```python", "from datasets import load_dataset", "",
              'dpo = load_dataset("ORG/NAME", "dpo")  # or "sft", "conversations", "personas"', "```", "",
              "The `personas` config's `test` split is the ALOE benchmark's persona set; `eval.yaml` declares it as "
              "a benchmark (one task per metric: AL_avg, IR, N_IR) so models' `.eval_results/aloe.yaml` link to it.",
              "", "## Licence", "",
              f"Card licence: {cfg.license}. The texts were written by models and come under their terms:", "",
              *([f"- {line}" for line in licence_lines] or ["- (generation metadata not found)"]), "",
              "## How it was made", ""]
    if meta:
        lines += ["| role | model | revision |", "| --- | --- | --- |"]
        for role, info in meta.get("models", {}).items():
            lines.append(f"| {role} | `{info.get('model_id')}` | {info.get('resolved_revision') or '-'} |")
        resolved = meta.get("resolved", {})
        settings = meta.get("settings", {})
        lines += ["", f"- Pair judge scoring: {resolved.get('judge_scoring', '?')} (the two replies are shown in a "
                  "random order per turn, recorded as `preferred_position`); induction parsing: "
                  f"{resolved.get('induction_parse', '?')}.",
                  f"- Turns per conversation: {settings.get('turns')}; seed {settings.get('seed')}; retries per "
                  f"step {settings.get('max_retries')}; reply temperature {settings.get('temperature')}, user "
                  f"temperature {settings.get('user_temperature')}.",
                  f"- Prompts (version {meta.get('prompts', {}).get('version')}), sha256[:16]: "
                  + ", ".join(f"`{k}` {v}" for k, v in meta.get("prompts", {}).get("sha256", {}).items()) + "."]
        for kind, pool in meta.get("pools", {}).items():
            grown = pool.get("grown")
            if grown:
                text = (f"grown by self-generation with `{grown.get('generator')}` from {grown.get('seeds')} seeds "
                        f"in {grown.get('rounds')} rounds; de-duplicated with `{grown.get('embedder')}` at cosine "
                        f"threshold {grown.get('threshold')} (kept {grown.get('kept')}, rejected {grown.get('rejected')})")
            else:
                text = "hand-written seed pool, not grown"
            lines.append(f"- {kind} pool: {pool.get('items')} items from `{pool.get('source')}` "
                         f"(sha256[:16] {pool.get('sha256')}): {text}.")
        if any(info.get("spec", {}).get("kind") == "embedded" for info in meta.get("models", {}).values()):
            lines.append("- Some roles ran on the embedded SmolLM2-135M model: this is smoke-test data showing the "
                         "pipeline works, not data to train on.")
    else:
        lines.append("Generation metadata (generation.json) was not found next to the conversations file.")
    lines += ["", "## Counts", "",
              f"- conversations: {counts['conversations']} ({counts['failed_conversations']} stopped early after a "
              "failed step; their finished turns are kept and the error is in `conversations.error`)",
              f"- turns: {counts['turns']}; judge picked the informed reply {counts['judge_picked_preferred']} times "
              f"and the uninformed one {counts['judge_picked_rejected']} times",
              f"- turns without a judge verdict (left out of sft/dpo): {counts['turns_without_verdict']}",
              f"- turns whose induction answer lacked the Profile/Personality labels: {counts['induction_unlabelled']}",
              "", "## Examples", ""]
    for name in SPLITS:
        split = next((s for s in SPLITS[name] if rows[name][s]), None)
        if split is None:
            continue
        example = dict(rows[name][split][0])
        shown = json.dumps(_shortened_example(example), indent=2, ensure_ascii=False)
        lines += [f"`{name}` ({split}):", "", "```json", shown, "```", ""]
    return "\n".join(lines).rstrip() + "\n"


# ---------------------------------------------------------------------------------------------------
# Build and push
# ---------------------------------------------------------------------------------------------------
def build_dataset(cfg: BuildConfig) -> dict:
    """Validate the input, write every config into a temp folder, check it loads, then rename it into place."""
    from datasets import Dataset

    source = Path(cfg.conversations)
    if cfg.format == "aloe-release":
        from .release import read_release

        records, meta = read_release(source), None
    else:
        records = read_conversations(source)
        meta = read_meta((source if source.is_dir() else source.parent) / META_FILE)
    rows, counts = build_rows(records, cfg.test_fraction)
    empty = [name for name in SPLITS if not present_splits(rows, name)]
    if empty:
        raise DatasetBuildError(f"{source}: no rows for config(s) {', '.join(empty)} (turns with a judge verdict: "
                                f"{counts['judge_picked_preferred'] + counts['judge_picked_rejected']}); "
                                "a Hub config needs at least one row")
    for record in records:
        record.pop("_line", None)

    target = Path(cfg.output_dir)
    if target.exists() and not cfg.overwrite:
        raise DatasetBuildError(f"{target} exists; pass --overwrite to replace it")
    if target.exists() and not target.is_dir():
        raise DatasetBuildError(f"{target} exists and is not a folder; remove it or choose another --output_dir")
    created = next((p for p in reversed(target.parents) if not p.exists()), None)  # the first parent we make
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.building-"))
    try:
        for name, splits in rows.items():
            (tmp / name).mkdir()
            for split in present_splits(rows, name):
                Dataset.from_list(splits[split], features=schema.CONFIGS[name]).to_parquet(
                    str(tmp / name / f"{split}-00000-of-00001.parquet"))
        atomic_write_text(tmp / "README.md", render_dataset_card(cfg, rows, counts, meta))
        atomic_write_text(tmp / EVAL_FILE, benchmark_eval_yaml())
        loaded = {}
        for name in SPLITS:  # the folder must load exactly as the Hub would load it
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                data = load_dataset_source(str(tmp), name)
            loaded[name] = {split: data[split].num_rows for split in data}
            if loaded[name] != {k: v for k, v in counts["rows"][name].items() if v}:
                raise DatasetBuildError(f"{tmp}: config {name} loads as {loaded[name]}, wrote {counts['rows'][name]}")
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            target.rename(old)
            try:
                tmp.rename(target)
            except BaseException:
                old.rename(target)  # put the previous dataset back
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)  # parents made for this build hold nothing else
        raise
    return {"output_dir": str(target), **counts}


def push_dataset(folder: str | Path, repo_id: str, private: bool = False, commit_message: str | None = None) -> str:
    """Upload the built folder as one commit; the token comes only from HF_TOKEN. Returns the commit URL."""
    from aloe_bench.core.hub_upload import upload_folder_once

    folder = Path(folder)
    missing = [str(p) for p in [folder / "README.md", *(folder / c for c in SPLITS)] if not p.exists()]
    if missing:
        raise DatasetBuildError(f"{folder} is not a built dataset folder (missing {', '.join(missing)}); "
                                "run `aloe dataset build` first")
    check_dataset_folder(folder, {name: () for name in SPLITS}, error=DatasetBuildError, read_rows=True)
    if repo_id.count("/") != 1:
        raise DatasetBuildError(f"--repo_id {repo_id!r}: expected ORG/NAME")
    token = os.environ.get("HF_TOKEN")
    if not token:
        raise DatasetBuildError("set HF_TOKEN in the environment (a token with write access) to push")
    readme = folder / "README.md"
    card = readme.read_text(encoding="utf-8")
    usage = f'load_dataset("{USAGE_PLACEHOLDER}"'
    if usage in card:  # the usage snippet names the repo it is pushed to
        atomic_write_text(readme, card.replace(usage, f'load_dataset("{repo_id}"'))
    try:
        return upload_folder_once(folder, repo_id, repo_type="dataset", private=private, token=token,
                                  commit_message=commit_message or "Upload ALOE preference dataset (aloe-bench)",
                                  error=DatasetBuildError)
    except BaseException:
        atomic_write_text(readme, card)  # a failed push leaves the folder as it was
        raise
