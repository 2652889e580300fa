"""`aloe metrics --al 3.38,3.35,...`: the ALOE metrics of an AL(k) curve, as JSON (loads no model)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field


@dataclass
class MetricsConfig:
    """`aloe metrics`'s one setting: the curve."""

    al: str = field(metadata={"help": "Comma-separated AL(1),...,AL(K), e.g. 3.38,3.35,3.5"})


def register(sub) -> None:
    from aloe_bench.core.recipes import add_recipe_command

    add_recipe_command(sub, "metrics", [MetricsConfig], _run_metrics,
                       "AL_avg, IR, N_IR, R2, N_R2 of an AL(k) curve, as JSON.")


def _run_metrics(args) -> int:
    from aloe_bench.core.errors import ConfigError
    from aloe_bench.core.metrics import aloe_metrics
    from aloe_bench.core.recipes import dataclass_from_args

    cfg = dataclass_from_args(args, MetricsConfig)
    try:
        curve = [float(x) for x in cfg.al.split(",") if x.strip()]
        metrics = aloe_metrics(curve)
    except ValueError as exc:
        problem = f"--al {cfg.al!r}: expected comma-separated numbers AL(1),...,AL(K), K >= 2 ({exc})"
        raise ConfigError(problem) from None
    print(json.dumps(metrics, indent=2))
    return 0
