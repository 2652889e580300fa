"""`aloe judge` commands end to end on files: agree prints JSON, push-ratings builds a loadable folder offline."""

from __future__ import annotations

import json

from datasets import load_dataset

from aloe_bench.commands.main import main
from aloe_bench.core.ratings import append_rating, rating_record
from test_judge_agreement import _write_run


def test_agree_command_prints_json_and_names_bad_input(tmp_path, capsys):
    scores = {(f"p{i}", t): float(1 + (i * t) % 5) for i in range(5) for t in (1, 2)}
    _write_run(tmp_path / "a", "20260101T000000", scores)
    _write_run(tmp_path / "b", "20260101T000001", {k: min(5.0, v + 1) for k, v in scores.items()})
    assert main(["judge", "agree", str(tmp_path / "a"), str(tmp_path / "b"), "--resamples", "20",
                 "--output", str(tmp_path / "agree.json")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["pairs"][0]["pairs"] == 10 and report["pairs"][0]["mean_difference"] < 0
    assert json.loads((tmp_path / "agree.json").read_text()) == report
    assert main(["judge", "agree", str(tmp_path / "a"), str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err


def test_push_ratings_local_dir_is_loadable_and_offline_push_fails_cleanly(tmp_path, capsys, monkeypatch):
    files = []
    for rater in ("ann", "bob"):
        path = tmp_path / f"ratings-{rater}.jsonl"
        append_rating(path, rating_record(rater, "r1", "p1", 1, 2))
        append_rating(path, rating_record(rater, "r1", "p1", 1, 4))  # re-rated: the last one is published
        append_rating(path, rating_record(rater, "r1", "p2", 1, None))
        files.append(str(path))
    out = tmp_path / "hub"
    assert main(["judge", "push-ratings", *files, "--repo-id", "org/ratings", "--local-dir", str(out)]) == 0
    rows = load_dataset(str(out), "ratings", split="train", cache_dir=str(tmp_path / "cache"))
    assert sorted((r["rater"], r["persona_id"], r["score"]) for r in rows) == [
        ("ann", "p1", 4), ("ann", "p2", None), ("bob", "p1", 4), ("bob", "p2", None)]
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    capsys.readouterr()
    assert main(["judge", "push-ratings", *files, "--repo-id", "org/ratings"]) == 1
    assert "nothing was pushed" in capsys.readouterr().err
