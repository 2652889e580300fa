"""`aloe train online`: rollouts, pairs, KTO labels, refusals and resume, on scripted backends (no model)."""

import json
import re

import pytest

from aloe_bench.core.errors import ConfigError
from aloe_bench.testing.backends import ScriptedBackend
from aloe_bench.training.online import (OnlineConfig, RoundDataError, dpo_pairs, kto_rows, overlap_report,
                                        run_online)

WORDS = ["alpha", "beta", "gamma"]


def policy_reply(messages, config):
    return f"{WORDS[config.seed % 3]} reply"


def judge_by_word(scores):
    """A judge answering by the candidate word it is shown; None answers garbage (a failed judgement)."""
    def answer(messages, config):
        text = messages[-1]["content"]
        for word, score in scores.items():
            if f"{word} reply" in text:
                return "no idea" if score is None else str(score)
        return "3"
    return answer


def persona_file(tmp_path, n=2):
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps({"profile": f"Trainee {i} builds wooden boats on a quiet lake.",
                                        "personality": "Curt and practical."}) + "\n" for i in range(n)))
    return str(path)


def fake_train(calls):
    def train(cfg, policy_path, data_folder, config, out):
        calls.append((policy_path, str(data_folder), config))
        out.mkdir(parents=True, exist_ok=True)
        return {"train": {"train_loss": 0.5}}
    return train


def run(tmp_path, scores, train_calls, **overrides):
    policies = []

    def policy(path):
        backend = ScriptedBackend(fn=policy_reply, name=str(path))
        policies.append(backend)
        return backend
    cfg = OnlineConfig(personas=persona_file(tmp_path), output_dir=str(tmp_path / "out"), overlap_check="text",
                       **{"rounds": 2, "turns": 2, "candidates": 3, **overrides})
    table = run_online(cfg, policy_backend=policy, user_backend=ScriptedBackend(["Tell me about sailing then."]),
                       judge_backend=ScriptedBackend(fn=judge_by_word(scores)), train_fn=fake_train(train_calls))
    return table, policies


def read_rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_pairs_reject_the_policys_own_worst_and_count_failures(tmp_path):
    calls = []
    table, _ = run(tmp_path, {"alpha": 2, "beta": 5, "gamma": None}, calls)
    assert [e["round"] for e in table] == [1, 2]
    assert calls[1][0].endswith("round-01/checkpoint")  # round 2 trains from round 1's checkpoint
    import datasets
    rows = read_rows(tmp_path / "out/round-01/rollouts.jsonl")
    assert len(rows) == 4
    pairs = datasets.load_dataset(str(tmp_path / "out/round-01/data"), "dpo", split="train")
    assert len(pairs) == 4
    for pair in pairs:
        assert pair["rejected"][0]["content"] == "alpha reply" and pair["chosen"][0]["content"] == "beta reply"
    data = table[0]["data"]
    assert data["failed_candidates"] == 4 and data["pairs"] == 4
    for row in rows:  # the gamma candidate is recorded as a failure, never a number; best continues
        assert row["candidates"][row["continued"]]["reply"] == "beta reply"
        assert any(c["score"] is None and c["error"] for c in row["candidates"])
    assert json.loads((tmp_path / "out/rounds.json").read_text())["rounds"][1]["round"] == 2


def test_ties_and_close_pairs_are_dropped_and_counted():
    row = {"history": [], "user": "hi", "candidates": [{"reply": "a", "score": 3}, {"reply": "b", "score": 3}]}
    close = {"history": [], "user": "hi", "candidates": [{"reply": "a", "score": 3}, {"reply": "b", "score": 3.2}]}
    failed = {"history": [], "user": "hi", "candidates": [{"reply": "a", "score": None}, {"reply": "b", "score": 4}]}
    pairs, counts = dpo_pairs([row, close, failed], margin=0.5)
    assert pairs == [] and counts["ties"] == 1 and counts["below_margin"] == 1 and counts["too_few"] == 1
    assert counts["failed_candidates"] == 1


def test_a_round_of_ties_stops_with_one_line(tmp_path):
    with pytest.raises(RoundDataError, match="no usable pair"):
        run(tmp_path, {"alpha": 4, "beta": 4, "gamma": 4}, [])


