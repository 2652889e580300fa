"""Named protocols (`--protocol paper|smoke`): resolution, overrides, recipes, records, `--print-config`."""

import json

import pytest

from aloe_bench.core.backends import GenerationConfig
from aloe_bench.core.backends.hf import _sampling_kwargs
from aloe_bench.core.backends.openai_backend import OpenAIBackend
from aloe_bench.core.personas import load_persona_set
from aloe_bench.core.specs import ModelSpec
from aloe_bench.harness import EvalConfig, evaluate_model
from aloe_bench.core.backends import BackendKind
from aloe_bench.harness import runner
from aloe_bench.harness.protocol import PRESET_FIELDS, PROTOCOLS, default_protocol, describe, resolve, run_settings
from aloe_bench.testing.backends import ScriptedBackend


def test_every_preset_field_defaults_to_none_and_both_presets_set_all_of_them():
    blank = EvalConfig()
    assert all(getattr(blank, name) is None for name in PRESET_FIELDS) and blank.protocol is None
    assert set(PROTOCOLS["paper"]) == set(PROTOCOLS["smoke"]) == set(PRESET_FIELDS)


def test_paper_protocol_resolves_to_the_authors_settings():
    settings = run_settings(EvalConfig(protocol="paper", model="ORG/NAME", judge_model="openai:gpt-4o-mini"))
    run = settings["run"]
    assert settings["protocol"] == {"name": "paper", "base": "paper", "differences": {}}
    assert (run["personas"], run["max_personas"], run["max_personalities"], run["turns"]) == ("paper", 0, 5, 10)
    assert (run["judge_preset"], run["judge_max_new_tokens"], run["judge_temperature"]) == ("paper", 300, 1.0)
    # the evaluated model keeps its own sampling settings: nothing is overridden
    assert settings["reply_generation"] == {"max_new_tokens": 2048, "temperature": None, "top_p": None, "seed": 0}
    assert settings["user_generation"]["max_new_tokens"] == 300 and settings["user_generation"]["temperature"] == 1.0
    assert settings["judge_generation"]["max_new_tokens"] == 300 and settings["judge_generation"]["temperature"] == 1.0
    assert settings["judge_generation"]["scoring"] == "text"


def test_smoke_protocol_resolves_to_small_greedy_caps():
    settings = run_settings(EvalConfig(protocol="smoke"))
    run = settings["run"]
    assert settings["protocol"]["name"] == "smoke"
    assert run["personas"] == "default" and 1 <= run["max_personas"] <= 16 and 2 <= run["turns"] <= 6
    assert settings["reply_generation"]["temperature"] == 0.0 and settings["reply_generation"]["max_new_tokens"] <= 64
    assert settings["user_generation"]["max_new_tokens"] <= 64
    assert settings["judge_generation"] == {"max_new_tokens": 8, "temperature": 0.0, "top_p": 1.0, "seed": 0,
                                            "scoring": "logprobs"}  # embedded judge reads probabilities


@pytest.mark.parametrize("model, expected", [("embedded", "smoke"), (" embedded ", "smoke"), ("ORG/NAME", "paper"),
                                             ("openai:gpt-4o-mini", "paper"), ("/some/folder", "paper")])
def test_default_protocol_follows_the_evaluated_model(model, expected):
    assert default_protocol(model) == expected
    assert resolve(EvalConfig(model=model)).protocol == expected


def test_explicit_fields_override_the_preset_and_make_the_run_custom():
    cfg = resolve(EvalConfig(model="openai:m", turns=3, temperature=0.0, user_max_new_tokens=300))
    assert (cfg.turns, cfg.temperature, cfg.reply_max_new_tokens) == (3, 0.0, 2048)
    record = describe(cfg)
    assert record == {"name": "custom", "base": "paper", "differences": {
        "turns": {"preset": 10, "run": 3}, "temperature": {"preset": None, "run": 0.0}}}
    # a flag equal to the preset's value changes nothing
    assert describe(EvalConfig(protocol="smoke", turns=PROTOCOLS["smoke"]["turns"]))["name"] == "smoke"
    assert resolve(cfg) == cfg  # idempotent


def test_unknown_protocol_is_a_clear_error():
    with pytest.raises(ValueError, match="protocol 'papers': choose one of paper, smoke"):
        resolve(EvalConfig(protocol="papers"))


