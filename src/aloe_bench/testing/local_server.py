"""What the test servers on 127.0.0.1 share: a free port, their address, `with` = start/stop, and for a server in a
child process, starting it and waiting until `/health` answers (the log's tail in the error when it does not)."""

from __future__ import annotations

import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalServer:
    """An OpenAI-compatible server at `url` (`base_url` ends in /v1); subclasses give `host`, `port`, start and stop."""

    host = "127.0.0.1"
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def start(self):
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class ChildServer(LocalServer):
    """`command` in a child process serving on `port`; `start` returns once `/health` answers 200.

    Its output goes to `log_path` (a temporary file by default); if it exits or stays unhealthy for
    `startup_timeout_s`, `start` raises with the end of that log.
    """

    name = "server"

    def __init__(self, command: list[str], port: int, startup_timeout_s: float, log_path=None, env=None,
                 poll_s: float = 0.5, stop_timeout_s: float = 30.0):
        self.command, self.port, self.env = command, port, env
        self.startup_timeout_s, self.poll_s, self.stop_timeout_s = startup_timeout_s, poll_s, stop_timeout_s
        self._log_dir = None if log_path else tempfile.TemporaryDirectory(prefix="aloe-server-log-")
        self.log_path = Path(log_path) if log_path else Path(self._log_dir.name) / f"{self.name.replace(' ', '-')}.log"
        self.proc: subprocess.Popen | None = None
        self._log = None

    def healthy(self) -> bool:
        """Whether `/health` answers 200 now (any connection error or other status: not yet)."""
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=2) as response:
                return response.status == 200
        except OSError:  # refused, reset, timed out, or an HTTP error status
            return False

    def start(self):
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(self.command, stdout=self._log, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {self._log_tail()}")
            if self.healthy():
                return self
            time.sleep(self.poll_s)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer on {self.url}/health within {self.startup_timeout_s:g} s: "
                           f"{self._log_tail()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def _log_tail(self, chars: int = 2000) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return f"see {self.log_path}" + (f"; it ends:\n{text[-chars:]}" if text.strip() else " (empty)")
