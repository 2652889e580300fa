"""`ChildServer`: the start-and-wait-for-/health shape of the test servers (transformers serve, the latency server)."""

from __future__ import annotations

import sys

import pytest

from aloe_bench.testing.local_server import ChildServer, free_port

# A /health server in a few lines of the standard library, on the port given as argv[1].
HEALTH_SERVER = """
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
class Health(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()
    def log_message(self, *args):
        pass
print("serving", flush=True)
HTTPServer(("127.0.0.1", int(sys.argv[1])), Health).serve_forever()
"""


def test_start_waits_for_health_and_stop_ends_the_child():
    port = free_port()
    with ChildServer([sys.executable, "-c", HEALTH_SERVER, str(port)], port, startup_timeout_s=30,
                     poll_s=0.05) as server:
        assert server.healthy() and server.base_url == f"http://127.0.0.1:{port}/v1"
        proc = server.proc
    assert proc.poll() is not None and not server.healthy()


def test_a_child_that_exits_is_an_error_quoting_its_output():
    server = ChildServer([sys.executable, "-c", "print('no model here'); raise SystemExit(3)"], free_port(),
                         startup_timeout_s=30, poll_s=0.05)
    with pytest.raises(RuntimeError, match=r"(?s)server exited with 3: see .*no model here"):
        server.start()


def test_a_child_that_never_answers_is_stopped_after_the_timeout():
    server = ChildServer([sys.executable, "-c", "import time; print('stuck', flush=True); time.sleep(60)"],
                         free_port(), startup_timeout_s=0.5, poll_s=0.05)
    with pytest.raises(RuntimeError, match=r"(?s)did not answer on .*/health within 0.5 s: .*stuck"):
        server.start()
    assert server.proc.poll() is not None
