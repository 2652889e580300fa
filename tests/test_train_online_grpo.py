"""`aloe train online` with method grpo: the judge reward, the profile block and its F1, on scripted backends."""

import json

import pytest

from aloe_bench.core.errors import ConfigError
from aloe_bench.core.judge import Judge, JudgeConfig
from aloe_bench.core.personas import Persona
from aloe_bench.testing.backends import ScriptedBackend
from aloe_bench.training.online import OnlineConfig, run_online
from aloe_bench.training.online_grpo import (GrpoArguments, JudgeReward, ProfileScorer, ProfileTags, f1_from_counts,
                                             reward_summary, split_facts)
from test_train_online import persona_file

BOATS = Persona("p-boats", "He builds wooden boats on a quiet lake.", "Curt and practical.")
CATS = Persona("p-cats", "She fosters rescue cats in a small flat.", "Chatty and warm.")
BEES = Persona("p-bees", "He keeps bees behind a village school.", "Shy and precise.")


def judge_by_profile(messages, config):
    """A paper-preset judge answering by the persona it is shown; the bee keeper's judgement fails (no digit)."""
    text = messages[-1]["content"]
    return "5" if "wooden boats" in text else "2" if "rescue cats" in text else "I cannot say"


def prompt_for(message="How was your week?", history=()):
    return [*history, {"role": "user", "content": message}]


def test_the_block_is_cut_out_of_the_reply():
    tags = ProfileTags()
    assert tags.split("<profile>\nbuilds boats\nlives by a lake\n</profile>\nNice, how is the hull?") == (
        "Nice, how is the hull?", "builds boats\nlives by a lake")
    assert tags.split("Sure thing. <PROFILE>likes lakes</Profile> Tell me more.") == (
        "Sure thing.  Tell me more.", "likes lakes")
    assert tags.split("<profile>cut by the token limit, no clos") == ("", "cut by the token limit, no clos")
    assert tags.split("No block here </profile>") == ("No block here", None)
    assert tags.split(None) == (None, None)
    asked = tags.instruct(prompt_for())
    assert asked[0]["role"] == "system" and "<profile>" in asked[0]["content"] and asked[1:] == prompt_for()


def test_facts_and_f1_arithmetic():
    assert split_facts("She is 34, works nights and restores bicycles. Saving for a trip; likes tea") == [
        "She is 34", "works nights", "restores bicycles", "Saving for a trip", "likes tea"]
    assert split_facts("- builds boats\n2. lives near a lake\n* ok") == ["builds boats", "lives near a lake"]
    got = f1_from_counts(supported=2, covered=1, n_inferred=4, n_facts=3)
    assert got["precision"] == 0.5 and got["recall"] == pytest.approx(1 / 3)
    assert got["f1"] == pytest.approx(2 * 0.5 * (1 / 3) / (0.5 + 1 / 3))  # 0.4
    assert f1_from_counts(0, 0, 3, 3)["f1"] == 0.0
    assert f1_from_counts(3, 3, 3, 3)["f1"] == 1.0


def scorer(answer):
    backend = ScriptedBackend(fn=lambda messages, config: answer)
    return ProfileScorer(backend, max_retries=1), backend


def test_profile_counts_give_f1_and_bad_counts_are_failures():
    persona = Persona("p", "He builds wooden boats, lives by a lake and sings in a choir.", "Curt.")
    good, _ = scorer("SUPPORTED: 1\nCOVERED: 1")
    [v] = good.score([(persona, "builds boats\nworks in a bank")])
    assert (v.supported, v.covered, v.n_inferred, v.n_facts) == (1, 1, 2, 3)
    assert v.f1 == pytest.approx(2 * 0.5 * (1 / 3) / (0.5 + 1 / 3)) and v.error is None
    for answer, reason in (("SUPPORTED: 1", "COVERED missing"), ("SUPPORTED: 5\nCOVERED: 1", "out of range"),
                           ("no idea", "missing")):
        bad, backend = scorer(answer)
        [v] = bad.score([(persona, "builds boats\nworks in a bank")])
        assert v.f1 is None and reason in v.error and v.raw == answer
        assert len(backend.calls) == 2  # asked, re-asked once, then recorded as a failure
    silent, backend = scorer("SUPPORTED: 1\nCOVERED: 1")
    [v] = silent.score([(persona, None)])
    assert v.f1 == 0.0 and v.recall == 0.0 and v.precision is None and backend.calls == []  # nothing guessed


