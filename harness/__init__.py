"""The ALOE harness: score any chat model on multi-turn personalised alignment."""

from .eval_config import EvalConfig
from .runner import evaluate_model, evaluate_personas

__all__ = ["EvalConfig", "evaluate_model", "evaluate_personas"]
