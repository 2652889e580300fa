"""Bad inputs (issue 6, hardening): property-based tests over persona files, conversation files and dataset folders.

Each property starts from a valid input, breaks it in one generated way (malformed JSON, empty lines, glued
values, wrong types, missing fields, non-UTF-8 bytes, lone surrogates, missing or damaged dataset files)
and checks that
- the reader raises its own error type (PersonaFileError / DatasetBuildError), never a stray KeyError,
  TypeError or pyarrow error;
- the message names the file and the line (JSONL) or the field (dataset folders);
- nothing is left behind: no output folder, no temp folder, an existing output or pool file unchanged.

Generated inputs per run (hypothesis max_examples): persona files 150 (+40 valid ones with odd line
endings), pool folders 80, seeds/pool files for `aloe personas grow` 60, conversation files 150,
generation metadata 30, write failures during a build 8, dataset folders 40 (each read by the
`aloe dataset push` validation and, when the damage touches the card or the personas config, by
`load_persona_set`): 558 in all.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
import contextlib
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aloe_bench.core.io import PersonaFileError, RepairWarning
from aloe_bench.core.personas import load_persona_set, read_pool
from aloe_bench.training.dataset import BuildConfig, DatasetBuildError, build_dataset, push_dataset
from aloe_bench.training.persona_pools import GrowConfig, grow_pool
from aloe_bench.testing.backends import ScriptedBackend



def io(examples: int):
    """Hypothesis settings for tests that touch the disk: no deadline, a moderate number of examples."""
    return settings(max_examples=examples, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@contextmanager
def workdir():
    with tempfile.TemporaryDirectory(prefix="aloe-hardening-") as d:
        yield Path(d)


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` with the sha256 of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


TEXT = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30).filter(lambda s: s.strip())
WRONG = st.one_of(st.integers(), st.floats(allow_nan=False), st.booleans(), st.lists(st.integers(), max_size=2),
                  st.dictionaries(st.just("k"), st.integers(), max_size=1))
NON_UTF8 = st.sampled_from([b"\xff", b"\xc3(", b"\xe9t\xe9", b"\xed\xa0\x80", b"\x80abc", b"\xf0\x28\x8c\x28"])


def _broken_json(line: str, cut: int) -> str:
    """`line` damaged so it is not JSON any more: cut short, or with a stray brace."""
    cut = max(1, min(cut, len(line) - 1))
    broken = line[:cut]
    try:
        json.loads(broken)
    except json.JSONDecodeError:
        return broken
    return line[:-1] + ",}"


def wrong_for(field: str):
    """Values of the wrong type for `field` (the integers a seed may be, the objects models may be, are left out)."""
    junk = st.one_of(st.lists(st.integers(), max_size=2), st.dictionaries(st.just("k"), st.integers(), max_size=1))
    if field == "seed":
        return st.one_of(st.floats(allow_nan=False), st.booleans(), st.text(max_size=3), junk,
                         st.integers(min_value=2 ** 63), st.integers(max_value=-(2 ** 63) - 1))
    if field in ("models", "prompt_sha256"):
        return st.one_of(st.integers(), st.floats(allow_nan=False), st.booleans(), st.lists(st.integers(), max_size=2))
    if field in ("turn", "round"):  # a wrong integer is a turn out of order: tried on its own
        return st.one_of(st.floats(allow_nan=False), st.booleans(), st.text(max_size=3), junk)
    if field == "turns":  # an empty list is a conversation with no turns, which is allowed
        return st.one_of(st.integers(), st.text(max_size=3), st.dictionaries(st.just("k"), st.integers(), max_size=1),
                         st.lists(st.integers(), min_size=1, max_size=2))
    return WRONG


JSONL_KINDS = ["malformed", "empty_line", "non_utf8", "not_object", "surrogate", "glued_bad"]


def jsonl_cases(fields: list[str], required: list[str], text_fields: list[str]) -> list:
    """Every way `corrupt_jsonl` breaks a line, each field named: pytest params, so each is always tried."""
    return ([pytest.param(k, None, id=k) for k in JSONL_KINDS]
            + [pytest.param("missing_field", f, id=f"missing-{f}") for f in required]
            + [pytest.param("wrong_type", f, id=f"wrong-{f}") for f in fields]
            + [pytest.param("empty_text", f, id=f"empty-{f}") for f in text_fields])


def corrupt_jsonl(data, lines: list[str], kind: str, field: str | None):
    """Break one (generated) line of a valid JSONL file in the way `kind` says, on `field` where it names one.

    Returns `(bytes, line_number, needle)`: the file's new content, the 1-based line the error must name,
    and a text the message must contain (the field name) or None.
    """
    index = data.draw(st.integers(0, len(lines) - 1), label="line")
    out = [line.encode() for line in lines]
    number, needle = index + 1, None
    row = json.loads(lines[index])
    if kind == "malformed":
        out[index] = _broken_json(lines[index], data.draw(st.integers(1, 200))).encode()
    elif kind == "empty_line":
        out.insert(index, data.draw(st.sampled_from([b"", b"   ", b"\t", b"\r"])))
    elif kind == "non_utf8":
        at = data.draw(st.integers(0, len(out[index])))
        out[index] = out[index][:at] + data.draw(NON_UTF8) + out[index][at:]
    elif kind == "not_object":
        out[index] = json.dumps(data.draw(st.one_of(st.lists(TEXT, max_size=2), st.integers(), st.none()))).encode()
    elif kind == "missing_field":
        needle = field
        row.pop(field)
        out[index] = json.dumps(row).encode()
    elif kind == "wrong_type":
        needle = field
        row[field] = data.draw(wrong_for(field), label="value")
        out[index] = json.dumps(row).encode()
    elif kind == "empty_text":
        needle = field
        row[field] = data.draw(st.sampled_from(["", "  ", "\n"]))
        out[index] = json.dumps(row).encode()
    elif kind == "surrogate":
        text = data.draw(st.sampled_from([k for k, v in row.items() if isinstance(v, str)]))
        out[index] = json.dumps(row).replace(json.dumps(row[text]), '"x\\ud800y"', 1).encode()
    elif kind == "glued_bad":  # a good value glued to a damaged one: the damage is still an error on this line
        out[index] = out[index] + b" " + _broken_json(lines[index], data.draw(st.integers(1, 200))).encode()
    else:
        raise AssertionError(kind)
    return b"\n".join(out) + b"\n", number, needle


def assert_names(exc: BaseException, path: Path, line: int | None = None, needle: str | None = None):
    message = str(exc)
    where = f"{path}:{line}" if line is not None else str(path)
    assert where in message, (where, message)
    if needle is not None:
        assert repr(needle) in message or needle in message, (needle, message)


# -------------------------------------------------------------------------------------------------
# Persona files and pool folders
# -------------------------------------------------------------------------------------------------
PERSONA_ROWS = st.lists(st.fixed_dictionaries({"profile": TEXT, "personality": TEXT},
                                              optional={"profile_id": TEXT, "personality_id": TEXT}),
                        min_size=1, max_size=5)


PERSONA_FIELDS = ["id", "profile", "personality", "profile_id", "personality_id"]


@pytest.mark.parametrize("kind,field", jsonl_cases(PERSONA_FIELDS, ["profile", "personality"],
                                                   ["id", "profile", "personality"]))
@io(10)
@given(rows=PERSONA_ROWS, data=st.data())
def test_broken_persona_files_name_file_line_and_field(kind, field, rows, data):
    lines = [json.dumps({"id": f"p{i}", **row}, ensure_ascii=data.draw(st.booleans())) for i, row in enumerate(rows)]
    content, line, needle = corrupt_jsonl(data, lines, kind, field)
    with workdir() as d:
        path = d / "personas.jsonl"
        path.write_bytes(content)
        with pytest.raises(PersonaFileError) as info, warnings.catch_warnings():
            warnings.simplefilter("ignore", RepairWarning)
            load_persona_set(str(path))
        assert_names(info.value, path, line, needle)


@io(40)
@given(rows=PERSONA_ROWS, crlf=st.booleans(), bom=st.booleans(), odd=st.sampled_from(["\u2028", "\u2029", "\x85", "\x0c", ""]))
def test_valid_persona_files_load_whatever_the_line_endings(rows, crlf, bom, odd):
    """The other side of the property: what is valid loads, with editor line numbers (U+2028 stays in a string)."""
    rows = [{**row, "profile": row["profile"] + odd + "x"} for row in rows]
    text = ("\r\n" if crlf else "\n").join(json.dumps({"id": f"p{i}", **r}, ensure_ascii=False)
                                           for i, r in enumerate(rows)) + "\n"
    with workdir() as d:
        path = d / "personas.jsonl"
        path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())
        personas = load_persona_set(str(path))
    assert [p.profile for p in personas] == [r["profile"].strip() for r in rows]


@io(80)
@given(profiles=st.lists(TEXT, min_size=1, max_size=4), personalities=st.lists(TEXT, min_size=1, max_size=4),
       which=st.sampled_from(["profiles.jsonl", "personalities.jsonl"]), objects=st.booleans(), data=st.data())
def test_broken_pool_folders_name_file_and_line(profiles, personalities, which, objects, data):
    pools = {"profiles.jsonl": profiles, "personalities.jsonl": personalities}
    with workdir() as d:
        for name, items in pools.items():
            rows = [{"id": f"{name[:4]}{i}", "text": t} if objects else t for i, t in enumerate(items)]
            (d / name).write_text("\n".join(json.dumps(r) for r in rows) + "\n")
        lines = (d / which).read_text().splitlines()
        if objects:
            kind, field = data.draw(st.sampled_from([(k, None) for k in JSONL_KINDS] + [
                ("missing_field", "text"), ("wrong_type", "text"), ("wrong_type", "id"), ("empty_text", "text")]))
            content, line, needle = corrupt_jsonl(data, lines, kind, field)
        else:  # the paper's format: one JSON string per line
            index = data.draw(st.integers(0, len(lines) - 1))
            bad = data.draw(st.sampled_from([b"42", b"null", b'""', b'"  "', b'["a"]', b'{"id": "x"}', b'"open',
                                             b'"a" 3', b"\xff\xfe", b'"\\udc00"']))
            raw = [x.encode() for x in lines]
            raw[index] = bad
            content, line, needle = b"\n".join(raw) + b"\n", index + 1, None
        (d / which).write_bytes(content)
        with pytest.raises(PersonaFileError) as info, warnings.catch_warnings():
            warnings.simplefilter("ignore", RepairWarning)
            load_persona_set(str(d))
        assert_names(info.value, d / which, line, needle)


def test_half_a_pool_folder_says_which_pool_is_missing(tmp_path):
    (tmp_path / "profiles.jsonl").write_text('"p"\n')
    with pytest.raises(PersonaFileError, match=r"has profiles.jsonl but no personalities.jsonl"):
        load_persona_set(str(tmp_path))


# -------------------------------------------------------------------------------------------------
# `aloe personas grow`: a bad seeds file or a bad pool file being resumed
# -------------------------------------------------------------------------------------------------
class FlatEmbedder:
    aloe_name = "test/flat"

    def get_embedding_dimension(self):
        return 4

    def encode(self, texts, **_):
        import numpy as np

        return np.ones((len(texts), 4), dtype=np.float32) / 2.0


@io(60)
@given(seeds=st.lists(TEXT, min_size=1, max_size=4), resume=st.booleans(), data=st.data())
def test_grow_refuses_bad_seed_and_pool_files_and_writes_nothing(seeds, resume, data):
    with workdir() as d:
        out = d / "pools"
        backend = ScriptedBackend(["- a brand new profile that is long enough to keep"])
        if resume:  # a pool folder from an earlier run, damaged by hand
            out.mkdir()
            rows = [{"id": f"seed{i:03d}", "text": t, "round": 0} for i, t in enumerate(seeds)]
            lines = [json.dumps(r) for r in rows]
            kind, field = data.draw(st.sampled_from([(k, None) for k in JSONL_KINDS] + [
                (k, f) for k in ("missing_field", "wrong_type", "empty_text") for f in ("id", "text")]
                + [("wrong_type", "round")]))
            content, line, needle = corrupt_jsonl(data, lines, kind, field)
            target = out / "profiles.jsonl"
            target.write_bytes(content)
            before = snapshot(out)
            cfg = GrowConfig(kind="profile", output_dir=str(out), max_rounds=1, progress=False)
        else:
            lines = [json.dumps(t) for t in seeds]
            target = d / "seeds.jsonl"
            index = data.draw(st.integers(0, len(lines) - 1))
            raw = [x.encode() for x in lines]
            raw[index] = data.draw(st.sampled_from([b"7", b"[]", b'""', b"{", b"\xc3(", b'{"text": 3}']))
            target.write_bytes(b"\n".join(raw) + b"\n")
            line, needle, before = index + 1, None, None
            cfg = GrowConfig(kind="profile", output_dir=str(out), seeds=str(target), max_rounds=1, progress=False)
        with pytest.raises(PersonaFileError) as info, warnings.catch_warnings():
            warnings.simplefilter("ignore", RepairWarning)
            grow_pool(cfg, backend=backend, embedder=FlatEmbedder())
        assert_names(info.value, target, line, needle)
        if resume:
            assert snapshot(out) == before
        else:
            assert not out.exists()
        assert not backend.calls


# -------------------------------------------------------------------------------------------------
# Conversation files read by `aloe dataset build`
# -------------------------------------------------------------------------------------------------
def conversation(i: int, turns: int = 2) -> dict:
    return {
        "id": f"conv-{i:05d}", "persona_id": f"p{i}__q{i}", "profile_id": f"p{i}", "personality_id": f"q{i}",
        "profile": f"Profile {i}: a nurse in Leeds who grows roses.", "personality": "Warm and chatty.",
        "turns": [{"turn": k, "user_message": f"message {k}", "revealed_profile": "roses",
                   "revealed_personality": "warm", "preferred": f"informed reply {k}",
                   "rejected": f"plain reply {k}", "judge_choice": "preferred" if (i + k) % 2 else "rejected",
                   "judge_raw": "[[A]]", "continued_with": "preferred", "preferred_position": "A", "error": None,
                   "induction_unlabelled": False}
                  for k in range(1, turns + 1)],
        "models": {"user": "fake/model"}, "prompt_sha256": {"pair_judge": "0" * 16}, "seed": i, "error": None,
    }


CONV_FIELDS = ["id", "persona_id", "profile", "personality", "turns", "profile_id", "personality_id", "seed",
               "error", "models", "prompt_sha256"]
TURN_FIELDS = ["turn", "user_message", "preferred", "rejected", "continued_with", "judge_choice",
               "revealed_profile", "revealed_personality", "judge_raw", "preferred_position", "error"]


TURN_KINDS = ([pytest.param("turn:missing", f, id=f"turn-missing-{f}")
               for f in ["turn", "user_message", "preferred", "rejected", "continued_with"]]
              + [pytest.param("turn:wrong_type", f, id=f"turn-wrong-{f}") for f in TURN_FIELDS]
              + [pytest.param("turn:bad_choice", f, id=f"turn-choice-{f}") for f in ["judge_choice", "continued_with"]]
              + [pytest.param("turn:order", "turn", id="turn-order"), pytest.param("turn:not_object", None,
                                                                                   id="turn-not-object")])


def corrupt_conversations(data, records: list[dict], kind: str, field: str | None):
    """`corrupt_jsonl` for whole lines, or damage inside one turn of one conversation (`turn:*` kinds)."""
    lines = [json.dumps(r, ensure_ascii=False) for r in records]
    if not kind.startswith("turn:"):
        return corrupt_jsonl(data, lines, kind, field)
    index = data.draw(st.integers(0, len(records) - 1))
    record = json.loads(lines[index])
    k = data.draw(st.integers(0, len(record["turns"]) - 1))
    turn = record["turns"][k]
    if kind == "turn:missing":
        turn.pop(field)
    elif kind == "turn:wrong_type":
        turn[field] = data.draw(wrong_for(field))
    elif kind == "turn:bad_choice":
        turn[field] = data.draw(st.sampled_from(["maybe", "A", "Preferred", ""]))
    elif kind == "turn:order":
        turn["turn"] = data.draw(st.integers(-3, 50).filter(lambda n: n != k + 1))
    else:
        record["turns"][k] = data.draw(st.one_of(st.just("turn"), st.integers(), st.none()))
    lines[index] = json.dumps(record, ensure_ascii=False)
    return ("\n".join(lines) + "\n").encode(), index + 1, field


@pytest.mark.parametrize("kind,field", jsonl_cases(CONV_FIELDS, ["id", "persona_id", "profile", "personality", "turns"],
                                                   ["id", "persona_id", "profile", "personality"]) + TURN_KINDS)
@io(4)
@given(n=st.integers(1, 4), nested=st.booleans(), data=st.data())
def test_broken_conversation_files_name_file_line_and_field_and_leave_nothing(kind, field, n, nested, data):
    records = [conversation(i) for i in range(1, n + 1)]
    content, line, needle = corrupt_conversations(data, records, kind, field)
    with workdir() as d:
        src = d / "gen"
        src.mkdir()
        (src / "conversations.jsonl").write_bytes(content)
        out = d / "new" / "deeper" / "ds" if nested else d / "ds"
        with pytest.raises(PersonaFileError) as info, warnings.catch_warnings():
            warnings.simplefilter("ignore", RepairWarning)
            build_dataset(BuildConfig(conversations=str(src), output_dir=str(out)))
        assert_names(info.value, src / "conversations.jsonl", line, needle)
        assert sorted(p.name for p in d.iterdir()) == ["gen"]  # no output, no temp folder, no parent made


@io(30)
@given(data=st.data())
def test_broken_generation_metadata_is_named_and_nothing_written(data):
    meta = {"models": {"judge": {"model_id": "m", "spec": {"kind": "hf"}}}, "resolved": {}, "settings": {},
            "prompts": {"version": "1.1", "sha256": {}}, "pools": {}}
    kind = data.draw(st.sampled_from(["malformed", "not_object", "field"]))
    if kind == "malformed":
        text, needle = json.dumps(meta)[:data.draw(st.integers(1, 40))], "malformed JSON"
    elif kind == "not_object":
        text, needle = json.dumps(data.draw(st.one_of(st.lists(st.integers(), max_size=2), st.integers()))), "object"
    else:
        field = data.draw(st.sampled_from(["models", "resolved", "settings", "prompts", "pools"]))
        meta[field] = data.draw(st.one_of(st.integers(), st.text(max_size=3), st.lists(st.integers(), max_size=1)))
        text, needle = json.dumps(meta), repr(field)
    with workdir() as d:
        src = d / "gen"
        src.mkdir()
        (src / "conversations.jsonl").write_text("\n".join(json.dumps(conversation(i)) for i in (1, 2, 3)) + "\n")
        (src / "generation.json").write_text(text)
        with pytest.raises(DatasetBuildError) as info:
            build_dataset(BuildConfig(conversations=str(src), output_dir=str(d / "ds")))
        assert str(src / "generation.json") in str(info.value) and needle in str(info.value), str(info.value)
        assert sorted(p.name for p in d.iterdir()) == ["gen"]


# -------------------------------------------------------------------------------------------------
# A failure while the dataset is being written leaves the previous output exactly as it was
# -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def source(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gen")
    (folder / "conversations.jsonl").write_text("\n".join(json.dumps(conversation(i)) for i in range(1, 5)) + "\n")
    return folder


@pytest.fixture(scope="module")
def built(source, tmp_path_factory):
    out = tmp_path_factory.mktemp("hub") / "ds"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        build_dataset(BuildConfig(conversations=str(source), output_dir=str(out), test_fraction=0.25))
    return out


WRITES = 7  # parquet files of a build: personas x2, conversations, sft x2, dpo x2


@settings(deadline=None, max_examples=8, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fail_at=st.integers(0, WRITES + 1), overwrite=st.booleans())
def test_a_failed_write_leaves_no_partial_output(source, built, fail_at, overwrite):
    # Without an existing output the target sits in folders the build has to create: those go too.
    """A build that fails at any point (a parquet write, the load check, the final rename) leaves nothing
    new behind, and an output folder it was to replace exactly as it was."""
    from datasets import Dataset

    real_write, real_rename = Dataset.to_parquet, Path.rename
    calls = []

    def flaky_write(self, path, *args, **kwargs):
        calls.append(path)
        if len(calls) > fail_at:
            raise OSError(28, "No space left on device")
        return real_write(self, path, *args, **kwargs)

    def flaky_load(*args, **kwargs):
        raise OSError(28, "No space left on device")

    def flaky_rename(self, target):
        if self.name.startswith(".ds.building-"):
            raise OSError(28, "No space left on device")
        return real_rename(self, target)

    patches = [mock.patch.object(Dataset, "to_parquet", flaky_write)]
    if fail_at == WRITES:
        patches.append(mock.patch("datasets.load_dataset", flaky_load))
    elif fail_at > WRITES:
        patches.append(mock.patch.object(Path, "rename", flaky_rename))
    with workdir() as d:
        out = d / "ds" if overwrite else d / "new" / "deeper" / "ds"
        if overwrite:
            shutil.copytree(built, out)
        before = snapshot(d)
        with contextlib.ExitStack() as stack:
            for patch in patches:
                stack.enter_context(patch)
            with pytest.raises(OSError, match="No space left"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                build_dataset(BuildConfig(conversations=str(source), output_dir=str(out), overwrite=True,
                                          test_fraction=0.25))
        assert snapshot(d) == before and [p.name for p in d.iterdir()] == (["ds"] if overwrite else [])


# -------------------------------------------------------------------------------------------------
# Dataset folders: `aloe dataset push` validation and load_persona_set
# -------------------------------------------------------------------------------------------------
CONFIGS = ["personas", "conversations", "sft", "dpo"]


def _parquet_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*/*.parquet"))


def corrupt_folder(data, folder: Path):
    """Damage a built dataset folder in one generated way; returns (file the error must name, needle, config, kind)."""
    readme = folder / "README.md"
    kind = data.draw(st.sampled_from(["no_readme", "no_front_matter", "unclosed", "bad_yaml", "no_configs",
                                      "configs_not_list", "drop_config", "no_data_files", "path_matches_nothing",
                                      "delete_parquet", "garbage_parquet", "truncated_parquet", "missing_column",
                                      "wrong_column_type"]), label="kind")
    text = readme.read_text()
    front, body = text.split("---\n")[1], "---\n".join(text.split("---\n")[2:])
    import yaml

    card = yaml.safe_load(front)
    config = data.draw(st.sampled_from(CONFIGS), label="config")

    def write_card(new_card):
        readme.write_text("---\n" + yaml.safe_dump(new_card, sort_keys=False) + "---\n" + body)

    if kind == "no_readme":
        readme.unlink()
        return readme, "missing", None, kind
    if kind == "no_front_matter":
        readme.write_text(body)
        return readme, ":1: no YAML front matter", None, kind
    if kind == "unclosed":
        readme.write_text("---\n" + front)
        return readme, "never closed", None, kind
    if kind == "bad_yaml":
        readme.write_text("---\n" + front + "configs: [unclosed\n---\n" + body)
        return readme, "invalid YAML", None, kind
    if kind == "no_configs":
        card.pop("configs")
        write_card(card)
        return readme, "no 'configs'", None, kind
    if kind == "configs_not_list":
        card["configs"] = data.draw(st.sampled_from(["dpo", 3, {}, []]))
        write_card(card)
        return readme, "'configs'", None, kind
    index = next(i for i, c in enumerate(card["configs"]) if c["config_name"] == config)
    if kind == "drop_config":
        card["configs"].pop(index)
        write_card(card)
        return readme, repr(config), config, kind
    if kind == "no_data_files":
        card["configs"][index].pop("data_files")
        write_card(card)
        return readme, "'data_files'", config, kind
    if kind == "path_matches_nothing":
        card["configs"][index]["data_files"][0]["path"] = f"{config}/nothing-*.parquet"
        write_card(card)
        return readme, "matches no file", config, kind
    target = data.draw(st.sampled_from(sorted(folder.glob(f"{config}/*.parquet"))), label="file")
    if kind == "delete_parquet":
        target.unlink()
        return readme, "matches no file", config, kind
    if kind == "garbage_parquet":
        target.write_bytes(data.draw(st.binary(max_size=64)))
        return target, "not a readable parquet file", config, kind
    if kind == "truncated_parquet":
        raw = target.read_bytes()
        target.write_bytes(raw[:data.draw(st.integers(0, len(raw) - 1))])
        return target, "parquet", config, kind
    import pyarrow.parquet as pq

    table = pq.read_table(target)
    column = data.draw(st.sampled_from(table.column_names), label="column")
    if kind == "missing_column":
        pq.write_table(table.drop_columns([column]), target)
        return target, repr(column), config, kind
    import pyarrow as pa

    replacement = pa.array([1] * table.num_rows, type=pa.int64()) if not pa.types.is_integer(
        table.schema.field(column).type) else pa.array(["x"] * table.num_rows)
    pq.write_table(table.set_column(table.column_names.index(column), column, replacement), target)
    return target, repr(column), config, kind


@io(40)
@given(data=st.data())
def test_broken_dataset_folders_are_named_by_push_and_by_persona_loading(built, data):
    with workdir() as d:
        folder = d / "ds"
        shutil.copytree(built, folder)
        named, needle, config, kind = corrupt_folder(data, folder)
        before = snapshot(folder)
        with mock.patch.dict(os.environ, {"HF_TOKEN": ""}), pytest.raises(DatasetBuildError) as info:
            push_dataset(folder, "someone/aloe-data")
        message = str(info.value)
        assert "HF_TOKEN" not in message and str(named) in message and needle in message, message
        if config in (None, "personas"):  # a reader of the personas config must see the same damage...
            optional = "'profile'" not in needle and "'personality'" not in needle and "missing" in kind
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    personas = load_persona_set(str(folder))
            except PersonaFileError as exc:
                assert str(named) in str(exc) or str(folder) in str(exc), str(exc)
            else:  # ...except a missing id column, which the reader does not need (ids are then made up)
                assert optional and len(personas) == 100, (kind, needle)
        assert snapshot(folder) == before  # readers never touch the folder


def test_an_intact_dataset_folder_passes_push_validation_and_loads_personas(built, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(DatasetBuildError, match="HF_TOKEN"):  # validation passed: the token is the next check
        push_dataset(built, "someone/aloe-data")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert len(load_persona_set(str(built))) == 100  # the test split is the packaged eval set
        assert len(read_pool(Path(__file__).parent.parent / "src/aloe_bench/core/data/eval_profiles.jsonl", "p")) == 20