def test_the_reward_receives_each_rows_persona_and_returns_judge_scores_or_none(tmp_path):
    judge_backend = ScriptedBackend(fn=judge_by_profile)
    reward = JudgeReward(Judge(judge_backend, JudgeConfig(preset="paper", max_retries=0)), tmp_path / "r.jsonl")
    rows = [BOATS, CATS, BEES]
    got = reward(prompts=[prompt_for()] * 3, completions=[[{"role": "assistant", "content": f"reply {i}"}]
                                                           for i in range(3)],
                 profile=[p.profile for p in rows], personality=[p.personality for p in rows],
                 persona_id=[p.id for p in rows], trainer_state=None)
    assert got == [5.0, 2.0, None]
    shown = [conversation[-1]["content"] for conversation in judge_backend.calls[0][0]]
    assert "wooden boats" in shown[0] and "rescue cats" in shown[1] and "keeps bees" in shown[2]
    assert "reply 1" in shown[1]
    logged = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert [r["persona"] for r in logged] == ["p-boats", "p-cats", "p-bees"]
    assert logged[2]["reward"] is None and logged[2]["judge_error"]  # the failure is recorded, never a number
    assert reward_summary(tmp_path / "r.jsonl") == {"samples": 3, "failed": 1, "mean_reward": 3.5}


def test_the_profile_reward_adds_the_weighted_f1_and_the_judge_never_sees_the_block(tmp_path):
    def backend_fn(messages, config):
        if "Guessed statements" in messages[-1]["content"]:  # the profile count
            return "SUPPORTED: 1\nCOVERED: 1" if "wooden boats" in messages[-1]["content"] else "garbage"
        return judge_by_profile(messages, config)
    backend = ScriptedBackend(fn=backend_fn)
    judge = Judge(backend, JudgeConfig(preset="paper", max_retries=0))
    tags = ProfileTags()
    reward = JudgeReward(judge, tmp_path / "r.jsonl", tags, ProfileScorer(backend, max_retries=0), weight=2.0)
    completions = [[{"role": "assistant", "content": "<profile>builds wooden boats</profile>Lovely lake!"}],
                   [{"role": "assistant", "content": "<profile>fosters cats</profile>Hi there"}],
                   [{"role": "assistant", "content": "No guess, just hello"}]]
    got = reward(prompts=[tags.instruct(prompt_for())] * 3, completions=completions,
                 profile=[BOATS.profile, CATS.profile, CATS.profile],
                 personality=[BOATS.personality, CATS.personality, CATS.personality])
    # boats: judge 5 + 2 x F1(1/1 guessed, 1/1 fact) = 7; cats: the count failed -> None; no block: 2 + 2 x 0
    assert got == [7.0, None, 2.0]
    judged = [c[-1]["content"] for calls, _ in backend.calls for c in calls if "Guessed" not in c[-1]["content"]]
    assert judged and not any("<profile>" in text or "fosters cats" in text for text in judged)
    logged = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert logged[0]["profile_f1"] == 1.0 and logged[1]["profile_error"] and logged[2]["profile_f1"] == 0.0


def test_a_grpo_round_trains_on_this_rounds_states_with_the_block_hidden_from_everyone(tmp_path):
    import datasets

    calls = []

    def train(cfg, policy_path, data_folder, config, out):
        calls.append((policy_path, config))
        out.mkdir(parents=True, exist_ok=True)
        return {"train": {"train_loss": 0.1}}

    def policy(path):
        return ScriptedBackend(fn=lambda m, c: f"<profile>likes boats {c.seed}</profile>Reply {c.seed % 3}")
    user = ScriptedBackend(["Tell me about sailing then."])
    judge = ScriptedBackend(fn=lambda m, c: "4")
    cfg = OnlineConfig(personas=persona_file(tmp_path), output_dir=str(tmp_path / "out"), overlap_check="text",
                       rounds=2, turns=2, candidates=2, method="grpo")
    table = run_online(cfg, policy_backend=policy, user_backend=user, judge_backend=judge, train_fn=train,
                       grpo=GrpoArguments(profile_reward=True))
    assert [c[1] for c in calls] == ["grpo", "grpo"] and calls[1][0].endswith("round-01/checkpoint")
    assert table[0]["data"]["prompts"] == 4 and table[0]["data"]["profile_reward"]
    ds = datasets.load_dataset(str(tmp_path / "out/round-02/data"), "grpo", split="train")
    assert set(ds.column_names) >= {"prompt", "persona_id", "profile", "personality"}
    assert all(row["prompt"][0]["role"] == "system" and "<profile>" in row["prompt"][0]["content"] for row in ds)
    later = [row for row in ds if len(row["prompt"]) > 2]
    assert later and all("<profile>" not in m["content"] for row in later for m in row["prompt"][1:])
    seen = [m["content"] for backend in (user, judge) for convs, _ in backend.calls for c in convs for m in c]
    assert seen and not any("likes boats" in text for text in seen)
    rollouts = [json.loads(line) for line in (tmp_path / "out/round-01/rollouts.jsonl").read_text().splitlines()]
    assert all(c["inferred"].startswith("likes boats") and "<profile>" not in c["reply"]
               for row in rollouts for c in row["candidates"])


