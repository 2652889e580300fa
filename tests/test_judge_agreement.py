"""Agreement statistics against hand-computed cases; run folders, samples and ratings files as sources."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aloe_bench.core.ratings import RatingsError, append_rating, latest_ratings, rating_record, read_ratings
from aloe_bench.core.run_files import RunFileError, find_run
from aloe_bench.harness.agreement import Rater, agree, compare, inter_rater, length_bias, pair_statistics


def test_kappa_and_correlations_match_hand_computed_values():
    a = np.array([1, 2, 3, 4, 5, 5])
    b = np.array([1, 2, 3, 4, 4, 5])
    s = pair_statistics(a, b)
    # p_o = 5/6; marginals a: 1,1,1,1,2 /6, b: 1,1,1,2,1 /6 -> p_e = (1+1+1+2+2)/36 = 7/36
    assert s["kappa"] == pytest.approx((5 / 6 - 7 / 36) / (1 - 7 / 36), abs=1e-6)
    # quadratic weights w_ij = (i-j)^2/16; observed disagreement: one pair at distance 1 -> (1/16)/6
    expected_w = [[(i - j) ** 2 / 16 for j in range(5)] for i in range(5)]
    pa, pb = np.array([1, 1, 1, 1, 2]) / 6, np.array([1, 1, 1, 2, 1]) / 6
    observed = (1 / 16) / 6
    chance = sum(expected_w[i][j] * pa[i] * pb[j] for i in range(5) for j in range(5))
    assert s["kappa_quadratic"] == pytest.approx(1 - observed / chance, abs=1e-6)
    assert s["exact"] == pytest.approx(5 / 6, abs=1e-6) and s["within_1"] == 1.0
    assert s["mean_difference"] == pytest.approx(1 / 6, abs=1e-6)
    # Pearson by hand: a mean 20/6, b mean 19/6
    da, db = a - a.mean(), b - b.mean()
    assert s["pearson"] == pytest.approx((da @ db) / np.sqrt((da @ da) * (db @ db)), abs=1e-6)
    # Spearman: ranks a = 1,2,3,4,5.5,5.5; b = 1,2,3,4.5,4.5,6 -> Pearson of the ranks
    ra, rb = np.array([1, 2, 3, 4, 5.5, 5.5]), np.array([1, 2, 3, 4.5, 4.5, 6])
    ra, rb = ra - ra.mean(), rb - rb.mean()
    assert s["spearman"] == pytest.approx((ra @ rb) / np.sqrt((ra @ ra) * (rb @ rb)), abs=1e-6)


def test_fractional_scores_are_rounded_for_kappa_only():
    s = pair_statistics(np.array([1.4, 2.6, 4.51]), np.array([1.0, 3.0, 5.0]))
    assert s["exact"] == 1.0 and s["kappa"] == 1.0
    assert s["mean_difference"] == pytest.approx((0.4 - 0.4 - 0.49) / 3, abs=1e-6)


def test_all_equal_scores_give_null_with_a_reason_not_a_number():
    s = pair_statistics(np.array([3, 3, 3]), np.array([3, 3, 3]))
    assert s["exact"] == 1.0
    for name in ("kappa", "kappa_quadratic", "spearman", "pearson"):
        assert s[name] is None and s["undefined"][name]
    one_sided = pair_statistics(np.array([3, 3, 3]), np.array([1, 2, 3]))
    assert one_sided["spearman"] is None and "rater A" in one_sided["undefined"]["spearman"]
    assert one_sided["kappa"] == 0.0  # defined: the other rater varies, agreement is at chance
    empty = pair_statistics(np.array([]), np.array([]))
    assert empty["pairs"] == 0 and empty["kappa"] is None and empty["undefined"]["kappa"] == "no paired rows"


def test_missing_pairs_and_failures_are_left_out_and_counted():
    a = Rater("a", {("p1", 1): 1.0, ("p1", 2): 2.0, ("p2", 1): None, ("p2", 2): 4.0, ("p3", 1): 5.0})
    b = Rater("b", {("p1", 1): 1.0, ("p1", 2): 3.0, ("p2", 1): 3.0, ("p2", 2): 4.0, ("p4", 1): 2.0})
    result = compare(a, b, n_resamples=50)
    assert result["pairs"] == 3 and result["rows_only_in_a"] == 1 and result["rows_only_in_b"] == 1
    assert result["shared_rows_with_a_failure"] == 1 and result["shared_rows_with_b_failure"] == 0
    assert result["per_turn"]["1"]["pairs"] == 1 and result["per_turn"]["2"]["pairs"] == 2
    assert result["mean_difference"] == pytest.approx(-1 / 3, abs=1e-6)
    low, high = result["bootstrap"]["mean_difference"]["interval"]
    assert low <= result["mean_difference"] <= high


def test_length_bias_and_inter_rater_alpha():
    keys = [(f"p{i}", 1) for i in range(6)]
    judge = Rater("j", dict(zip(keys, [1.0, 2.0, 3.0, 4.0, 5.0, 5.0])), dict(zip(keys, [10, 20, 30, 40, 50, 60])))
    assert length_bias(judge)["spearman"] > 0.9
    flat = Rater("f", dict(zip(keys, [3.0] * 6)), dict(zip(keys, [10, 20, 30, 40, 50, 60])))
    assert length_bias(flat)["spearman"] is None
    same = [Rater(n, dict(zip(keys, [1.0, 2.0, 3.0, 4.0, 5.0, 5.0]))) for n in "xyz"]
    block = inter_rater(same)
    assert block["krippendorff_alpha_ordinal"] == pytest.approx(1.0)
    assert block["mean_pairwise_kappa"] == pytest.approx(1.0)
    noisy = inter_rater([same[0], same[1], Rater("w", dict(zip(keys, [5.0, 4.0, 3.0, 2.0, 1.0, 1.0])))])
    assert noisy["krippendorff_alpha_interval"] < 0.5


def _write_run(folder, run_id, scores, judge="fake (paper, text)"):
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"samples_{run_id}.jsonl", "w") as fh:
        for (persona, turn), score in scores.items():
            fh.write(json.dumps({"persona_id": persona, "turn": turn, "user_message": "hi", "reply": "x" * (turn * 7),
                                 "score": score, "error": None}) + "\n")
    (folder / f"results_{run_id}.json").write_text(json.dumps({"run_id": run_id, "judge": judge}))


def test_agree_reads_both_layouts_samples_and_ratings_files(tmp_path):
    scores = {(f"p{i}", t): float(1 + (i + t) % 5) for i in range(4) for t in (1, 2)}
    _write_run(tmp_path / "a", "20260101T000000", scores)
    _write_run(tmp_path / "b" / "some-model", "20260101T000001", {**scores, ("p0", 1): None})
    ratings = tmp_path / "ratings-ann.jsonl"
    for (persona, turn), score in scores.items():
        append_rating(ratings, rating_record("ann", "r", persona, turn, 1))  # replaced below: last one wins
        append_rating(ratings, rating_record("ann", "r", persona, turn, int(score)))
    report = agree([str(tmp_path / "a"), str(tmp_path / "b"), str(ratings)], n_resamples=20)
    assert [r["rows"] for r in report["raters"]] == [8, 8, 8]
    assert report["raters"][1]["failures"] == 1 and report["raters"][1]["failure_share"] == 0.125
    assert report["raters"][2]["kind"] == "human" and report["raters"][2]["length_bias"]["spearman"] is None
    a_vs_human = report["pairs"][1]
    assert a_vs_human["pairs"] == 8 and a_vs_human["kappa"] == 1.0  # the latest rating of each row counted
    assert report["pairs"][0]["pairs"] == 7 and "rounded" in report["note"]
    assert "inter_rater" in report and report["inter_rater"]["units"] == 8


def test_several_runs_in_a_folder_need_a_run_id(tmp_path):
    _write_run(tmp_path / "m1", "20260101T000000", {("p0", 1): 1.0})
    _write_run(tmp_path / "m2", "20260101T000009", {("p0", 1): 1.0})
    with pytest.raises(RunFileError, match="--run-id"):
        find_run(tmp_path)
    assert find_run(tmp_path, "20260101T000009").samples_path.parent.name == "m2"
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunFileError, match="no samples_"):
        find_run(tmp_path / "empty")


def test_ratings_file_errors_name_file_and_line(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps({"rater": "a", "run_id": "r", "persona_id": "p", "turn": 1, "score": 7,
                                "time": "t"}) + "\n")
    with pytest.raises(RatingsError, match=r"r.jsonl:1: field 'score'"):
        read_ratings(path)
    with pytest.raises(RatingsError):
        rating_record("bad id/../x", "r", "p", 1, 3)
    recs = [rating_record("a", "r", "p", 1, 2), rating_record("a", "r", "p", 1, None)]
    assert latest_ratings(recs)[("a", "r", "p", 1)]["score"] is None


def test_agree_reads_any_jsonl_of_scored_rows_by_its_content(tmp_path, capsys):
    from aloe_bench.commands.main import main
    from aloe_bench.harness.agreement import ScoredRowsError

    scores = {(f"p{i}", t): float(1 + (i + t) % 5) for i in range(4) for t in (1, 2)}
    _write_run(tmp_path / "a", "20260101T000000", scores)
    other = tmp_path / "their harness output.jsonl"  # any name: recognised by its columns
    other.write_text("".join(json.dumps({"persona": p, "turn": t, "rating": None if (p, t) == ("p3", 2) else s,
                                         "model": "x"}) + "\n" for (p, t), s in scores.items()))
    report = agree([str(tmp_path / "a"), str(other)], n_resamples=20)
    assert report["raters"][1]["name"] == "their harness output" and report["raters"][1]["rows"] == 8
    assert report["raters"][1]["failures"] == 1
    assert report["pairs"][0]["pairs"] == 7 and report["pairs"][0]["exact"] == 1.0

    bad = tmp_path / "scores.jsonl"
    bad.write_text(json.dumps({"persona_id": "p0", "turn": 1, "score": 3}) + "\n"
                   + json.dumps({"persona_id": "p1", "score": 2}) + "\n")
    with pytest.raises(ScoredRowsError, match=r"scores.jsonl:2: row lacks turn \(turn\)"):
        agree([str(tmp_path / "a"), str(bad)], n_resamples=20)
    bad.write_text(json.dumps({"persona_id": "p0", "turn": "first", "score": 3}) + "\n")
    with pytest.raises(ScoredRowsError, match=r"scores.jsonl:1: turn must be an integer"):
        agree([str(tmp_path / "a"), str(bad)], n_resamples=20)
    capsys.readouterr()
    assert main(["judge", "agree", str(tmp_path / "a"), str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "scores.jsonl:1:" in err[0]
