"""`transformers serve FOLDER` on 127.0.0.1 as a context manager: a real OpenAI-compatible server for tests and
benchmarks with no network (it needs the `serve` extra)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from importlib.metadata import entry_points
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


class TransformersServe:
    """`transformers serve FOLDER` in a child process; `base_url` ends in /v1; the request's model name is the
    folder path.

    Without `--continuous-batching` the server runs one request at a time, and greedy requests are
    deterministic. `torch_threads=1` is much faster than the default on a CPU shared with other work.
    """

    def __init__(self, folder, port: int = 0, log_path=None, torch_threads: int | None = 1,
                 startup_timeout_s: float = 180.0, extra_args: tuple[str, ...] = ()):
        self.folder = str(folder)
        self.port = port or free_port()
        self._tmp = tempfile.TemporaryDirectory(prefix="aloe-serve-")
        self.log_path = Path(log_path) if log_path else Path(self._tmp.name) / "serve.log"
        self.startup_timeout_s = startup_timeout_s
        self.command = [*transformers_command(), "serve", self.folder, "--host", "127.0.0.1", "--port", str(self.port),
                        *extra_args]
        hub_cache = Path(self._tmp.name) / "hub"  # /v1/models answers 500 unless this folder exists
        hub_cache.mkdir()
        self.env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(hub_cache)}
        if torch_threads:
            self.env.update(OMP_NUM_THREADS=str(torch_threads), MKL_NUM_THREADS=str(torch_threads))
        self.proc = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def healthy(self) -> bool:
        """Whether `/health` answers 200 now (any connection error or other status: not yet)."""
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=2) as response:
                return response.status == 200
        except OSError:  # refused, reset, timed out, or an HTTP error status
            return False

    def start(self) -> "TransformersServe":
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(self.command, stdout=self._log, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.time() + self.startup_timeout_s
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"transformers serve exited with {self.proc.returncode}: see {self.log_path}")
            if self.healthy():
                return self
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"transformers serve did not become healthy in {self.startup_timeout_s:.0f} s: "
                           f"see {self.log_path}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "_log", None) is not None:
            self._log.close()

    def __enter__(self) -> "TransformersServe":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
        self._tmp.cleanup()
