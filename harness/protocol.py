"""Named evaluation protocols: presets of the `EvalConfig` fields that decide what a score means.

- `paper`: the settings the ALOE authors ran (their public `evaluation/eval_own.py`): the evaluated reply
  up to 2048 new tokens with the model's own sampling settings, role-play user and judge up to 300 tokens at
  temperature 1.0, 10 turns, the paper's 100 personas, the paper judge prompt.
- `smoke`: small greedy caps sized so the offline run on the embedded 135M model finishes in minutes on a
  2-core CPU. It checks that everything runs; its numbers are not comparable with anything.

The default is `paper` unless the evaluated model is `embedded`. A field given explicitly (flag, recipe
key, keyword) overrides the preset; the run is then recorded as `custom`, with the preset it started from
and every difference. `resolve_run` does this once, at the entry (the `aloe eval` handler, the evaluate module,
reproduce, the benchmarks), into the frozen `EvalRun` that everything below reads.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from aloe_bench.core.backends import BackendOptions, GenerationConfig
from aloe_bench.core.errors import ConfigError
from aloe_bench.core.judge import JudgeConfig
from aloe_bench.core.jury import check_samples

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
    name, values = preset(cfg.protocol, cfg.model)
    filled = {k: v for k, v in values.items() if getattr(cfg, k) is None}
    return replace(cfg, protocol=name, **filled)


def preset(protocol: str | None, model: str | None) -> tuple[str, dict]:
    """The name and values of the preset `protocol` names (None: the default for `model`)."""
    name = protocol or default_protocol(model)
    if name not in PROTOCOLS:
        raise ConfigError(f"protocol {name!r}: choose one of {', '.join(PROTOCOLS)}")
    return name, PROTOCOLS[name]


def describe(cfg: EvalConfig) -> dict:
    """What a results file says about the protocol of a resolved config (`resolve`'s result).

    `{"name": "paper"}` when every preset field has the preset's value, else
    `{"name": "custom", "base": "paper", "differences": {field: {"preset": v, "run": w}}}`.
    """
    preset = PROTOCOLS[cfg.protocol]
    differences = {k: {"preset": v, "run": getattr(cfg, k)} for k, v in preset.items() if getattr(cfg, k) != v}
    if not differences:
        return {"name": cfg.protocol, "base": cfg.protocol, "differences": {}}
    return {"name": "custom", "base": cfg.protocol, "differences": differences}


@dataclass(frozen=True)
class EvalRun:
    """One evaluation with every setting decided: made once at the entry (`resolve_run`), read by everything below.

    `config` has its protocol named and its preset fields filled; `settings` is what `--print-config` prints and
    what a results file records under `config` (protocol, run, generation settings).
    """

    config: EvalConfig
    backend: BackendOptions
    protocol: dict
    reply_generation: GenerationConfig
    user_generation: GenerationConfig
    judge: JudgeConfig
    settings: dict
    #: the judges in order, one `JudgeSetting` each (a lone judge: one, with `judge` as its config)
    judges: tuple = ()


def resolve_run(cfg: EvalConfig, backend: BackendOptions | None = None) -> EvalRun:
    """Resolve `cfg`'s protocol once and derive everything the run needs from it; a bad protocol, judge setting
    or role override raises `ConfigError` here. Loads nothing and reads no model spec (`--print-config` prints
    the settings of a model that is not there)."""
    cfg = resolve(cfg)
    backend = backend or BackendOptions()
    backend.check_roles(roles_of(cfg))
    # the paper's temperature None leaves top_p to the model too
    reply = GenerationConfig(cfg.reply_max_new_tokens, cfg.temperature,
                             top_p=None if cfg.temperature is None else 1.0, seed=cfg.seed)
    user = GenerationConfig(cfg.user_max_new_tokens, cfg.user_temperature, seed=cfg.seed)
    judges = tuple(_judge_setting(cfg, backend, i) for i in range(len(cfg.judge_models)))
    judged = [j.config.resolved("embedded" if j.spec.strip() == "embedded" else "other") for j in judges]
    for j, config in zip(judges, judged):  # a sample that would repeat one answer is refused here, at the entry
        check_samples(cfg.judge_samples, config, f"judge {j.index} ({j.spec}, {config.preset})")
    protocol = describe(cfg)
    settings = {
        "protocol": protocol,
        "run": _run_record(cfg, backend),
        "reply_generation": reply.to_dict(),
        "user_generation": user.to_dict(),
        "judge_generation": judged[0].generation().to_dict() | {"scoring": judged[0].scoring},
    }
    if cfg.is_jury:
        settings["jury"] = {"aggregate": cfg.jury_aggregate, "samples": cfg.judge_samples,
                            "judges": [{"spec": j.spec, "base_url": j.base_url, "preset": c.preset,
                                        "scoring": c.scoring, "generation": c.generation().to_dict()}
                                       for j, c in zip(judges, judged)]}
    return EvalRun(cfg, backend, protocol, reply, user, judges[0].config, settings, judges)


@dataclass(frozen=True)
class JudgeSetting:
    """One judge of a run: its 1-based place, spec, base URL, `JudgeConfig` and backend options (the `judge` role's
    overrides, then its own `judge_<index>` ones, for a jury)."""

    index: int
    spec: str
    base_url: str | None
    config: JudgeConfig
    options: BackendOptions


def roles_of(cfg: EvalConfig) -> tuple[str, ...]:
    """The roles `role_options` may name: model, user, judge and, in a jury, `judge_1` ... `judge_N` (one judge's
    own overrides, applied over the `judge` role's)."""
    n = len(cfg.judge_models)
    return ROLES + (tuple(f"judge_{i}" for i in range(1, n + 1)) if n > 1 else ())


def _judge_setting(cfg: EvalConfig, backend: BackendOptions, i: int) -> JudgeSetting:
    config = JudgeConfig(cfg.per_judge("judge_preset")[i], cfg.judge_scoring, cfg.judge_max_retries, seed=cfg.seed,
                         max_new_tokens=cfg.judge_max_new_tokens, temperature=cfg.judge_temperature)
    options = backend.for_role("judge")
    own = (backend.role_options or {}).get(f"judge_{i + 1}")
    if own:
        options = replace(options, **own)
    return JudgeSetting(i + 1, cfg.judge_models[i], cfg.per_judge("judge_base_url")[i], config, options)


#: the roles of an eval run, as `BackendOptions.role_options` names them
ROLES = ("model", "user", "judge")

#: where the backend options sit among the run's own settings in a results file's `config.run` (the order every
#: results file has had); options declared later follow the last group
_BACKEND_AFTER = {"judge_base_url": ("api_key_env", "engine")}


#: settings recorded in `config.run` (and so in the fingerprint) only when they are not the default
_RECORDED_WHEN_SET = ("jury_aggregate", "judge_samples", "reply_hidden_block")


def _run_record(cfg: EvalConfig, backend: BackendOptions) -> dict:
    """`config.run`: every setting of the run but `progress`, the backend options among them; `role_options`
    only when given."""
    options = {f.name: getattr(backend, f.name) for f in fields(backend) if f.name != "role_options"}
    placed = {name for names in _BACKEND_AFTER.values() for name in names}
    after = _BACKEND_AFTER | {"schedule": tuple(name for name in options if name not in placed)}
    record = {}
    for f in fields(cfg):
        if f.name in _RECORDED_WHEN_SET and getattr(cfg, f.name) == f.default:
            continue  # a run without a jury records what it recorded before juries existed (its fingerprint too)
        if f.name == "jury_aggregate" and len(cfg.judge_models) < 2:
            continue  # one judge: mean and median of one member's score are the same run
        if f.name != "progress":
            record[f.name] = getattr(cfg, f.name)
        record.update({name: options[name] for name in after.get(f.name, ())})
    if backend.role_options:
        record["role_options"] = backend.role_options
    return record
