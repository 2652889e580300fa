"""`aloe train online`: rollouts, pairs, KTO labels, refusals and resume, on scripted backends (no model)."""

import json
import re
import shutil

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
                       judge_backend=ScriptedBackend(fn=judge_by_word(scores)), train_fn=fake_train(train_calls),
                       teacher_backend=ScriptedBackend(fn=teacher_backend))
    return table, policies


def fake_eval(evaluated, al=lambda n: 3.0):
    """A harness stand-in: one eval persona, two turns, replies naming the checkpoint; writes its samples log."""
    from aloe_bench.core.personas import load_persona_set

    persona = list(load_persona_set("default", split="test"))[0]

    def evaluate(checkpoint, folder):
        evaluated.append(checkpoint)
        folder.mkdir(parents=True, exist_ok=True)
        rows = [{"persona_id": persona.id, "turn": t, "user_message": f"question {t}",
                 "reply": f"eval reply by {checkpoint}"} for t in (1, 2)]
        (folder / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        value = al(len(evaluated))
        return {"metrics": {"AL": [value, value], "AL_avg": value, "IR": 0.0, "N_IR": 0.0,
                            "intervals": {"AL_avg": [value - 0.5, value + 0.5], "IR": [0, 0], "N_IR": [0, 0]}},
                "files": {"samples": "samples.jsonl"}}
    return evaluate


def read_rows_of_parquet(path):
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


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
def test_tiny_preset_runs_two_rounds_on_the_embedded_model(tmp_path, monkeypatch):
    import huggingface_hub

    from aloe_bench.commands.main import main

    uploads = []

    class FakeApi:  # the Hub client's upload API, recording what would be sent
        def __init__(self, token=None):
            pass

        def create_repo(self, repo_id, **kw):
            pass

        def upload_folder(self, repo_id, repo_type, folder_path, commit_message):
            uploads.append((repo_id, repo_type, folder_path))
            return "https://huggingface.co/commit"
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    out = tmp_path / "online"
    assert main(["train", "online", "--config", "training/recipes/embedded/online_tiny.yaml",
                 "--output_dir", str(out), "--push_to_hub", "org/tiny", "--push_rounds_data", "true"]) == 0
    assert [(repo, kind) for repo, kind, _ in uploads] == [("org/tiny", "model"), ("org/tiny-rounds", "dataset")]
    card = (out / "round-02/checkpoint/hub/README.md").read_text()
    # the harness results of round 2's eval as model-index, and the section listing every round
    assert "model-index" in card and "## Online preference rounds" in card and "| 2 | round-02/data (dpo) |" in card
    assert "HuggingFaceTB/SmolLM2-135M-Instruct" in card
    table = json.loads((out / "rounds.json").read_text())["rounds"]
    assert [e["round"] for e in table] == [0, 1, 2]  # round 0: the starting policy under the same protocol
    assert table[0]["eval"]["AL_avg"] is not None and table[0]["win_rate"] is None
    assert table[2]["policy"].endswith("round-01/checkpoint")
    for entry in table[1:]:
        assert entry["data"]["pairs"] >= 1 and entry["rollout_mean_score"] is not None
        assert (out / f"round-{entry['round']:02d}/checkpoint/model.safetensors").exists()
        wins = entry["win_rate"]  # every eval state judged in both orders: a win, a loss, a tie or a failure
        assert wins["judged"] + wins["failures"] == 2 and wins["wins"] + wins["losses"] + wins["ties"] == wins["judged"]


@pytest.mark.slow
def test_a_lora_round_with_a_teacher_merges_its_adapter_into_its_own_checkpoint(tmp_path):
    from transformers import AutoModelForCausalLM

    from aloe_bench.commands.main import main

    out = tmp_path / "lora"
    assert main(["train", "online", "--config", "training/recipes/embedded/online_tiny.yaml", "--output_dir", str(out),
                 "--use_peft", "true", "--lora_r", "4", "--lora_alpha", "8", "--learning_rate", "1e-3",
                 "--eval_turns", "0", "--teacher", "true"]) == 0
    for row in read_rows(out / "round-01/rollouts.jsonl"):  # the teacher's candidate: a reply or a recorded failure
        teacher = row["candidates"][-1]
        assert teacher["source"] == "teacher" and (teacher["reply"] or teacher["error"])
    for pair in read_rows_of_parquet(out / "round-01/data/dpo/train-00000-of-00001.parquet"):
        assert pair["rejected"][0]["content"] in {c["reply"] for row in read_rows(out / "round-01/rollouts.jsonl")
                                                  for c in row["candidates"] if c["source"] == "policy"}
    for r in (1, 2):
        checkpoint = out / f"round-0{r}/checkpoint"
        assert (checkpoint / "model.safetensors").exists() and not (checkpoint / "adapter_config.json").exists()
        assert json.loads((checkpoint / "aloe_training.json").read_text())["lora"] is True
    # round 2 rolled out and trained from round 1's merged checkpoint, which loads as a plain model
    assert json.loads((out / "round-02/round.json").read_text())["policy"].endswith("round-01/checkpoint")
    model = AutoModelForCausalLM.from_pretrained(out / "round-02/checkpoint")
    assert not hasattr(model, "peft_config")
    from safetensors.torch import load_file
    before, after = (load_file(out / f"round-0{r}/checkpoint/model.safetensors") for r in (1, 2))
    assert any(not before[k].equal(after[k]) for k in before if "q_proj" in k or "v_proj" in k)


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
    evaluated = []
    with pytest.raises(KeyboardInterrupt):
        run_online(cfg, evaluate_fn=lambda c, f: dies(c, f) if evaluated else fake_eval(evaluated)(c, f), **kwargs)
    assert evaluated == ["embedded"]  # round 0 was evaluated, then the kill came during round 1's eval
    run_online(cfg, evaluate_fn=fake_eval(evaluated), **kwargs)
    assert len(calls) == 1 and len(evaluated) == 2  # round 0 is not evaluated again, round 1 not retrained


def test_each_round_is_evaluated_under_one_protocol_and_plotted(tmp_path):
    calls, evaluated = [], []
    evaluate = fake_eval(evaluated, al=lambda n: 1.0 + n)
    cfg = OnlineConfig(personas=persona_file(tmp_path), output_dir=str(tmp_path / "out"), overlap_check="text",
                       rounds=2, turns=1,
                       candidates=3, eval_turns=2)
    run_online(cfg, policy_backend=lambda p: ScriptedBackend(fn=policy_reply), train_fn=fake_train(calls),
               user_backend=ScriptedBackend(["Tell me about sailing then."]), evaluate_fn=evaluate,
               judge_backend=ScriptedBackend(fn=judge_by_word({"alpha": 2, "beta": 5, "gamma": 3})))
    table = json.loads((tmp_path / "out/rounds.json").read_text())
    assert [e["round"] for e in table["rounds"]] == [0, 1, 2]  # round 0: the starting policy, same protocol
    assert [e["eval"]["AL_avg"] for e in table["rounds"]] == [2.0, 3.0, 4.0]
    assert evaluated == ["embedded", *(str(tmp_path / f"out/round-0{r}/checkpoint") for r in (1, 2))]
    assert table["eval_protocol"]["turns"] == 2
    card = (tmp_path / "out/round-02/checkpoint/aloe_rounds.md").read_text()
    assert "| 0 | - | - |" in card and "| 1 | round-01/data (dpo) | 2 |" in card and "4.000 [3.500, 4.500]" in card
    pytest.importorskip("matplotlib")
    assert (tmp_path / "out/al_by_round.png").stat().st_size > 0 and table["plot"] == "al_by_round.png"


def test_flags_override_the_online_recipe():
    from aloe_bench.core.recipes import RecipeParser, dataclass_from_args

    args = RecipeParser([OnlineConfig]).parse_args(["--config", "training/recipes/embedded/online_tiny.yaml",
                                                    "--rounds", "5", "--method", "kto"])
    cfg = dataclass_from_args(args, OnlineConfig)
    assert cfg.rounds == 5 and cfg.method == "kto" and cfg.max_new_tokens == 16
    args = RecipeParser([OnlineConfig]).parse_args([
        "--config", "training/recipes/embedded/online_tiny.yaml", "--teacher_model", "embedded", "--use_peft", "true",
        "--lora_target_modules", "q_proj", "v_proj", "--push_to_hub", "org/x", "--push_rounds_data", "true"])
    cfg = dataclass_from_args(args, OnlineConfig)
    assert cfg.teacher and cfg.use_peft and cfg.lora_target_modules == ["q_proj", "v_proj"]
    assert (cfg.push_to_hub, cfg.push_rounds_data) == ("org/x", True)


# --- win rate over the previous round, round 0, teacher candidate, push ------------------------------------------

def pair_judge(prefer):
    """A pair judge writing its letter: `prefer` "A" always (a position bias) or the reply holding a word."""
    def answer(messages, config):
        text = messages[-1]["content"]
        if prefer == "A":
            return "[[A]]"
        a = text.split("<<<A", 1)[1].split("A>>>", 1)[0]
        return "[[A]]" if prefer in a else "[[B]]"
    return answer


def run_with_eval(tmp_path, judge_fn, **overrides):
    calls, evaluated = [], []
    cfg = OnlineConfig(personas=persona_file(tmp_path), output_dir=str(tmp_path / "out"), overlap_check="text",
                       **{"rounds": 2, "turns": 1, "candidates": 3, "eval_turns": 2, **overrides})
    table = run_online(cfg, policy_backend=lambda p: ScriptedBackend(fn=policy_reply),
                       train_fn=fake_train(calls), user_backend=ScriptedBackend(["Tell me about sailing then."]),
                       evaluate_fn=fake_eval(evaluated),
                       judge_backend=ScriptedBackend(fn=judge_by_word({"alpha": 2, "beta": 5, "gamma": 3})),
                       pair_judge_backend=ScriptedBackend(fn=judge_fn))
    return table, json.loads((tmp_path / "out/rounds.json").read_text())


def test_a_position_biased_pair_judge_gives_only_ties(tmp_path):
    table, saved = run_with_eval(tmp_path, pair_judge("A"))
    assert table[0]["round"] == 0 and table[0]["win_rate"] is None  # nothing before the starting policy
    for entry in saved["rounds"][1:]:
        assert entry["win_rate"] == {"wins": 0, "losses": 0, "ties": 2, "failures": 0, "judged": 2,
                                     "win_rate": 0.5}
    states = json.loads((tmp_path / "out/round-02/win_rate.json").read_text())["states"]
    # the previous policy answered this round's eval states: its reply, the same user message and history
    assert [s["user_message"] for s in states] == ["question 1", "question 2"]
    assert states[1]["history"][1]["content"].startswith("eval reply by") and states[0]["previous_reply"]
    assert "0.500 (0/0/2)" in (tmp_path / "out/rounds.md").read_text()


def test_win_rate_counts_wins_and_losses_in_both_orders(tmp_path):
    _, saved = run_with_eval(tmp_path, pair_judge("eval reply"))
    assert saved["rounds"][1]["win_rate"]["wins"] == 2 and saved["rounds"][1]["win_rate"]["win_rate"] == 1.0
    shutil.rmtree(tmp_path / "out")
    _, saved = run_with_eval(tmp_path, pair_judge("alpha"))  # the previous policy's reply: "alpha reply" (seed 0)
    assert saved["rounds"][2]["win_rate"]["losses"] == 2 and saved["rounds"][2]["win_rate"]["win_rate"] == 0.0


def test_failed_pair_verdicts_are_counted_not_scored():
    from aloe_bench.training.online_winrate import count_wins

    verdicts = [{"winner": "current", "order_tie": False, "error": None},
                {"winner": None, "order_tie": True, "error": None},
                {"winner": None, "order_tie": False, "error": "pair judge (swapped): unparsable"}]
    assert count_wins(verdicts) == {"wins": 1, "losses": 0, "ties": 1, "failures": 1, "judged": 2,
                                    "win_rate": 0.75}
    assert count_wins(verdicts[2:])["win_rate"] is None


def test_round_zero_and_win_rates_resume_without_redoing(tmp_path):
    run_with_eval(tmp_path, pair_judge("A"))
    before = (tmp_path / "out/round-01/win_rate.json").read_text()
    calls, evaluated = [], []
    cfg = OnlineConfig(personas=persona_file(tmp_path), output_dir=str(tmp_path / "out"), overlap_check="text",
                       rounds=3, turns=1, candidates=3, eval_turns=2)
    judge = ScriptedBackend(fn=pair_judge("A"))
    table = run_online(cfg, policy_backend=lambda p: ScriptedBackend(fn=policy_reply), train_fn=fake_train(calls),
                       user_backend=ScriptedBackend(["Tell me about sailing then."]), evaluate_fn=fake_eval(evaluated),
                       judge_backend=ScriptedBackend(fn=judge_by_word({"alpha": 2, "beta": 5, "gamma": 3})),
                       pair_judge_backend=judge)
    assert [e["round"] for e in table] == [0, 1, 2, 3]
    assert evaluated == [str(tmp_path / "out/round-03/checkpoint")] and len(calls) == 1
    assert len(judge.calls) == 1 and (tmp_path / "out/round-01/win_rate.json").read_text() == before


def teacher_backend(messages, config):
    if messages[0]["content"].startswith("You know who a user really is"):  # the induction
        return "Profile: builds boats\nPersonality: curt"
    return "teacher reply"


def test_the_teacher_adds_a_candidate_that_is_never_the_rejected_reply(tmp_path):
    calls = []
    # the teacher's reply scores worst of all: it is still never a pair's rejected reply
    table, _ = run(tmp_path, {"alpha": 2, "beta": 5, "gamma": 3, "teacher": 1}, calls, teacher=True)
    rows = read_rows(tmp_path / "out/round-01/rollouts.jsonl")
    for row in rows:
        sources = [c["source"] for c in row["candidates"]]
        assert sources == ["policy"] * 3 + ["teacher"] and row["candidates"][3]["reply"] == "teacher reply"
        assert row["revealed"] is not None
    from aloe_bench.training.common import load_split  # content-addressed: a rebuilt folder is read afresh
    pairs = load_split(str(tmp_path / "out/round-01/data"), "dpo", "train")
    assert pairs["rejected"] == [[{"role": "assistant", "content": "alpha reply"}]] * 4
    shutil.rmtree(tmp_path / "out")
    table, _ = run(tmp_path, {"alpha": 2, "beta": 3, "gamma": 3, "teacher": 5}, calls, teacher=True)
    pairs = load_split(str(tmp_path / "out/round-01/data"), "dpo", "train")
    assert set(pairs["chosen_source"]) == {"teacher"} and table[0]["data"]["teacher_chosen"] == 4
    assert all(r[0]["content"] == "alpha reply" for r in pairs["rejected"])


def test_the_teacher_is_told_the_revealed_facts():
    from aloe_bench.core.personas import Persona
    from aloe_bench.training.online_teacher import Teacher

    backend = ScriptedBackend(fn=teacher_backend)
    out = Teacher(backend, 16).replies([Persona("p", "Builds boats.", "Curt.")], [[]], ["hello"], [[]], 0, 1)
    assert out == [{"reply": "teacher reply", "error": None, "revealed": ["builds boats", "curt"]}]
    responder_request = backend.calls[-1][0][0]
    assert "builds boats" in responder_request[-1]["content"] and "hello" in responder_request[-1]["content"]


def test_a_pair_with_only_the_teacher_scored_is_dropped():
    row = {"history": [], "user": "hi", "candidates": [
        {"reply": "a", "score": None, "source": "policy"}, {"reply": "t", "score": 5, "source": "teacher"}]}
    pairs, counts = dpo_pairs([row], margin=0)
    assert pairs == [] and counts["too_few"] == 1


def test_kto_keeps_the_teachers_reply_only_as_desirable():
    rows = [{"history": [], "user": "hi", "candidates": [
        {"reply": "a", "score": 2, "source": "policy"}, {"reply": "b", "score": 4, "source": "policy"},
        {"reply": "t", "score": 1, "source": "teacher"}]}]
    out, counts = kto_rows(rows, "3")
    assert [r["completion"][0]["content"] for r in out] == ["a", "b"] and counts["teacher_below_threshold"] == 1


def test_push_uploads_the_final_checkpoint_with_the_rounds_card_and_the_rounds_data(tmp_path, monkeypatch):
    import huggingface_hub

    uploads = []

    class FakeApi:
        def __init__(self, token=None):
            self.token = token

        def create_repo(self, repo_id, repo_type=None, private=False, exist_ok=False, **kw):
            uploads.append(("create", repo_id, repo_type, private))

        def upload_folder(self, repo_id, repo_type, folder_path, commit_message):
            files = sorted(str(p.relative_to(folder_path)) for p in __import__("pathlib").Path(folder_path).rglob("*")
                           if p.is_file())
            uploads.append(("upload", repo_id, repo_type, files, folder_path))
            return f"https://huggingface.co/{repo_id}/commit/abc"

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.setenv("HF_TOKEN", "hf_secret_token_value")

    def train(cfg, policy_path, data_folder, config, out):
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text("{}")
        (out / "model.safetensors").write_bytes(b"w")
        (out / "training_args.bin").write_bytes(b"x")
        return {"train": {"train_loss": 0.5}}
    cfg = OnlineConfig(personas=persona_file(tmp_path), output_dir=str(tmp_path / "out"), overlap_check="text",
                       rounds=2, turns=1, candidates=3, eval_turns=2, push_to_hub="org/online",
                       push_rounds_data=True)
    run_online(cfg, policy_backend=lambda p: ScriptedBackend(fn=policy_reply), train_fn=train,
               user_backend=ScriptedBackend(["Tell me about sailing then."]), evaluate_fn=fake_eval([]),
               judge_backend=ScriptedBackend(fn=judge_by_word({"alpha": 2, "beta": 5, "gamma": 3})),
               pair_judge_backend=ScriptedBackend(fn=pair_judge("A")))
    model = [u for u in uploads if u[0] == "upload" and u[2] == "model"][0]
    assert model[1] == "org/online" and model[4].endswith("round-02/checkpoint/hub")
    assert {"README.md", "config.json", "model.safetensors", "aloe_training.json", "aloe_recipe.yaml"} <= set(model[3])
    assert "training_args.bin" not in model[3]
    card = (tmp_path / "out/round-02/checkpoint/hub/README.md").read_text()
    assert "## Online preference rounds" in card and "| 2 | round-02/data (dpo) | 2 |" in card
    assert "| 0 | - | - |" in card and "0.500 (0/0/2)" in card and "HuggingFaceTB/SmolLM2-135M-Instruct" not in card
    assert "round 2 of `aloe train online`" in card
    from aloe_bench.training.card import build_push_folder  # `aloe train card` keeps the rounds section
    rebuilt = build_push_folder(tmp_path / "out/round-02/checkpoint")
    assert "## Online preference rounds" in (rebuilt / "README.md").read_text()
    info = json.loads((tmp_path / "out/round-02/checkpoint/aloe_training.json").read_text())
    assert info["online_round"] == 2 and info["parent_model"].endswith("round-01/checkpoint")
    data = [u for u in uploads if u[0] == "upload" and u[2] == "dataset"][0]
    assert data[1] == "org/online-rounds"
    assert {"README.md", "round-01/train-00000-of-00001.parquet", "round-02/aloe_round_data.json"} <= set(data[3])
    import datasets
    loaded = datasets.load_dataset(data[4], "round-02", split="train")  # the folder as the Hub repo lays it out
    assert len(loaded) == 2 and loaded[0]["rejected"][0]["content"] == "alpha reply"
    assert "hf_secret_token_value" not in (tmp_path / "out/round-02/checkpoint/hub/README.md").read_text()
    for path in (tmp_path / "out").rglob("*.json"):
        assert "hf_secret_token_value" not in path.read_text()


def test_push_settings_are_checked():
    with pytest.raises(ConfigError, match="push_rounds_data needs"):
        OnlineConfig(push_rounds_data=True)
    with pytest.raises(ConfigError, match="ORG/NAME"):
        OnlineConfig(push_to_hub="justaname")
    assert OnlineConfig(teacher_model="embedded").teacher


def test_a_kill_during_the_win_rate_resumes_there(tmp_path):
    calls, evaluated = [], []
    cfg = OnlineConfig(personas=persona_file(tmp_path), output_dir=str(tmp_path / "out"), overlap_check="text",
                       rounds=1, turns=1, candidates=3, eval_turns=2)

    def dies(messages, config):
        raise KeyboardInterrupt
    kwargs = dict(policy_backend=lambda p: ScriptedBackend(fn=policy_reply), train_fn=fake_train(calls),
                  user_backend=ScriptedBackend(["Tell me about sailing then."]), evaluate_fn=fake_eval(evaluated),
                  judge_backend=ScriptedBackend(fn=judge_by_word({"alpha": 2, "beta": 5, "gamma": 3})))
    with pytest.raises(KeyboardInterrupt):
        run_online(cfg, pair_judge_backend=ScriptedBackend(fn=dies), **kwargs)
    assert not (tmp_path / "out/round-01/win_rate.json").exists() and len(calls) == 1
    table = run_online(cfg, pair_judge_backend=ScriptedBackend(fn=pair_judge("A")), **kwargs)
    assert len(calls) == 1 and table[1]["win_rate"]["ties"] == 2  # not retrained; the win rate judged on resume


def test_backend_options_reach_every_role_and_the_round_eval(tmp_path, monkeypatch):
    """`aloe train online --engine ... --role_options ...`: parsed once at the command, the options reach the
    policy's rollouts, the user, the judge and the per-round eval (the policy's overrides become the evaluated
    model's); a role the command does not have is refused with one line."""
    import aloe_bench.core.backends as backends
    from aloe_bench.commands import train as train_command
    from aloe_bench.commands.main import build_parser

    built = []

    def fake_build(spec, options=None, *, base_url=None, revision=None, token=None):
        built.append((spec, options, base_url))
        if "judge" in spec:
            return ScriptedBackend(fn=judge_by_word({"alpha": 4, "beta": 2, "gamma": 3}), name=spec)
        if "user" in spec:
            return ScriptedBackend(["Tell me about sailing then."], name=spec)
        return ScriptedBackend(fn=policy_reply, name=spec)

    monkeypatch.setattr(backends, "build_backend", fake_build)
    evaluated = []

    def fake_evaluator(cfg, options, hidden_block=False):
        def evaluate(checkpoint, folder):
            evaluated.append(train_command._eval_options(options))
            return fake_eval([])(checkpoint, folder)
        return evaluate

    monkeypatch.setattr(train_command, "_round_evaluator", fake_evaluator)
    import functools

    import aloe_bench.training.online as online
    monkeypatch.setattr(online, "run_online", functools.partial(online.run_online, train_fn=fake_train([])))
    argv = ["train", "online", "--policy", "org/policy", "--personas", persona_file(tmp_path), "--rounds", "1",
            "--turns", "1", "--candidates", "2", "--overlap_check", "text", "--eval_turns", "1",
            "--user_model", "openai:user", "--user_base_url", "http://127.0.0.1:9/v1", "--judge_model", "org/judge",
            "--kv_cache_mb", "64", "--role_options", '{"policy": {"dtype": "bfloat16"}, "judge": {"batch_size": 3}}',
            "--output_dir", str(tmp_path / "out")]
    args = build_parser().parse_args(argv)
    assert args.handler(args) == 0
    by_spec = {spec: (options, url) for spec, options, url in built}
    assert by_spec["openai:user"][1] == "http://127.0.0.1:9/v1"
    assert by_spec["org/judge"][0].batch_size == 3 and by_spec["org/judge"][0].kv_cache_mb == 64
    policy = next(options for spec, options, _ in built if spec not in ("openai:user", "org/judge"))
    assert policy.dtype == "bfloat16" and policy.kv_cache_mb == 64 and policy.role_options is None
    assert evaluated and evaluated[0].role_options == {"model": {"dtype": "bfloat16"}, "judge": {"batch_size": 3}}
    bad = build_parser().parse_args([*argv[:-2], "--role_options", '{"model": {"dtype": "float32"}}',
                                     "--output_dir", str(tmp_path / "bad")])
    with pytest.raises(ConfigError, match=r"role_options.model: no such role here; the roles are policy, user"):
        bad.handler(bad)


# --- the round's training under accelerate launch ---------------------------------------------------------------

def test_a_launched_round_reads_back_its_metrics_and_a_failed_launch_is_one_line(tmp_path):
    from aloe_bench.training.online_round import REQUEST, LaunchError, launch_command, launched_train_round

    accel = tmp_path / "accel.yaml"
    accel.write_text("distributed_type: 'NO'\n")
    cfg = OnlineConfig(personas=persona_file(tmp_path), accelerate_config=str(accel))
    data = tmp_path / "round-01" / "data"
    data.mkdir(parents=True)
    seen = []

    def launched(command, **kwargs):
        seen.append(command)
        (data.parent / "train_metrics.json").write_text(json.dumps({"train": {"train_loss": 0.25}}))
        return type("Done", (), {"returncode": 0, "stdout": "", "stderr": ""})()

    metrics = launched_train_round(cfg, "org/policy", data, "dpo", data.parent / "checkpoint", run=launched)
    assert metrics == {"train": {"train_loss": 0.25}}
    request = json.loads((data.parent / REQUEST).read_text())
    assert (request["policy"], request["data_config"], request["config"]["accelerate_config"]) == (
        "org/policy", "dpo", str(accel))
    assert seen == [launch_command(str(accel), data.parent / REQUEST)]
    assert seen[0][1:5] == ["-m", "accelerate.commands.launch", "--config_file", str(accel)]

    def fails(command, **kwargs):
        return type("Done", (), {"returncode": 1, "stdout": "", "stderr": "a\nb\nCUDA out of memory\n"})()

    with pytest.raises(LaunchError, match=r"train_request.json: accelerate launch of the round's training failed "
                                          r"\(exit 1\): a \| b \| CUDA out of memory"):
        launched_train_round(cfg, "org/policy", data, "dpo", data.parent / "checkpoint", run=fails)
    with pytest.raises(ConfigError, match="accelerate_config: no such file"):
        OnlineConfig(accelerate_config=str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigError, match="accelerate_config: method grpo trains in this process"):
        OnlineConfig(accelerate_config=str(accel), method="grpo")


@pytest.mark.slow
def test_a_round_trains_under_a_real_accelerate_launch(tmp_path):
    """The embedded model trains one DPO round in a process started by `accelerate launch` (one CPU process);
    the rollouts run here on scripted backends."""
    from aloe_bench.training.common import resolve_model

    accel = tmp_path / "cpu.yaml"
    accel.write_text("compute_environment: LOCAL_MACHINE\ndistributed_type: 'NO'\nnum_machines: 1\n"
                     "num_processes: 1\nuse_cpu: true\nmixed_precision: 'no'\n")
    policy = resolve_model("embedded")[0]
    cfg = OnlineConfig(policy=policy, personas=persona_file(tmp_path), output_dir=str(tmp_path / "out"),
                       overlap_check="text", rounds=1, turns=1, candidates=2, max_steps=1, use_cpu=True,
                       per_device_train_batch_size=1, max_length=128, accelerate_config=str(accel))
    table = run_online(cfg, policy_backend=lambda p: ScriptedBackend(fn=policy_reply),
                       user_backend=ScriptedBackend(["Tell me about sailing then."]),
                       judge_backend=ScriptedBackend(fn=judge_by_word({"alpha": 2, "beta": 5, "gamma": 3})))
    checkpoint = tmp_path / "out" / "round-01" / "checkpoint"
    assert (checkpoint / "config.json").exists() and (checkpoint / "aloe_round_done.json").exists()
    assert table[-1]["train_loss"] is not None
    assert (tmp_path / "out" / "round-01" / "train_metrics.json").exists()
