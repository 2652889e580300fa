"""The ALOE harness: score any chat model on multi-turn personalised alignment."""

from .eval_config import EvalConfig
from .protocol import EvalRun, resolve_run
from .runner import evaluate_model, evaluate_personas

__all__ = ["EvalConfig", "EvalRun", "evaluate_model", "evaluate_personas", "resolve_run"]
