"""Run identity (`core.run_identity`): today's fingerprints stay as they were, so existing run folders keep
resuming, and a setting that is not on an allowlist never changes an identity."""

from dataclasses import asdict, field, make_dataclass

import pytest

from aloe_bench.core.backends import BackendOptions
from aloe_bench.core.run_identity import differing, eval_identity, generate_identity
from aloe_bench.harness import EvalConfig
from aloe_bench.harness.protocol import resolve_run
from aloe_bench.harness.results import fingerprint
from aloe_bench.training.generate import GenerateConfig

SPEC = {"kind": "hf", "name": "ORG/NAME", "revision": None, "base_url": None, "api_key_env": "OPENAI_API_KEY",
        "engine": "transformers"}
LOCAL = {"spec": SPEC, "model_id": "ORG/NAME", "resolved_revision": "abc123",
         "chat_template_sha256": "0123456789abcdef", "engine": "TransformersBackend", "device": "cpu", "dtype": "float32", "max_context": 8192}
EMBEDDED = {**LOCAL, "spec": {**SPEC, "kind": "embedded", "name": "embedded"}, "model_id": "embedded",
            "resolved_revision": None, "chat_template_sha256": "fedcba9876543210"}
ENDPOINT = {"spec": {**SPEC, "kind": "openai", "name": "gpt-4o-mini", "base_url": "http://127.0.0.1:9/v1"},
            "model_id": "gpt-4o-mini", "resolved_revision": None, "chat_template_sha256": None,
            "engine": "OpenAIBackend", "base_url": "http://127.0.0.1:9/v1", "max_concurrency": 16}
#: the fingerprint the code before the allowlists (runner._identity, a deny-list) computed for `block()`
PINNED = "0013cc35790c602a"


def block(cfg=None, options=None) -> dict:
    """The `config` block of a results file for a fixed run (describes of its three backends written out)."""
    cfg = cfg or EvalConfig(model="ORG/NAME", judge_model="openai:gpt-4o-mini", judge_base_url="http://127.0.0.1:9/v1")
    settings = resolve_run(cfg, options or BackendOptions(batch_size=8)).settings
    return {"protocol": settings["protocol"], "run": settings["run"],
            "models": {"model": LOCAL,
                       "user_simulator": {"generation": settings["user_generation"], "max_retries": 2,
                                          "prompt_sha256": "1111111111111111", "model": EMBEDDED},
                       "judge": {"preset": "paper", "scoring": "text", "max_retries": 2, "max_text_chars": 4000,
                                 "prompt_sha256": "2222222222222222", "model": ENDPOINT}},
            "reply_generation": settings["reply_generation"],
            "prompts": {"version": "1", "sha256": {"user_simulator": "aaaa", "judge_paper": "bbbb"}},
            "personas": {"name": "aloe-paper-eval", "source": "paper", "sha256": "cccccccccccccccc", "count": 100},
            "harness_version": "0.1.0", "packages": {"torch": "2.13.0"}}


def test_the_fingerprint_of_a_fixed_run_is_the_one_earlier_versions_computed():
    assert fingerprint(eval_identity(block())) == PINNED


@pytest.mark.parametrize("options", [
    dict(batch_size=64), dict(max_concurrency=2), dict(requests_per_minute=60.0), dict(request_timeout_s=5.0),
    dict(request_max_retries=0), dict(device="cuda:1"), dict(tensor_parallel_size=2),
    dict(gpu_memory_utilization=0.5), dict(max_model_len=4096), dict(enable_prefix_caching=True),
    dict(role_options={"judge": {"batch_size": 4}})])
def test_speed_and_resource_options_are_never_identity(options):
    assert fingerprint(eval_identity(block(options=BackendOptions(**options)))) == PINNED


@pytest.mark.parametrize("settings", [dict(output_dir="elsewhere"), dict(cache=False), dict(schedule="lockstep"),
                                      dict(progress=False), dict(turns=3), dict(max_personas=5),
                                      dict(bootstrap_resamples=10), dict(push_to_hub="org/results")])
def test_run_settings_off_the_allowlist_keep_the_run(settings):
    cfg = EvalConfig(model="ORG/NAME", judge_model="openai:gpt-4o-mini", judge_base_url="http://127.0.0.1:9/v1",
                     **settings)
    assert fingerprint(eval_identity(block(cfg))) == PINNED


def test_settings_on_the_allowlist_make_another_run():
    for changed in (dict(seed=1), dict(temperature=0.0), dict(judge_preset="robust"), dict(user_model="ORG/OTHER")):
        cfg = EvalConfig(model="ORG/NAME", judge_model="openai:gpt-4o-mini",
                         judge_base_url="http://127.0.0.1:9/v1", **changed)
        assert fingerprint(eval_identity(block(cfg))) != PINNED, changed
    other_dtype = BackendOptions(batch_size=8, dtype="bfloat16")
    assert fingerprint(eval_identity(block(options=other_dtype))) != PINNED


def test_a_new_field_off_the_allowlist_leaves_the_identity_unchanged():
    """A setting added tomorrow (to the run, the backend options or a backend's description) is not identity."""
    NewEvalConfig = make_dataclass("NewEvalConfig", [("draft_tokens", int, field(default=4))], bases=(EvalConfig,))
    NewOptions = make_dataclass("NewOptions", [("kv_cache_gb", float, field(default=8.0))], bases=(BackendOptions,))
    cfg = NewEvalConfig(model="ORG/NAME", judge_model="openai:gpt-4o-mini", judge_base_url="http://127.0.0.1:9/v1")
    record = block(cfg, NewOptions(batch_size=8))
    assert record["run"]["draft_tokens"] == 4 and record["run"]["kv_cache_gb"] == 8.0  # recorded, not identity
    record["models"]["model"]["attention"] = "sdpa"
    record["models"]["judge"]["model"]["pool_size"] = 3
    record["throughput"] = {"wall_s": 1.0}
    assert fingerprint(eval_identity(record)) == PINNED


def test_generate_identity_is_the_settings_earlier_versions_recorded():
    cfg, options = GenerateConfig(base_url="http://x/v1"), BackendOptions(api_key_env="K", request_timeout_s=5.0)
    assert generate_identity(asdict(options) | asdict(cfg)) == {
        "profiles": None, "personalities": None, "turns": 10, "user_model": "embedded",
        "induction_model": "embedded", "preferred_model": "embedded", "rejected_model": "embedded",
        "judge_model": "embedded", "base_url": "http://x/v1", "api_key_env": "K", "judge_scoring": "auto",
        "induction_parse": "auto", "max_retries": 2, "retry_temperature": 0.7, "user_max_new_tokens": 64,
        "induction_max_new_tokens": 96, "reply_max_new_tokens": 96, "judge_max_new_tokens": 128,
        "user_temperature": 0.7, "temperature": 0.0, "seed": 0,
        "pair_order": None}  # since issue 22; a folder from before has no key and resumes as "once"
    assert list(generate_identity(asdict(options) | asdict(cfg)))[:3] == ["profiles", "personalities", "turns"]
    fast = asdict(BackendOptions(api_key_env="K", batch_size=64, max_concurrency=64)) | asdict(
        GenerateConfig(base_url="http://x/v1", group_size=64, n_conversations=500, schedule="lockstep"))
    assert generate_identity(fast) == generate_identity(asdict(options) | asdict(cfg))


def test_differing_names_every_changed_or_missing_setting():
    assert differing({"seed": 0, "turns": 2}, {"seed": 1, "turns": 2, "temperature": 0.0}) == ["seed", "temperature"]
