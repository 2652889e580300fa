"""A small stub of the Hub API on 127.0.0.1, enough for create_repo, snapshot_download of an empty repo,
create_commit / upload_folder (regular uploads, optionally as a pull request) and reading a missing README.

It records every commit (repo, type, files, whether it asked for a pull request), so tests check what the
client really sent. The token's user is `me` (member of the org `my-org`).
"""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

USER = {"type": "user", "name": "me", "fullname": "Me", "orgs": [{"name": "my-org", "type": "org"}],
        "auth": {"accessToken": {"role": "write"}}}


class HubStub:
    def __init__(self):
        self.commits: list[dict] = []
        self.created: list[dict] = []
        self.requests: list[str] = []
        self.validated: list[str] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status, payload=None, headers=None):
                body = b"" if payload is None else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def do_HEAD(self):
                self.do_GET()

            def do_GET(self):
                url = urlparse(self.path)
                stub.requests.append(f"{self.command} {url.path}")
                parts = url.path.strip("/").split("/")
                if url.path == "/api/whoami-v2":
                    return self._send(200, USER)
                if len(parts) >= 5 and parts[0] == "api" and parts[4] == "revision":  # repo info
                    return self._send(200, {"id": f"{parts[2]}/{parts[3]}", "sha": "0" * 40, "siblings": [],
                                            "private": True})
                if len(parts) >= 5 and parts[0] == "api" and parts[4] == "tree":  # an empty repo
                    return self._send(200, [])
                if "resolve" in parts:  # no file exists in the stub's repos
                    return self._send(404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound"})
                return self._send(404, {"error": f"stub: no route {url.path}"})

            def do_POST(self):
                url = urlparse(self.path)
                stub.requests.append(f"POST {url.path}")
                parts = url.path.strip("/").split("/")
                body = self._body()
                if url.path == "/api/repos/create":
                    info = json.loads(body)
                    stub.created.append(info)
                    prefix = "" if info.get("type", "model") == "model" else f"{info['type']}s/"
                    owner = info.get("organization") or USER["name"]
                    return self._send(200, {"url": f"{stub.url}/{prefix}{owner}/{info['name']}"})
                if url.path == "/api/validate-yaml":  # the stub checks that the card's metadata is YAML mapping
                    import yaml

                    content = json.loads(body)["content"]
                    front = content.split("---\n")[1] if content.startswith("---\n") else ""
                    ok = isinstance(yaml.safe_load(front) or {}, dict)
                    stub.validated.append(content)
                    return self._send(200 if ok else 400, {"errors": [] if ok else [{"message": "not a mapping"}]})
                if len(parts) >= 5 and parts[0] == "api" and parts[4] == "preupload":
                    files = json.loads(body)["files"]
                    return self._send(200, {"files": [{"path": f["path"], "uploadMode": "regular",
                                                       "shouldIgnore": False} for f in files]})
                if len(parts) >= 5 and parts[0] == "api" and parts[4] == "commit":
                    lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
                    files = {}
                    for line in lines:
                        if line.get("key") == "file":
                            value = line["value"]
                            files[value["path"]] = base64.b64decode(value["content"])
                    create_pr = parse_qs(url.query).get("create_pr", ["0"])[0] in ("1", "true", "True")
                    repo = f"{parts[2]}/{parts[3]}"
                    stub.commits.append({"repo": repo, "repo_type": parts[1][:-1], "files": files,
                                         "create_pr": create_pr})
                    oid = f"{len(stub.commits):040d}"
                    payload = {"commitUrl": f"{stub.url}/{repo}/commit/{oid}", "commitOid": oid}
                    if create_pr:
                        payload["pullRequestUrl"] = f"{stub.url}/{repo}/discussions/{len(stub.commits)}"
                    return self._send(200, payload)
                return self._send(404, {"error": f"stub: no route {url.path}"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
