"""One online round's training in a process of its own, under `accelerate launch` (`aloe train online
--accelerate_config FILE`): several GPUs or DeepSpeed ZeRO-3 for the trainer, while the rollouts, the judge and the
eval stay in the command's process, one copy each.

The command writes the round's request (its settings, the policy, the data folder, the output folder) next to the
round's data and launches this module on it; every rank trains (`train_round`), the main rank writes the metrics
file the command reads back. A launch that fails stops the command with one line and the tail of its output; the
round's rollouts and data stay, so the next run resumes at the training step.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

from aloe_bench.core.errors import AloeError
from aloe_bench.core.io import atomic_write_json, read_json

REQUEST = "train_request.json"
METRICS = "train_metrics.json"


class LaunchError(AloeError, RuntimeError):
    """The launched training process failed."""


def launch_command(accelerate_config: str, request: Path) -> list[str]:
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", accelerate_config,
            "-m", "aloe_bench.training.online_round", str(request)]


def launched_train_round(cfg, policy_path: str, data_folder: Path, config: str, out: Path, run=subprocess.run) -> dict:
    """`online.train_round`, run by `accelerate launch` with the recipe's `accelerate_config`; its metrics."""
    folder = Path(data_folder).parent
    request = folder / REQUEST
    (folder / METRICS).unlink(missing_ok=True)
    atomic_write_json(request, {"config": asdict(cfg), "policy": policy_path, "data": str(data_folder),
                                "data_config": config, "out": str(out)})
    done = run(launch_command(cfg.accelerate_config, request), capture_output=True, text=True)
    if done.returncode != 0 or not (folder / METRICS).exists():
        tail = " | ".join((done.stderr or done.stdout or "").strip().splitlines()[-3:])
        raise LaunchError(f"{request}: accelerate launch of the round's training failed (exit {done.returncode}): "
                          f"{tail or 'no output'}")
    return read_json(folder / METRICS)


def main(argv: list[str] | None = None) -> int:
    from .online import OnlineConfig, train_round

    request_path = Path((argv or sys.argv[1:])[0])
    request = read_json(request_path)
    cfg = OnlineConfig(**{**request["config"], "accelerate_config": None})  # this process is the launched one
    metrics = train_round(cfg, request["policy"], Path(request["data"]), request["data_config"], Path(request["out"]))
    if int(os.environ.get("RANK", "0")) == 0:
        atomic_write_json(request_path.parent / METRICS, metrics or {}, default=str)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