def _parse(argv):
    from aloe_bench.commands.main import build_parser
    from aloe_bench.core.recipes import dataclass_from_args

    parser = build_parser()
    args = parser.parse_args(argv)
    return dataclass_from_args(args, EvalConfig)


def test_protocol_is_a_recipe_key_and_flags_beat_it(tmp_path):
    recipe = tmp_path / "eval.yaml"
    recipe.write_text("protocol: paper\nmodel: embedded\nturns: 4\n")
    cfg = resolve(_parse(["eval", "--config", str(recipe)]))
    assert (cfg.protocol, cfg.reply_max_new_tokens, cfg.turns) == ("paper", 2048, 4)
    assert describe(cfg)["differences"] == {"turns": {"preset": 10, "run": 4}}
    cfg = resolve(_parse(["eval", "--config", str(recipe), "--protocol", "smoke", "--turns", "3"]))
    assert cfg.protocol == "smoke" and cfg.reply_max_new_tokens == PROTOCOLS["smoke"]["reply_max_new_tokens"]


def test_print_config_prints_the_resolved_settings_without_loading_a_model(tmp_path, monkeypatch, capsys):
    from aloe_bench.commands.main import main

    missing = tmp_path / "no-such-model"
    with pytest.raises(FileNotFoundError):
        ModelSpec.parse(str(missing))  # this spec cannot load

    def no_loading(*a, **k):
        raise AssertionError("--print-config loaded a model")

    monkeypatch.setattr(BackendKind, "create", no_loading)  # every backend is made there
    monkeypatch.setattr(runner, "load_persona_set", no_loading)
    assert main(["eval", "--model", str(missing), "--print-config"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == run_settings(EvalConfig(model=str(missing)))
    assert printed["protocol"]["name"] == "paper" and printed["run"]["model"] == str(missing)
    assert main(["eval", "--model", str(missing), "--turns", "2", "--print_config"]) == 0
    assert json.loads(capsys.readouterr().out)["protocol"]["differences"] == {"turns": {"preset": 10, "run": 2}}
    assert not list(tmp_path.iterdir())  # nothing written
    assert main(["eval", "--protocol", "fast", "--print-config"]) == 2
    assert "protocol 'fast'" in capsys.readouterr().err


def test_the_model_defaults_reach_the_backends_as_no_override():
    assert _sampling_kwargs(GenerationConfig(2048, None, None)) == {}
    assert _sampling_kwargs(GenerationConfig(8, 0.0)) == dict(do_sample=False, temperature=None, top_p=None,
                                                              top_k=None)
    assert _sampling_kwargs(GenerationConfig(8, 1.0, None)) == dict(do_sample=True, temperature=1.0)
    backend = OpenAIBackend.__new__(OpenAIBackend)
    backend.spec = ModelSpec.parse("openai:m", base_url="http://127.0.0.1:9/v1")
    kwargs = backend._request_kwargs(GenerationConfig(2048, None, None, seed=3))
    assert kwargs == {"model": "m", "max_tokens": 2048, "seed": 3}  # the server's defaults decide
    assert backend._request_kwargs(GenerationConfig(300, 1.0))["temperature"] == 1.0


def _scripted_backends(monkeypatch):
    """Patch the runner so the model, user and judge (built in that order) are scripted fakes."""
    made = iter([ScriptedBackend(fn=lambda m, c: "a reply"), ScriptedBackend(fn=lambda m, c: "a user message"),
                 ScriptedBackend(["4"])])
    backends = []

    def load(spec, options=None, **where):
        backends.append(next(made))
        return backends[-1]

    monkeypatch.setattr(runner, "build_backend", load)
    return backends


def test_a_paper_run_sends_the_paper_settings_and_records_them(tmp_path, monkeypatch, upstream_dir):
    backends = _scripted_backends(monkeypatch)
    cfg = EvalConfig(model="openai:m", user_model="openai:u", judge_model="openai:j", base_url="http://127.0.0.1:9/v1",
                     output_dir=str(tmp_path), bootstrap_resamples=20, progress=False)
    results = evaluate_model(cfg, persona_set=load_persona_set(str(upstream_dir), 5))
    model, user, judge = backends
    assert {c.to_dict()["temperature"] for _, c in model.calls} == {None}
    assert {(c.max_new_tokens, c.top_p) for _, c in model.calls} == {(2048, None)}
    assert {(c.max_new_tokens, c.temperature) for _, c in user.calls} == {(300, 1.0)}
    assert {(c.max_new_tokens, c.temperature) for _, c in judge.calls} == {(300, 1.0)}
    assert results["protocol"] == "paper" and results["counts"]["conversations"] == 100
    assert results["counts"]["turns"] == 10 and results["counts"]["scored"] == 1000
    on_disk = json.loads(next(tmp_path.rglob("results_*.json")).read_text())
    assert on_disk["protocol"] == "paper" and on_disk["config"]["protocol"]["differences"] == {}
    assert on_disk["config"]["run"] == run_settings(cfg)["run"]
    assert on_disk["config"]["reply_generation"] == run_settings(cfg)["reply_generation"]


def test_a_run_off_its_preset_is_recorded_as_custom_with_the_differences(tmp_path, monkeypatch, upstream_dir):
    _scripted_backends(monkeypatch)
    cfg = EvalConfig(personas=str(upstream_dir), max_personas=2, turns=2, output_dir=str(tmp_path),
                     bootstrap_resamples=20, progress=False)
    results = evaluate_model(cfg)
    assert results["protocol"] == "custom" and results["counts"]["conversations"] == 2
    record = results["config"]["protocol"]
    assert record["base"] == "smoke" and set(record["differences"]) == {"personas", "max_personas", "turns"}
    assert record["differences"]["turns"] == {"preset": PROTOCOLS["smoke"]["turns"], "run": 2}
    # extending the turns of the same run resumes it (the protocol label is not part of the run's identity)
    _scripted_backends(monkeypatch)
    longer = evaluate_model(EvalConfig(**{**cfg.to_dict(), "turns": 3}))
    assert longer["fingerprint"] == results["fingerprint"] and longer["counts"]["scored"] == 6


def test_the_evaluate_module_kwarg_reaches_the_config(tmp_path, monkeypatch):
    from aloe_bench.harness import evaluate_personas

    _scripted_backends(monkeypatch)
    results = evaluate_personas(["a runner"], ["terse"], model="openai:m", protocol="smoke", turns=1,
                                output_dir=str(tmp_path), bootstrap_resamples=10, progress=False)
    record = results["config"]["protocol"]
    assert record["base"] == "smoke" and set(record["differences"]) == {"personas", "turns"}


def test_eval_cli_ends_with_where_the_results_are_and_the_paper_command(tmp_path, monkeypatch, capsys):
    from aloe_bench.commands.main import main

    _scripted_backends(monkeypatch)
    assert main(["eval", "--output_dir", str(tmp_path), "--max_personas", "1", "--turns", "1",
                 "--bootstrap_resamples", "10", "--progress", "false"]) == 0
    out, err = capsys.readouterr()
    summary = json.loads(out)
    assert summary["protocol"] == "custom" and summary["results_file"].startswith(str(tmp_path))
    assert f"Results: {summary['results_file']}" in err
    assert "aloe eval --protocol paper" in err and "openai:gpt-4o-mini-2024-07-18" in err


@pytest.mark.slow
def test_temperature_none_uses_the_local_models_own_generation_config(embedded_backend):
    messages = [[{"role": "user", "content": "Tell me about your weekend plans."}]]
    own = GenerationConfig(16, None, None, seed=5)
    # SmolLM2's generation_config sets no sampling: the model's own settings are greedy decoding
    assert embedded_backend.generate(messages, own)[0].text == embedded_backend.generate(
        messages, GenerationConfig(16, 0.0, seed=5))[0].text
    gen = embedded_backend.model.generation_config
    saved = (gen.do_sample, gen.temperature, gen.top_k, gen.top_p)
    try:  # a model whose own config samples: None must sample exactly as those settings say
        gen.do_sample, gen.temperature, gen.top_k, gen.top_p = True, 1.5, 50, None
        sampled = embedded_backend.generate(messages, own)[0].text
        assert sampled == embedded_backend.generate(messages, GenerationConfig(16, 1.5, None, seed=5))[0].text
        assert sampled != embedded_backend.generate(messages, GenerationConfig(16, 0.0, seed=5))[0].text
    finally:
        gen.do_sample, gen.temperature, gen.top_k, gen.top_p = saved


def test_smoke_with_the_robust_judge_keeps_its_room_to_reason():
    settings = run_settings(EvalConfig(judge_preset="robust", judge_model="openai:j"))
    assert settings["judge_generation"]["max_new_tokens"] == 256 and settings["protocol"]["name"] == "custom"