def test_kto_labels_follow_the_threshold():
    rows = [{"history": [], "user": "hi", "candidates": [{"reply": "a", "score": 2}, {"reply": "b", "score": 4},
                                                           {"reply": "c", "score": None}]}]
    out, counts = kto_rows(rows, "3")
    assert [r["label"] for r in out] == [False, True] and counts["failed_candidates"] == 1
    out, counts = kto_rows(rows, "median")
    assert counts["threshold"] == 3 and [r["label"] for r in out] == [False, True]
    with pytest.raises(RoundDataError, match="one side"):
        kto_rows(rows, "1")


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError, match="candidates >= 2"):
        OnlineConfig(candidates=1, method="dpo")
    with pytest.raises(ConfigError, match="temperature"):
        OnlineConfig(candidates=2, temperature=0)
    with pytest.raises(ConfigError, match="method"):
        OnlineConfig(method="ppo")


def test_eval_personas_copied_into_training_are_refused():
    from aloe_bench.core.personas import Persona, load_persona_set

    held_out = list(load_persona_set("default"))
    copy = Persona("leak", "  " + held_out[0].profile.upper() + "!", "Calm.")
    with pytest.raises(ConfigError, match="verbatim"):
        overlap_report([copy], held_out)
    assert overlap_report([Persona("ok", "Builds boats.", "Calm.")], held_out)["verbatim_profiles"] == 0


class LetterEmbedder:
    """A stand-in sentence embedder: unit-norm letter counts (near-identical texts score near 1)."""

    def encode(self, texts, **kwargs):
        import numpy as np

        rows = np.array([[t.lower().count(c) for c in "abcdefghijklmnopqrstuvwxyz"] for t in texts], dtype=float)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_near_verbatim_eval_profiles_are_refused_and_close_ones_reported():
    from aloe_bench.core.personas import Persona

    held_out = [Persona("e1", "She is a marine biologist who studies cuttlefish in Hobart.", "Calm.")]
    near = Persona("t1", "She is a marine biologist who studies the cuttlefish in Hobart.", "Calm.")
    with pytest.raises(ConfigError, match="near-verbatim"):
        overlap_report([near], held_out, 0.95, LetterEmbedder())
    with pytest.warns(UserWarning, match="above 0.6"):
        report = overlap_report([Persona("t2", "He is a baker who studies bread in Hobart.", "Calm.")], held_out,
                                0.999, LetterEmbedder())
    assert report["profiles_above_0_6"] == 1 and report["max_profile_cosine"] < 0.999


def test_a_killed_run_resumes_at_its_step_and_never_redoes_a_round(tmp_path):
    calls = []

    def dies(*args):
        raise KeyboardInterrupt
    scores = {"alpha": 2, "beta": 5, "gamma": 3}
    with pytest.raises(KeyboardInterrupt):
        cfg = OnlineConfig(personas=persona_file(tmp_path), output_dir=str(tmp_path / "out"), overlap_check="text",
                           rounds=2, turns=2,
                           candidates=3)
        run_online(cfg, policy_backend=lambda p: ScriptedBackend(fn=policy_reply), train_fn=dies,
                   user_backend=ScriptedBackend(["Tell me about sailing then."]),
                   judge_backend=ScriptedBackend(fn=judge_by_word(scores)))
    log = tmp_path / "out/round-01/rollouts.jsonl"
    before = log.read_text()
    assert (tmp_path / "out/round-01/data/dpo").is_dir()
    table, policies = run(tmp_path, scores, calls)
    assert log.read_text() == before  # the rollouts were not redone
    assert not policies[0].calls  # round 1's policy generated nothing on resume
    assert len(calls) == 2
    table, policies = run(tmp_path, scores, calls)  # both rounds finished: nothing is redone
    assert len(calls) == 2 and not policies and [e["round"] for e in table] == [1, 2]


def test_a_torn_rollout_row_is_redone(tmp_path):
    calls = []
    scores = {"alpha": 2, "beta": 5, "gamma": 3}
    run(tmp_path, scores, calls, rounds=1)
    folder = tmp_path / "out/round-01"
    text = (folder / "rollouts.jsonl").read_text().splitlines()
    (folder / "rollouts.jsonl").write_text("\n".join(text[:3]) + "\n" + text[3][:20])
    for path in [folder / "checkpoint/aloe_round_done.json", folder / "data/aloe_round_data.json",
                 folder / "train.json"]:  # the state of a run killed while rolling out
        path.unlink()
    run(tmp_path, scores, calls, rounds=1)
    assert len(read_rows(folder / "rollouts.jsonl")) == 4 and len(calls) == 2


