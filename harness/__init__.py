"""The ALOE harness: score any chat model on multi-turn personalised alignment."""

from .config import EvalConfig
from .runner import evaluate_model, evaluate_personas

__all__ = ["EvalConfig", "evaluate_model", "evaluate_personas"]
