"""Persona pools: parsing, embedding de-duplication, resumable growth, overlap and the speed benchmark."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from aloe_bench.bench.persona_dedup import bench_dedup
from aloe_bench.training.persona_pools import (
    GrowConfig,
    grow_pool,
    open_pool,
    parse_items,
    parse_single,
    pool_overlap,
    read_any_pool,
    select_novel,
)
from aloe_bench.testing.backends import ScriptedBackend

from aloe_bench.core.io import PersonaFileError
from aloe_bench.core.personas import load_persona_set


class WordEmbedder:
    """A deterministic bag-of-words embedder: texts sharing words are similar. Counts encode calls."""

    aloe_name = "test/bag-of-words"

    def __init__(self, dim: int = 256):
        self.dim = dim
        self.calls = 0

    def get_embedding_dimension(self):
        return self.dim

    def encode(self, texts, normalize_embeddings=True, **_):
        self.calls += 1
        single = isinstance(texts, str)
        out = np.zeros((1 if single else len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate([texts] if single else texts):
            for word in re.findall(r"[a-z]+", text.lower()):
                out[row, sum(map(ord, word)) * 31 % self.dim] += 1.0
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)
        return out[0] if single else out


def test_parse_items_reads_bullets_and_numbers_and_skips_noise():
    text = ("Here are some:\n- A retired nurse from Leeds who grows roses.\n2. A young welder in Ohio who races bikes.\n"
            "* short\nnot a bullet line that is long enough to count\n- A retired nurse from Leeds who grows roses.")
    assert parse_items(text, min_chars=15) == ["A retired nurse from Leeds who grows roses.",
                                               "A young welder in Ohio who races bikes."]
    assert parse_items(None) == []


@pytest.mark.parametrize("answer, expected", [
    # a plain paragraph whose last sentence was cut by the token limit
    ("A 52-year-old ferry mechanic in Bergen. He keeps bees and sings in a choir. His daughter stu",
     "A 52-year-old ferry mechanic in Bergen. He keeps bees and sings in a choir."),
    # lead-in and title lines are skipped; the first list item wins; markdown bold is dropped
    ("Here is a new profile:\n\n**Profile 1: The Baker**\n\n- A **night-shift** baker from Lyon who climbs.\n"
     "- A second one that should not be taken at all.", "A night-shift baker from Lyon who climbs."),
    # a numbered list item continues on its line only
    ("1. Warm and chatty, she tells long stories and laughs at her own jokes.\n2. Another one here, not taken.",
     "Warm and chatty, she tells long stories and laughs at her own jokes."),
    # nothing but a lead-in, or too short: no item
    ("Sure! Here are some examples:", None),
    ("- Too short.", None),
    ("", None),
])
def test_parse_single_takes_one_item_from_a_free_form_answer(answer, expected):
    assert parse_single(answer, min_chars=25) == ([] if expected is None else [expected])


def test_select_novel_drops_off_topic_candidates_only_when_asked():
    e = np.eye(4, dtype=np.float32)
    close = (e[0] + e[1]) / np.sqrt(2)  # cosine 0.71 to the pool item: novel at 0.75, on topic at 0.5
    far = e[3]  # cosine 0 to the pool item
    decisions = select_novel(["close", "far"], np.stack([close, far]), ["p0"], e[[0]], threshold=0.75,
                             min_similarity=0.5)
    assert [(d.kept, d.reason) for d in decisions] == [(True, None), (False, "off_topic")]
    assert all(d.kept for d in select_novel(["close", "far"], np.stack([close, far]), ["p0"], e[[0]], 0.75))
    with pytest.raises(ValueError, match="min_similarity"):
        GrowConfig(min_similarity=0.7, threshold=0.6)


def test_one_item_requests_use_the_one_item_wording_and_record_unparsed_answers(tmp_path):
    answers = iter(["A 70-year-old retired ferry pilot from Oban who paints gulls and lives with two cats.",
                    "Here are the profiles:"] * 10)
    backend = ScriptedBackend(fn=lambda messages, config: next(answers))
    cfg = GrowConfig(kind="profile", output_dir=str(tmp_path), max_rounds=1, progress=False, requests_per_round=2)
    summary = grow_pool(cfg, backend=backend, embedder=WordEmbedder())
    assert cfg.per_round == 1 and summary["kept"] == 1
    prompt = backend.calls[0][0][0][1]["content"]
    assert "Write one new profile" in prompt and "one per line" not in prompt
    (record,) = [json.loads(x) for x in (tmp_path / "profiles_rounds.jsonl").read_text().splitlines()]
    assert record["candidates"] == 1 and record["unparsed"] == 1
    assert record["unparsed_examples"] == ["Here are the profiles:"]


def test_select_novel_uses_pool_and_earlier_kept_candidates():
    e = np.eye(4, dtype=np.float32)
    pool = e[[0]]
    near = (e[0] * 0.9 + e[1] * 0.1) / np.linalg.norm(e[0] * 0.9 + e[1] * 0.1)
    cands = np.stack([near, e[2], e[2], e[3]])
    decisions = select_novel(["near", "c", "c-again", "d"], cands, ["p0"], pool, threshold=0.6)
    assert [d.kept for d in decisions] == [False, True, False, True]
    assert decisions[0].nearest == "p0" and decisions[0].similarity > 0.9
    assert decisions[2].nearest == "candidate:1" and decisions[2].similarity == pytest.approx(1.0)
    assert decisions[3].similarity == pytest.approx(0.0, abs=1e-6)


def _answer(round_words):
    def fn(messages, config):
        seed = config.seed
        return "\n".join(f"- person {w}{seed} lives somewhere named {w}{seed}ville with hobby {w}{seed}ing"
                         for w in round_words)
    return fn


def test_grow_pool_records_provenance_and_resumes(tmp_path):
    backend = ScriptedBackend(fn=_answer(["alpha", "beta", "gamma", "alpha"]))
    cfg = GrowConfig(kind="profile", output_dir=str(tmp_path), max_rounds=1, progress=False, per_round=4, seed=1)
    summary = grow_pool(cfg, backend=backend, embedder=WordEmbedder())
    assert summary["rounds"] == 1 and summary["seeds"] == 24
    rows = [json.loads(line) for line in (tmp_path / "profiles.jsonl").read_text().splitlines()]
    grown = [r for r in rows if r["round"] == 1]
    assert len(grown) == 3  # the repeated "alpha" line is parsed once
    assert all(r["generator"] == "fake/model" and r["nearest"] and r["similarity"] is not None for r in grown)
    prompt = backend.calls[0][0][0][1]["content"]
    assert prompt.count("\n- ") >= 4 and "Write 4 new profiles" in prompt

    # a crash after the pool append but before the round log line: those rows are dropped on resume
    with open(tmp_path / "profiles.jsonl", "a") as fh:
        fh.write(json.dumps({"id": "profile-09999", "text": "orphan row", "round": 2}) + "\n")
    state = open_pool(GrowConfig(kind="profile", output_dir=str(tmp_path)))
    assert len(state.rows) == 24 + 3 and len(state.rounds) == 1

    again = grow_pool(GrowConfig(kind="profile", output_dir=str(tmp_path), max_rounds=2, progress=False, per_round=4,
                                 seed=1), backend=backend, embedder=WordEmbedder())
    assert again["rounds"] == 2 and len(backend.calls) == 2
    rounds = [json.loads(x) for x in (tmp_path / "profiles_rounds.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rounds] == [1, 2]
    ids = [r.id for r in read_any_pool(str(tmp_path / "profiles.jsonl"), "x")]
    assert len(ids) == len(set(ids)) == again["pool_size"]
    meta = json.loads((tmp_path / "profiles_meta.json").read_text())
    assert meta["embedder"] == "test/bag-of-words" and meta["threshold"] == 0.6


def test_grow_stops_when_acceptance_falls(tmp_path):
    backend = ScriptedBackend(answers=["- the very same profile text every single time, always"])
    cfg = GrowConfig(kind="personality", output_dir=str(tmp_path), max_rounds=10, window=2, min_acceptance=0.3,
                     progress=False)
    summary = grow_pool(cfg, backend=backend, embedder=WordEmbedder())
    # round 1 keeps it, round 2 rejects it: acceptance over 2 rounds = 0.5; round 3 rejects: 0.0 < 0.3
    assert summary["rounds"] == 3 and summary["kept"] == 1 and summary["rejected"] == 2
    assert "acceptance" in summary["stopped"]
    rejected = [json.loads(x) for x in (tmp_path / "personalities_rejected.jsonl").read_text().splitlines()]
    assert rejected[0]["similarity"] == pytest.approx(1.0, abs=1e-5)


def test_grown_folder_is_a_persona_source(tmp_path):
    for kind in ("profile", "personality"):
        grow_pool(GrowConfig(kind=kind, output_dir=str(tmp_path), max_rounds=1, progress=False, per_round=2),
                  backend=ScriptedBackend(fn=_answer(["delta", "omega"])), embedder=WordEmbedder())
    personas = load_persona_set(str(tmp_path), max_personalities=None)
    assert len(personas) == 26 * 26


def test_bad_pool_file_names_the_line(tmp_path):
    (tmp_path / "profiles.jsonl").write_text('{"id": "a", "text": "fine"}\n{"id": "b", "text": \n')
    with pytest.raises(PersonaFileError, match=r"profiles.jsonl:2"):
        open_pool(GrowConfig(kind="profile", output_dir=str(tmp_path)))


def test_overlap_reports_closest_pairs():
    from aloe_bench.core.personas import PoolItem

    a = [PoolItem("a1", "red apple pie"), PoolItem("a2", "blue ocean waves")]
    b = [PoolItem("b1", "green forest walks"), PoolItem("b2", "red apple tart")]
    report = pool_overlap(a, b, WordEmbedder(), top=2)
    assert report["closest_pairs"][0]["a_id"] == "a1" and report["closest_pairs"][0]["b_id"] == "b2"
    assert report["max_similarity"] == report["closest_pairs"][0]["similarity"]


@pytest.fixture(scope="module")
def minilm():
    from aloe_bench.training.persona_pools import load_embedder

    return load_embedder()


def test_bench_matches_naive_similarities_with_minilm(minilm):
    result = bench_dedup(n_candidates=12, pool_size=10, naive_pairs=6, embedder=minilm)
    assert result["pairs"] == 120 and result["naive_pairs_timed"] == 6 and result["naive_extrapolated"] is True
    assert result["max_abs_similarity_difference"] < 1e-4
    assert result["speedup"] == pytest.approx(result["naive_s"] / result["fast_s"], rel=0.05)
    assert result["embedder"] == "sentence-transformers/all-MiniLM-L6-v2"


def test_eval_personas_are_distinct_from_training_seeds(minilm):
    from aloe_bench.core.personas import packaged_data, read_pool

    for kind in ("profiles", "personalities"):
        report = pool_overlap(read_pool(packaged_data(f"eval_{kind}.jsonl"), "e"),
                              read_pool(packaged_data(f"seed_{kind}.jsonl"), "s"), minilm, top=3)
        assert report["max_similarity"] < 0.8, report["closest_pairs"][0]