def test_grpo_settings_are_refused_in_one_line():
    with pytest.raises(ConfigError, match="candidates >= 2"):
        OnlineConfig(method="grpo", candidates=1)
    with pytest.raises(ConfigError, match="profile_reward needs method grpo"):
        GrpoArguments(profile_reward=True).check(OnlineConfig(method="dpo"))
    with pytest.raises(ConfigError, match="multiple of candidates"):
        GrpoArguments().check(OnlineConfig(method="grpo", candidates=4, per_device_train_batch_size=2))
    GrpoArguments(gradient_accumulation_steps=2).check(OnlineConfig(method="grpo", candidates=4,
                                                                    per_device_train_batch_size=2))
    with pytest.raises(ConfigError, match="vllm_mode"):
        GrpoArguments(vllm_mode="remote").check(OnlineConfig(method="grpo"))


def test_the_round_config_maps_the_online_fields_onto_grpo(tmp_path):
    from aloe_bench.training.online_grpo import grpo_config

    cfg = OnlineConfig(method="grpo", candidates=4, per_device_train_batch_size=4, max_new_tokens=24,
                       temperature=0.9, beta=0.04, use_cpu=True, max_steps=3)
    args = grpo_config(cfg, GrpoArguments(model_dtype="float32"), tmp_path / "ckpt")
    assert (args.num_generations, args.max_completion_length, args.temperature, args.beta, args.max_steps) == (
        4, 24, 0.9, 0.04, 3)
    assert args.bf16 is False and args.model_init_kwargs == {"dtype": "float32"} and not args.use_vllm


GPU_MODELS = ["llama-3-8b-instruct", "mistral-7b-instruct-v0.3", "olmo-7b-0724-instruct", "qwen2-7b-instruct"]


