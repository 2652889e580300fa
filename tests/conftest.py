"""Shared fixtures. Everything runs offline on the embedded model; the paper's files come from ../shared."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# A fresh datasets cache per test session: `load_dataset(folder)` was seen serving a stale build of an earlier
# session's folder from ~/.cache/huggingface/datasets, which made a round-trip check compare old numbers.
os.environ["HF_DATASETS_CACHE"] = tempfile.mkdtemp(prefix="aloe-test-datasets-")

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
    from aloe_bench.core.backends import build_backend

    return build_backend("embedded")


@pytest.fixture(scope="session")
def embedded_model_dir() -> Path:
    from aloe_bench.core.embedded import embedded_model_dir

    return embedded_model_dir()


@pytest.fixture(scope="session")
def server(embedded_model_dir, tmp_path_factory):
    """A real OpenAI-compatible server on 127.0.0.1: `transformers serve` on the converted embedded folder.

    One per session (shared by the OpenAI-path and fault tests); one torch thread, which is several times
    faster than the default on a CPU shared with other jobs. Without --continuous-batching it runs one
    request at a time, so greedy answers are deterministic.
    """
    from aloe_bench.testing.serve import TransformersServe

    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with TransformersServe(embedded_model_dir, log_path=log) as serve:
        yield {"base_url": serve.base_url, "model": str(embedded_model_dir), "url": serve.url, "log": str(log)}
