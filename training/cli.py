"""Training-area subcommands: data (`personas`, `generate`, `dataset`), training (`train`, `reproduce`)."""

from __future__ import annotations

import importlib

PARTS = ("aloe_bench.training.data_cli", "aloe_bench.training.train_cli")


def register(sub) -> None:
    for part in PARTS:
        try:
            module = importlib.import_module(part)
        except ModuleNotFoundError as exc:
            if exc.name == part:
                continue
            raise
        module.register(sub)
