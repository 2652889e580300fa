"""Persona sets: the paper's files, the packaged set, the project's format, dataset folders, and bad input."""

import json
import warnings

import pytest
from datasets import Dataset

from aloe_bench.core.io import PersonaFileError, RepairWarning
from aloe_bench.core.personas import load_persona_set, read_jsonl, read_pool
from aloe_bench.core.schema import PERSONAS


def test_upstream_files_give_every_profile_times_first_five_personalities(upstream_dir):
    profiles = [json.loads(line) for line in (upstream_dir / "profile_eval.jsonl").read_text().splitlines() if line]
    personalities = [json.loads(l) for l in (upstream_dir / "personality_eval.jsonl").read_text().splitlines() if l]
    personas = load_persona_set(str(upstream_dir))
    assert len(personas) == len(profiles) * 5 == 100
    first, sixth = personas.personas[0], personas.personas[5]
    assert (first.profile, first.personality) == (profiles[0], personalities[0])
    assert (sixth.profile, sixth.personality) == (profiles[1], personalities[0])
    used = {p.personality for p in personas}
    assert used == set(personalities[:5])


def test_default_set_is_packaged_and_distinct_from_upstream(upstream_dir):
    default = load_persona_set("default")
    assert len(default) == 100 and len({p.profile_id for p in default}) == 20
    upstream_texts = {p.profile for p in load_persona_set(str(upstream_dir))}
    assert not upstream_texts & {p.profile for p in default}
    assert default.sha256 == load_persona_set().sha256


def test_project_persona_file(tmp_path):
    path = tmp_path / "personas.jsonl"
    path.write_text(json.dumps({"id": "a", "profile": "P", "personality": "Q"}) + "\n"
                    + json.dumps({"profile": "P2", "personality": "Q2"}) + "\n")
    personas = load_persona_set(str(path))
    assert [p.id for p in personas] == ["a", "persona002"]


@pytest.mark.parametrize("content,message", [
    ('{"profile": "P", "personality": "Q"}\n\n{"profile": "P", "personality": "Q"}\n', ":2: empty line"),
    ('{"profile": "P", "personality": "Q"}\n{"profile": "P", \n', ":2: malformed JSON"),
    ('{"profile": "P"}\n', ":1: field 'personality' must be a non-empty string"),
    ('{"profile": "", "personality": "Q"}\n', ":1: field 'profile'"),
    ('["P", "Q"]\n', ":1: expected an object"),
    ('{"id": "x", "profile": "P", "personality": "Q"}\n{"id": "x", "profile": "P", "personality": "Q"}\n',
     ":2: duplicate id 'x'"),
])
def test_bad_persona_files_name_file_and_line(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(PersonaFileError) as info:
        load_persona_set(str(path))
    assert str(path) in str(info.value) and message in str(info.value)


def test_glued_json_strings_are_split_with_a_warning(tmp_path):
    path = tmp_path / "profiles.jsonl"
    path.write_text('"first profile"\n"second profile""third profile"\n')
    with pytest.warns(RepairWarning, match=r"profiles.jsonl:2: split 2 JSON values"):
        items = read_pool(path, "profile")
    assert [i.text for i in items] == ["first profile", "second profile", "third profile"]


def test_glued_values_can_be_refused(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"a": 1} {"b": 2}\n')
    with pytest.raises(PersonaFileError, match=r"x.jsonl:1: 2 JSON values"):
        read_jsonl(path, repair_glued=False)


def test_pool_folder_errors(tmp_path):
    with pytest.raises(PersonaFileError, match="no persona pools found"):
        load_persona_set(str(tmp_path))
    (tmp_path / "profiles.jsonl").write_text('"p"\n')
    (tmp_path / "personalities.jsonl").write_text("42\n")
    with pytest.raises(PersonaFileError, match=r"personalities.jsonl:1: expected a JSON string"):
        load_persona_set(str(tmp_path))
    with pytest.raises(PersonaFileError, match="not 'default'"):
        load_persona_set(str(tmp_path / "missing"))


def test_not_utf8(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_bytes(b'"caf\xe9"\n')
    with pytest.raises(PersonaFileError, match="not UTF-8"):
        read_pool(path, "p")


def test_dataset_folder_with_personas_config(tmp_path):
    folder = tmp_path / "ds"
    (folder / "personas").mkdir(parents=True)
    rows = [{"id": f"x{i}", "profile_id": "p", "profile": f"profile {i}", "personality_id": "q",
             "personality": "calm"} for i in range(3)]
    Dataset.from_list(rows, features=PERSONAS).to_parquet(folder / "personas" / "test-00000-of-00001.parquet")
    (folder / "README.md").write_text(
        "---\nconfigs:\n- config_name: personas\n  data_files:\n  - split: test\n"
        "    path: personas/test-00000-of-00001.parquet\n  default: true\n---\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        personas = load_persona_set(str(folder))
    assert [p.id for p in personas] == ["x0", "x1", "x2"]
    assert personas.personas[2].profile == "profile 2"
