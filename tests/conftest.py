"""Shared fixtures. Everything runs offline on the embedded model; the paper's files come from ../shared."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]
UPSTREAM = REPO_ROOT.parent / "shared" / "aloe-upstream"


@pytest.fixture(scope="session")
def upstream_dir() -> Path:
    """The paper's public eval personas (profile_eval.jsonl, personality_eval.jsonl), read in place."""
    assert (UPSTREAM / "profile_eval.jsonl").exists(), f"missing {UPSTREAM}: the tests read ../shared/aloe-upstream"
    return UPSTREAM


@pytest.fixture(scope="session")
def embedded_backend():
    """The embedded SmolLM2 backend, loaded once per test session and shared by every role."""
    from aloe_bench.core.backends import load_backend

    return load_backend("embedded")


@pytest.fixture(scope="session")
def embedded_model_dir() -> Path:
    from aloe_bench.core.embedded import embedded_model_dir

    return embedded_model_dir()
