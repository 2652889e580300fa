"""Run identity: which settings make two runs the same run, for `aloe eval` and `aloe generate`, as allowlists.

A run folder is resumed only by a run with the same identity. The lists below name what counts (models, prompts,
personas, sampling, seeds); anything not named does not, so a new setting, a speed or resource option above all
(batch size, concurrency, cache, engine memory, timeouts, retries, output paths, progress), leaves every existing
identity as it was and old run folders keep resuming. A setting that changes what a run produces joins a list on
purpose. When the identity differs the two commands part ways, because their folders differ: an eval output
folder holds many runs side by side (a manifest maps each identity to its run id), so a changed identity simply
starts a new run id there; a generation folder holds one `conversations.jsonl`, which a second set of settings
would silently mix into, so `generate` refuses and names the settings that differ.
"""

from __future__ import annotations

#: parts of an eval results file's `config` block that make its identity (not `packages`, not the protocol label)
EVAL_PARTS = ("run", "models", "reply_generation", "prompts", "personas", "harness_version")

#: `config.run` settings that make an eval run's identity
EVAL_SETTINGS = ("model", "revision", "base_url", "user_model", "user_base_url", "judge_model", "judge_base_url",
                 "api_key_env", "engine", "dtype", "protocol", "personas", "max_personalities", "judge_preset",
                 "judge_scoring", "judge_max_retries", "judge_max_new_tokens", "judge_temperature",
                 "reply_max_new_tokens", "user_max_new_tokens", "temperature", "user_temperature", "seed",
                 # recorded only when not the default (`protocol._RECORDED_WHEN_SET`): a lone judge's run keeps its id
                 "jury_aggregate", "judge_samples", "reply_hidden_block")

#: what a backend's description contributes (its `describe()`): which model, which weights, which engine
BACKEND_FACTS = ("spec", "model_id", "resolved_revision", "chat_template_sha256", "engine", "dtype", "max_context",
                 "base_url", "engine_args")
#: the user simulator's and judge's backends also count these, as every run folder since 0.1.0 recorded them
#: (dropping them now would start a new run beside each existing one)
ROLE_BACKEND_FACTS = BACKEND_FACTS + ("device", "max_concurrency")
#: what the user simulator's and judge's descriptions contribute besides their backend (`model`)
ROLE_FACTS = ("generation", "preset", "scoring", "max_retries", "max_text_chars", "max_chars", "prompt_sha256")

#: `aloe generate` settings (its own and its backend options) that make a generation run's identity
GENERATE_SETTINGS = ("profiles", "personalities", "turns", "user_model", "induction_model", "preferred_model",
                     "rejected_model", "judge_model", "base_url", "api_key_env", "judge_scoring", "induction_parse",
                     "max_retries", "retry_temperature", "user_max_new_tokens", "induction_max_new_tokens",
                     "reply_max_new_tokens", "judge_max_new_tokens", "user_temperature", "temperature", "seed",
                     "pair_order")


def _kept(values: dict, names: tuple[str, ...]) -> dict:
    return {name: values[name] for name in names if name in values}


def eval_identity(config_block: dict) -> dict:
    """The part of an eval results file's `config` block that decides its fingerprint (`RunFiles`' run id)."""
    identity = _kept(config_block, EVAL_PARTS)
    identity["run"] = _kept(identity["run"], EVAL_SETTINGS)
    models = identity["models"]
    identity["models"] = {"model": _kept(models["model"], BACKEND_FACTS)} | {
        role: _jury_identity(info) if "members" in info else _role_identity(info)
        for role, info in models.items() if role != "model"}
    return identity


def _role_identity(info: dict) -> dict:
    return _kept(info, ROLE_FACTS) | {"model": _kept(info["model"], ROLE_BACKEND_FACTS)}


def _jury_identity(info: dict) -> dict:
    """A jury's description (`core.jury.Jury.describe`): its aggregate, samples and each judge as a lone one counts."""
    return {"aggregate": info.get("aggregate"), "samples": info.get("samples"),
            "members": [_role_identity(m) | {"spec": m.get("spec")} for m in info["members"]]}


def generate_identity(settings: dict) -> dict:
    """The settings of a generation run that its folder's `generation.json` pins."""
    return _kept(settings, GENERATE_SETTINGS)


def differing(before: dict, after: dict) -> list[str]:
    """The names whose values differ between two identities (missing on one side counts as differing)."""
    return sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))
