"""Named evaluation protocols: presets of the `EvalConfig` fields that decide what a score means.

- `paper`: the settings the ALOE authors ran (their public `evaluation/eval_own.py`): the evaluated reply
  up to 2048 new tokens with the model's own sampling settings, role-play user and judge up to 300 tokens at
  temperature 1.0, 10 turns, the paper's 100 personas, the paper judge prompt.
- `smoke`: small greedy caps sized so the offline run on the embedded 135M model finishes in minutes on a
  2-core CPU. It checks that everything runs; its numbers are not comparable with anything.

The default is `paper` unless the evaluated model is `embedded`. A field given explicitly (flag, recipe
key, keyword) overrides the preset; the run is then recorded as `custom`, with the preset it started from
and every difference.
"""

from __future__ import annotations

from dataclasses import fields, replace

from aloe_bench.core.errors import ConfigError

from .eval_config import EvalConfig

PROTOCOLS: dict[str, dict] = {
    "paper": {
        "personas": "paper",
        "max_personas": 0,  # 0: all of them (20 profiles x 5 personalities)
        "max_personalities": 5,
        "turns": 10,
        "reply_max_new_tokens": 2048,
        "temperature": None,  # the evaluated model's own generation config / the server's defaults
        "user_max_new_tokens": 300,
        "user_temperature": 1.0,
        "judge_preset": "paper",
        "judge_max_new_tokens": 300,
        "judge_temperature": 1.0,
    },
    "smoke": {
        "personas": "default",
        "max_personas": 16,
        "max_personalities": 5,
        "turns": 4,  # `make run` in under 10 minutes on a 2-core CPU (README: measured time)
        "reply_max_new_tokens": 48,
        "temperature": 0.0,
        "user_max_new_tokens": 40,
        "user_temperature": 0.7,
        "judge_preset": "paper",
        "judge_max_new_tokens": None,  # the judge preset's own length: 8 for `paper`, 256 for `robust`
        "judge_temperature": 0.0,
    },
}

#: fields a protocol sets; every one of them defaults to None in `EvalConfig` ("the preset decides")
PRESET_FIELDS = tuple(PROTOCOLS["paper"])


def default_protocol(model: str | None) -> str:
    """`smoke` for the embedded model, `paper` for anything else."""
    return "smoke" if (model or "embedded").strip() == "embedded" else "paper"


def resolve(cfg: EvalConfig) -> EvalConfig:
    """`cfg` with its protocol named and every preset field still None filled from that preset.

    Idempotent: resolving a resolved config changes nothing (a preset value of None, such as the paper's
    temperature, stays None: "the model's own").
    """
    name = cfg.protocol or default_protocol(cfg.model)
    if name not in PROTOCOLS:
        raise ConfigError(f"protocol {name!r}: choose one of {', '.join(PROTOCOLS)}")
    preset = PROTOCOLS[name]
    filled = {k: v for k, v in preset.items() if getattr(cfg, k) is None}
    return replace(cfg, protocol=name, **filled)


def describe(cfg: EvalConfig) -> dict:
    """What a results file says about the protocol of a resolved config.

    `{"name": "paper"}` when every preset field has the preset's value, else
    `{"name": "custom", "base": "paper", "differences": {field: {"preset": v, "run": w}}}`.
    """
    cfg = resolve(cfg)
    preset = PROTOCOLS[cfg.protocol]
    differences = {k: {"preset": v, "run": getattr(cfg, k)} for k, v in preset.items() if getattr(cfg, k) != v}
    if not differences:
        return {"name": cfg.protocol, "base": cfg.protocol, "differences": {}}
    return {"name": "custom", "base": cfg.protocol, "differences": differences}


def run_settings(cfg: EvalConfig) -> dict:
    """The resolved run settings as a results file records them (and `aloe eval --print-config` prints them).

    Needs no model: generation settings are computed from the config alone.
    """
    from aloe_bench.core.judge import JudgeConfig

    cfg = resolve(cfg)
    judge = JudgeConfig(cfg.judge_preset, cfg.judge_scoring, cfg.judge_max_retries, seed=cfg.seed,
                        max_new_tokens=cfg.judge_max_new_tokens, temperature=cfg.judge_temperature)
    judge = judge.resolved("embedded" if cfg.judge_model.strip() == "embedded" else "other")
    return {
        "protocol": describe(cfg),
        "run": {f.name: getattr(cfg, f.name) for f in fields(cfg) if f.name != "progress"},
        "reply_generation": reply_generation(cfg).to_dict(),
        "user_generation": user_generation(cfg).to_dict(),
        "judge_generation": judge.generation().to_dict() | {"scoring": judge.scoring},
    }


def reply_generation(cfg: EvalConfig):
    """Sampling of the evaluated model; temperature None leaves top_p to the model too."""
    from aloe_bench.core.backends import GenerationConfig

    cfg = resolve(cfg)
    return GenerationConfig(cfg.reply_max_new_tokens, cfg.temperature,
                            top_p=None if cfg.temperature is None else 1.0, seed=cfg.seed)


def user_generation(cfg: EvalConfig):
    from aloe_bench.core.backends import GenerationConfig

    cfg = resolve(cfg)
    return GenerationConfig(cfg.user_max_new_tokens, cfg.user_temperature, seed=cfg.seed)
