"""`aloe dataset build --format aloe-release`: the authors' released conversations -> our Hub dataset folder.

The input is written here in the authors' shape (invented texts): one object per line with `profile`,
`personality` and `conversations` = [{user, assistant: {preferred, rejected}, chosen, inferred_*}].
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from aloe_bench.core.dataset_folder import load_dataset_source


def _turn(k, chosen, rejected=None):
    return {"user": f"user message {k}", "assistant": {"preferred": f"preferred {k}",
                                                       "rejected": rejected or f"rejected {k}"},
            "chosen": chosen, "inferred_profile": "None" if k == 1 else f"fact {k}", "inferred_personality": None}


def _write(path, lines):
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines), encoding="utf-8")
    return path


def _release(tmp_path):
    return _write(tmp_path / "conversations.jsonl", [
        # the authors read their persona pools with readlines(), so a value may be a raw JSON string line
        {"profile": '"She keeps bees on a city roof."\n', "personality": "She is blunt and funny.",
         "conversations": [_turn(1, "rejected"), _turn(2, "preferred"), _turn(3, "preferred")]},
        {"profile": "He restores old clocks.", "personality": "He is shy and precise.",
         "conversations": [_turn(1, "preferred", rejected=["rejected 1a", "rejected 1b"]), _turn(2, "rejected")]},
    ])


def _build(source, out, *extra):
    return subprocess.run([sys.executable, "-m", "aloe_bench.commands.main", "dataset", "build", "--conversations", str(source),
                           "--output_dir", str(out), "--format", "aloe-release", "--test_fraction", "0", *extra],
                          capture_output=True, text=True)


def test_release_builds_a_loadable_dataset_on_the_path_taken(tmp_path):
    out = tmp_path / "dataset"
    done = _build(_release(tmp_path), out)
    assert done.returncode == 0, done.stderr
    sft = load_dataset_source(str(out), "sft", split="train")
    dpo = load_dataset_source(str(out), "dpo", split="train")
    assert sft.num_rows == dpo.num_rows == 5  # one row per turn
    first = [row for row in sft if row["conversation_id"].endswith("000001")]
    # every turn trains the preferred reply ...
    assert [r["completion"][0]["content"] for r in first] == ["preferred 1", "preferred 2", "preferred 3"]
    # ... on the history the conversation actually took: turn 1 continued with the rejected reply
    assert first[1]["prompt"] == [{"role": "user", "content": "user message 1"},
                                  {"role": "assistant", "content": "rejected 1"},
                                  {"role": "user", "content": "user message 2"}]
    assert first[2]["prompt"][3] == {"role": "assistant", "content": "preferred 2"}
    pairs = {(r["conversation_id"][-1], r["turn"]): (r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in dpo}
    assert pairs[("1", 1)] == ("preferred 1", "rejected 1")
    assert pairs[("2", 1)] == ("preferred 1", "rejected 1a")  # a list of rejected replies: the first
    personas = load_dataset_source(str(out), "personas", split="train")
    assert sorted(personas["profile"]) == ["He restores old clocks.", "She keeps bees on a city roof."]
    conversations = load_dataset_source(str(out), "conversations", split="train")
    assert [t["revealed_profile"] for t in conversations[0]["turns"]] == ["None", "fact 2", "fact 3"]


@pytest.mark.parametrize("bad, field", [
    ({"profile": "x", "personality": "y", "conversations": [{**_turn(1, "maybe")}]}, "'chosen'"),
    ({"profile": "x", "personality": "y", "conversations": [{"user": "hi", "assistant": "oops", "chosen": "preferred"}]},
     "'assistant'"),
    ({"profile": "", "personality": "y", "conversations": [_turn(1, "preferred")]}, "'profile'"),
    ('{"profile": "x", "personality": ', "malformed JSON"),
])
def test_a_malformed_line_names_file_and_line_and_writes_nothing(tmp_path, bad, field):
    good = {"profile": "p", "personality": "q", "conversations": [_turn(1, "preferred")]}
    source = _write(tmp_path / "conversations.jsonl", [good, bad])
    out = tmp_path / "dataset"
    done = _build(source, out)
    assert done.returncode == 2
    assert f"{source}:2" in done.stderr and field in done.stderr
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".dataset")]
