"""`transformers serve FOLDER` on 127.0.0.1 as a context manager: a real OpenAI-compatible server for tests and
benchmarks with no network (it needs the `serve` extra)."""

from __future__ import annotations

import os
import sys
import tempfile
from importlib.metadata import entry_points
from pathlib import Path

from .local_server import ChildServer, free_port

__all__ = ["TransformersServe", "free_port", "transformers_command"]


def transformers_command() -> list[str]:
    """The `transformers` console command of this interpreter's packages: the script beside the interpreter, else
    its entry point run by the interpreter (a venv that borrows another's site-packages has no script), else PATH."""
    exe = Path(sys.executable).with_name("transformers")
    if exe.exists():
        return [str(exe)]
    for entry in entry_points(group="console_scripts", name="transformers"):
        return [sys.executable, "-c", f"import sys; from {entry.module} import {entry.attr} as main; "
                                      "sys.argv[0] = 'transformers'; sys.exit(main())"]
    return ["transformers"]


class TransformersServe(ChildServer):
    """`transformers serve FOLDER` in a child process; `base_url` ends in /v1; the request's model name is the
    folder path.

    Without `--continuous-batching` the server runs one request at a time, and greedy requests are
    deterministic. `torch_threads=1` is much faster than the default on a CPU shared with other work.
    """

    name = "transformers serve"

    def __init__(self, folder, port: int = 0, log_path=None, torch_threads: int | None = 1,
                 startup_timeout_s: float = 180.0, extra_args: tuple[str, ...] = ()):
        self.folder = str(folder)
        port = port or free_port()
        self._tmp = tempfile.TemporaryDirectory(prefix="aloe-serve-")
        hub_cache = Path(self._tmp.name) / "hub"  # /v1/models answers 500 unless this folder exists
        hub_cache.mkdir()
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(hub_cache)}
        if torch_threads:
            env.update(OMP_NUM_THREADS=str(torch_threads), MKL_NUM_THREADS=str(torch_threads))
        command = [*transformers_command(), "serve", self.folder, "--host", "127.0.0.1", "--port", str(port),
                   *extra_args]
        super().__init__(command, port, startup_timeout_s, log_path=log_path or Path(self._tmp.name) / "serve.log",
                         env=env)

    def __exit__(self, *exc) -> None:
        self.stop()
        self._tmp.cleanup()