@pytest.mark.parametrize("model", GPU_MODELS)
def test_gpu_online_recipes_parse_and_resolve(model, tmp_path):
    """Each GPU recipe through the parser `aloe train online` uses, then TRL's own GRPOConfig and PEFT checks (with
    CPU settings swapped in: this machine has no GPU for the bf16 check); no model is loaded."""
    from dataclasses import replace
    from pathlib import Path

    from trl import ModelConfig, get_peft_config

    from aloe_bench.commands.train import _online_types
    from aloe_bench.core.judge import JudgeConfig
    from aloe_bench.core.recipes import RecipeParser, dataclass_from_args
    from aloe_bench.core.specs import ModelSpec
    from aloe_bench.training.online_grpo import grpo_config

    path = f"training/recipes/{model}/online.yaml"
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):  # every value says where it comes from
        assert line.startswith("#") or not line.strip() or "#" in line, f"{path}:{number} has no comment"
    args = RecipeParser(_online_types()).parse_args(["--config", path, "--output_dir", str(tmp_path)])
    cfg, grpo = dataclass_from_args(args, OnlineConfig), dataclass_from_args(args, GrpoArguments)
    grpo.check(cfg)
    assert cfg.method == "grpo" and cfg.candidates >= 2 and not cfg.use_cpu
    assert grpo.use_vllm and grpo.vllm_mode == "colocate" and cfg.use_peft and grpo.model_dtype == "bfloat16"
    assert cfg.policy == f"checkpoints/{model}-sft" and cfg.personas_split == "train"
    for spec in (cfg.user_model, cfg.judge_model):
        assert ModelSpec.parse(spec).kind == "openai"  # user and judge on an endpoint
    JudgeConfig(preset=cfg.judge_preset)
    args = grpo_config(replace(cfg, use_cpu=True), grpo, tmp_path / "ckpt")
    assert args.use_vllm and args.num_generations == cfg.candidates and args.beta == cfg.beta
    assert args.generation_batch_size % args.num_generations == 0
    assert args.model_init_kwargs["dtype"] == "bfloat16"
    peft = get_peft_config(ModelConfig(model_name_or_path=cfg.policy, use_peft=True, lora_r=cfg.lora_r,
                                       lora_alpha=cfg.lora_alpha, lora_target_modules=cfg.lora_target_modules))
    assert peft.r == cfg.lora_r and set(peft.target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj"}


def test_the_embedded_grpo_preset_parses():
    from aloe_bench.commands.train import _online_types
    from aloe_bench.core.recipes import RecipeParser, dataclass_from_args

    args = RecipeParser(_online_types()).parse_args(["--config", "training/recipes/embedded/online_grpo_tiny.yaml"])
    cfg, grpo = dataclass_from_args(args, OnlineConfig), dataclass_from_args(args, GrpoArguments)
    grpo.check(cfg)
    assert cfg.method == "grpo" and cfg.use_cpu and cfg.candidates == 2 and not grpo.profile_reward


@pytest.mark.slow
def test_tiny_grpo_round_on_the_embedded_model(tmp_path):
    """One GRPO round end to end: rollouts, the round's prompts, TRL's GRPOTrainer with the embedded judge as reward."""
    from aloe_bench.commands.main import main

    out = tmp_path / "grpo"
    assert main(["train", "online", "--config", "training/recipes/embedded/online_grpo_tiny.yaml",
                 "--output_dir", str(out)]) == 0
    [entry] = json.loads((out / "rounds.json").read_text())["rounds"]
    assert entry["method"] == "grpo" and entry["data"]["prompts"] == 2
    assert (out / "round-01/checkpoint/model.safetensors").exists()
    rewards = [json.loads(line) for line in (out / "round-01/rewards.jsonl").read_text().splitlines()]
    assert len(rewards) >= 2 and {r["persona"] for r in rewards} <= {"train001", "train002"}
    assert all((r["reward"] is None) == (r["judge_score"] is None) for r in rewards)
    assert entry["rewards"]["samples"] == len(rewards)


def test_a_killed_grpo_round_resumes_without_redoing_its_rollouts(tmp_path):
    generated, trained = [], []

    def policy(path):
        def reply(messages, config):
            generated.append(path)
            return f"Reply {config.seed % 3}"
        return ScriptedBackend(fn=reply)

    def train(cfg, policy_path, data_folder, config, out):
        trained.append(policy_path)
        if len(trained) == 1:
            raise KeyboardInterrupt  # killed while training round 1
        out.mkdir(parents=True, exist_ok=True)
        return {"train": {"train_loss": 0.2}, "rewards": {"samples": 4, "failed": 1, "mean_reward": 3.0}}
    cfg = OnlineConfig(personas=persona_file(tmp_path), output_dir=str(tmp_path / "out"), overlap_check="text",
                       rounds=2, turns=1, candidates=2, method="grpo")
    kwargs = dict(policy_backend=policy, user_backend=ScriptedBackend(["Hello there."]),
                  judge_backend=ScriptedBackend(fn=lambda m, c: "3"), train_fn=train)
    with pytest.raises(KeyboardInterrupt):
        run_online(cfg, **kwargs)
    before = len(generated)
    table = run_online(cfg, **kwargs)
    assert len(trained) == 3 and trained[2].endswith("round-01/checkpoint")  # round 1 retrained once, then round 2
    assert len(generated) == 2 * before  # round 1's rollouts were kept; only round 2 rolled out
    assert table[0]["rewards"] == {"samples": 4, "failed": 1, "mean_reward": 3.0}
    run_online(cfg, **kwargs)
    assert len(trained) == 3  # finished rounds are never redone


def test_forget_drops_a_backend_from_the_cache_so_the_next_build_loads_afresh():
    from aloe_bench.core.backends import build_backend, forget

    first = build_backend("openai:forget-me", base_url="http://127.0.0.1:9/v1")
    assert build_backend("openai:forget-me", base_url="http://127.0.0.1:9/v1") is first
    assert forget(first) == 1 and forget(first) == 0
    assert build_backend("openai:forget-me", base_url="http://127.0.0.1:9/v1") is not first


def test_with_the_profile_reward_the_win_rate_compares_replies_without_the_block(tmp_path):
    """The per-round eval cuts the new policy's block (`reply_hidden_block`); the previous policy answering the
    win-rate states is cut the same way, so the pair judge never sees a profile block."""
    from test_train_online import fake_eval

    def train(cfg, policy_path, data_folder, config, out):
        out.mkdir(parents=True, exist_ok=True)
        return {"train": {"train_loss": 0.1}}

    pair = ScriptedBackend(fn=lambda m, c: "[[A]]")
    cfg = OnlineConfig(personas=persona_file(tmp_path), output_dir=str(tmp_path / "out"), overlap_check="text",
                       rounds=1, turns=1, candidates=2, method="grpo", eval_turns=2)
    run_online(cfg, policy_backend=lambda p: ScriptedBackend(fn=lambda m, c: "<profile>likes boats</profile>Hi"),
               user_backend=ScriptedBackend(["Tell me about sailing then."]), judge_backend=ScriptedBackend(["4"]),
               train_fn=train, evaluate_fn=fake_eval([]), pair_judge_backend=pair,
               grpo=GrpoArguments(profile_reward=True))
    states = json.loads((tmp_path / "out/round-01/win_rate.json").read_text())["states"]
    assert [s["previous_reply"] for s in states] == ["Hi", "Hi"]
    shown = [m["content"] for convs, _ in pair.calls for conv in convs for m in conv]
    assert shown and not any("likes boats" in text or "<profile>" in text for text in shown)