def test_local_revision_digests_weight_contents(tmp_path):
    from aloe_bench.core.backends.hf import folder_revision

    (tmp_path / "config.json").write_text("{}")
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"a" * 64)
    first = folder_revision(tmp_path)
    assert folder_revision(tmp_path) == first
    weights.write_bytes(b"b" * 64)  # retrained into the same folder: same size, new contents
    assert folder_revision(tmp_path) != first


@pytest.mark.slow
def test_tiny_preset_runs_two_rounds_on_the_embedded_model(tmp_path):
    from aloe_bench.commands.main import main

    out = tmp_path / "online"
    assert main(["train", "online", "--config", "training/recipes/embedded/online_tiny.yaml",
                 "--output_dir", str(out)]) == 0
    table = json.loads((out / "rounds.json").read_text())["rounds"]
    assert [e["round"] for e in table] == [1, 2]
    assert table[1]["policy"].endswith("round-01/checkpoint")
    for entry in table:
        assert entry["data"]["pairs"] >= 1 and entry["rollout_mean_score"] is not None
        assert (out / f"round-{entry['round']:02d}/checkpoint/model.safetensors").exists()


@pytest.mark.parametrize("name", ["online_tiny.yaml", "online_small.yaml"])
def test_online_presets_parse(name):
    from aloe_bench.core.recipes import read_recipe

    recipe = read_recipe(f"training/recipes/embedded/{name}", [OnlineConfig])
    cfg = OnlineConfig(**recipe)
    assert cfg.use_cpu and cfg.candidates >= 2


def test_a_kill_during_eval_does_not_retrain(tmp_path):
    calls = []

    def dies(checkpoint, folder):
        raise KeyboardInterrupt
    cfg = OnlineConfig(personas=persona_file(tmp_path), output_dir=str(tmp_path / "out"), overlap_check="text",
                       rounds=1, turns=1, candidates=3, eval_turns=1)
    kwargs = dict(policy_backend=lambda p: ScriptedBackend(fn=policy_reply), train_fn=fake_train(calls),
                  user_backend=ScriptedBackend(["Tell me about sailing then."]),
                  judge_backend=ScriptedBackend(fn=judge_by_word({"alpha": 2, "beta": 5, "gamma": 3})))
    with pytest.raises(KeyboardInterrupt):
        run_online(cfg, evaluate_fn=dies, **kwargs)
    run_online(cfg, evaluate_fn=lambda c, f: {"metrics": {"AL_avg": 3.0}}, **kwargs)
    assert len(calls) == 1


def test_each_round_is_evaluated_under_one_protocol_and_plotted(tmp_path):
    calls, evaluated = [], []

    def evaluate(checkpoint, folder):
        evaluated.append(checkpoint)
        al = 2.0 + len(evaluated)
        return {"metrics": {"AL": [al, al], "AL_avg": al, "IR": 0.0, "N_IR": 0.0,
                            "intervals": {"AL_avg": [al - 0.5, al + 0.5], "IR": [0, 0], "N_IR": [0, 0]}}}
    cfg = OnlineConfig(personas=persona_file(tmp_path), output_dir=str(tmp_path / "out"), overlap_check="text",
                       rounds=2, turns=1,
                       candidates=3, eval_turns=2)
    run_online(cfg, policy_backend=lambda p: ScriptedBackend(fn=policy_reply), train_fn=fake_train(calls),
               user_backend=ScriptedBackend(["Tell me about sailing then."]), evaluate_fn=evaluate,
               judge_backend=ScriptedBackend(fn=judge_by_word({"alpha": 2, "beta": 5, "gamma": 3})))
    table = json.loads((tmp_path / "out/rounds.json").read_text())
    assert [e["eval"]["AL_avg"] for e in table["rounds"]] == [3.0, 4.0]
    assert evaluated[1].endswith("round-02/checkpoint") and table["eval_protocol"]["turns"] == 2
    card = (tmp_path / "out/round-02/checkpoint/aloe_rounds.md").read_text()
    assert "| 1 | 2 |" in card and "| 2 | 2 |" in card and "4.000" in card
    pytest.importorskip("matplotlib")
    assert (tmp_path / "out/al_by_round.png").stat().st_size > 0 and table["plot"] == "al_by_round.png"


def test_flags_override_the_online_recipe():
    from aloe_bench.core.recipes import RecipeParser, dataclass_from_args

    args = RecipeParser([OnlineConfig]).parse_args(["--config", "training/recipes/embedded/online_tiny.yaml",
                                                    "--rounds", "5", "--method", "kto"])
    cfg = dataclass_from_args(args, OnlineConfig)
    assert cfg.rounds == 5 and cfg.method == "kto" and cfg.max_new_tokens == 16
