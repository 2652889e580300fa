"""A public Space never lets a visitor's model choice reach the owner's secrets.

Sentinels on 127.0.0.1 record what really arrives: an OpenAI-compatible server that OPENAI_BASE_URL and
OPENAI_API_KEY point at, and a Hub stub (HF_ENDPOINT) that records the Authorization header of every request
transformers / huggingface_hub make while loading a model. The owner's configured models are the positive
control: their requests do carry the owner's key and token, so the sentinels can see a leak.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from aloe_bench.core.backends import GenerationConfig
from aloe_bench.space.errors import SpaceError
from aloe_bench.space.session import new_session
from aloe_bench.space.visitor_models import BoundedLoader
from aloe_bench.space.space_config import SpaceConfig
from aloe_bench.space.ui import SpaceUI
from fakes import ScriptedBackend

OWNER_KEY = "sk-owner-sentinel-0123456789"
OWNER_HF_TOKEN = "hf_ownerSentinel0123456789"
VISITOR_HF_TOKEN = "hf_visitorOwnToken987654321"


class Recorder:
    """A loopback HTTP server that records (method, path, Authorization) and answers like `answer` says."""

    def __init__(self, answer):
        self.seen: list[tuple[str, str, str]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _handle(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                recorder.seen.append((self.command, self.path, self.headers.get("Authorization") or ""))
                status, payload, headers = answer(self.command, self.path, body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_POST = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _completion(method, path, body):
    return 200, {"id": "x", "object": "chat.completion", "created": 0, "model": "m",
                 "choices": [{"index": 0, "finish_reason": "stop",
                              "message": {"role": "assistant", "content": "hello from the sentinel"}}]}, {}


@pytest.fixture
def openai_sentinel(monkeypatch):
    server = Recorder(_completion)
    monkeypatch.setenv("OPENAI_BASE_URL", server.url + "/v1")
    monkeypatch.setenv("OPENAI_API_KEY", OWNER_KEY)
    yield server
    server.close()


def _space_ui(environ: dict):
    """The Space as app.py builds it from Space variables; non-endpoint roles are scripted, endpoints real."""
    from aloe_bench.core.backends import build_backend

    judge = ScriptedBackend(options={"3": 1.0}, fn=lambda m, c: "Profile: None", kind="embedded")

    def loader(spec, token=None):
        return build_backend(spec, token=token) if spec.startswith("openai:") else judge

    config = SpaceConfig.from_env({"ALOE_SPACE_MODEL": "openai:owner-model", "ALOE_SPACE_USER_MODEL": "embedded",
                                   "ALOE_SPACE_JUDGE_MODEL": "embedded", **environ})
    ui = SpaceUI(config, loader)
    session = new_session(config)
    session.persona = ui.sets[ui.default_set].personas[0]
    return ui, session


def test_a_visitors_endpoint_model_never_carries_the_owners_key(openai_sentinel):
    ui, session = _space_ui({"SPACE_ID": "owner/aloe", "ALOE_SPACE_ALLOW_MODEL_CHANGE": "true"})
    assert ui.config.public and ui.config.allow_model_change

    # positive control: the owner's configured endpoint does reach the sentinel with the owner's key
    owner = ui.roles(ui.config).assistant("openai:owner-model")
    assert owner.generate([[{"role": "user", "content": "hi"}]], GenerationConfig(max_new_tokens=8))[0].ok
    assert any(auth == f"Bearer {OWNER_KEY}" for _, _, auth in openai_sentinel.seen)
    openai_sentinel.seen.clear()

    # the Models box refuses a visitor's endpoint spec up front...
    out = ui.on_settings("openai:visitor-model", "", "embedded", "embedded", session, ui.config)
    assert out[-1].startswith("⚠️") and "owner's key" in out[-1]
    # ...and below it the loader refuses it too, for every role (here as if the box had let it through)
    session.reset(models=["openai:visitor-model"])
    outputs = list(ui.on_send("hello", session, ui.config, None))
    assert "operator's own credentials" in outputs[-1][-1] and session.n_turns == 0
    visitor_judge = dict(vars(ui.config), judge_model="openai:visitor-judge")
    with pytest.raises(SpaceError, match="operator's own credentials"):
        ui.roles(SpaceConfig(**visitor_judge)).judge()
    assert not any(OWNER_KEY in auth for _, _, auth in openai_sentinel.seen)
    assert openai_sentinel.seen == []  # nothing at all was sent for the visitor's choice

    # running locally (no SPACE_ID) the person changing models is the owner: their key is used as before
    local_ui, local_session = _space_ui({})
    assert not local_ui.config.public
    local_session.reset(models=["openai:my-other-model"])
    assert local_ui.roles(local_ui.config).assistant("openai:my-other-model").generate(
        [[{"role": "user", "content": "hi"}]], GenerationConfig(max_new_tokens=8))[0].ok
    assert any(auth == f"Bearer {OWNER_KEY}" for _, _, auth in openai_sentinel.seen)


def test_without_the_opt_in_a_public_space_refuses_model_changes(openai_sentinel):
    ui, session = _space_ui({"SPACE_ID": "owner/aloe"})
    assert not ui.config.allow_model_change
    out = ui.on_settings("openai:visitor-model", "", "embedded", "embedded", session, ui.config)
    assert "fixed models" in out[-1] and session.models == ["openai:owner-model"]
    assert openai_sentinel.seen == []


def test_bounded_loader_gives_visitor_specs_their_own_token_or_none():
    calls = []

    def loader(spec, token=None):
        calls.append((spec, token))
        return ScriptedBackend(answers=["ok"])

    config = SpaceConfig(model="a/model", user_model="embedded", judge_model="embedded", public=True)
    gate = BoundedLoader(loader, config)
    gate("a/model")
    gate.for_visitor(None)("org/anon")
    gate.for_visitor(VISITOR_HF_TOKEN)("org/mine")
    assert calls == [("a/model", None), ("org/anon", False), ("org/mine", VISITOR_HF_TOKEN)]


HUB_SCRIPT = textwrap.dedent("""
    import json, sys, types
    from aloe_bench.core.backends import build_backend
    from aloe_bench.space.session import new_session
    from aloe_bench.space.space_config import SpaceConfig
    from aloe_bench.space.ui import SpaceUI

    config = SpaceConfig.from_env(dict(SPACE_ID="owner/aloe", ALOE_SPACE_ALLOW_MODEL_CHANGE="true",
                                       OAUTH_CLIENT_ID="x", ALOE_SPACE_MODEL="ownerorg/owner-model"))
    assert config.public and config.oauth
    ui = SpaceUI(config, build_backend)
    out = {}
    session = new_session(config)
    session.persona = ui.sets[ui.default_set].personas[0]
    out["owner"] = list(ui.on_send("hi", session, config, None))[-1][-1]
    print("MARK owner-done", flush=True)
    session.reset(models=["visitororg/anon-model"])
    out["anonymous"] = list(ui.on_send("hi", session, config, None))[-1][-1]
    print("MARK anonymous-done", flush=True)
    session.reset(models=["visitororg/private-model"])
    token = types.SimpleNamespace(token=sys.argv[1], scope="openid profile read-repos", expires_at=0)
    out["signed_in"] = list(ui.on_send("hi", session, config, token))[-1][-1]
    print("RESULT " + json.dumps(out))
""")


def _not_found(method, path, body):
    return 404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"}


def _run_against_hub(hub, script: str, tmp_path) -> dict:
    """Run `script` (with the visitor's token as its argument) in a fresh process whose Hub is `hub` on 127.0.0.1,
    HF_TOKEN the owner's sentinel and HF_HOME under `tmp_path`; its `RESULT {json}` line, parsed. Closes `hub`."""
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0",
           "HF_TOKEN": OWNER_HF_TOKEN, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_DISABLE_IMPLICIT_TOKEN": "",
           "HF_HUB_ETAG_TIMEOUT": "5", "HF_HUB_DOWNLOAD_TIMEOUT": "5"}
    env.pop("SPACE_ID", None)
    try:
        proc = subprocess.run([sys.executable, "-c", script, VISITOR_HF_TOKEN], env=env, capture_output=True,
                              text=True, timeout=300, cwd=Path(__file__).parent)
    finally:
        hub.close()
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.split("RESULT ", 1)[1])


def test_hub_models_load_with_the_visitors_token_or_none_never_the_owners(tmp_path):
    """Real loading: transformers -> huggingface_hub -> a recording Hub on 127.0.0.1, HF_TOKEN set to a sentinel."""
    hub = Recorder(_not_found)
    result = _run_against_hub(hub, HUB_SCRIPT, tmp_path)
    assert all(status.startswith("⚠️") for status in result.values())  # the stub has no models: each load fails
    by_repo = {}
    for _, path, auth in hub.seen:
        repo = next((r for r in ("owner-model", "anon-model", "private-model") if r in path), None)
        by_repo.setdefault(repo, set()).add(auth)
    # positive control: the owner's configured model did ask the Hub with the owner's HF_TOKEN
    assert by_repo.get("owner-model") == {f"Bearer {OWNER_HF_TOKEN}"}
    # a visitor who is not signed in loads anonymously; a signed-in visitor with their own token only
    assert by_repo.get("anon-model") == {""}
    assert by_repo.get("private-model") == {f"Bearer {VISITOR_HF_TOKEN}"}
    assert OWNER_HF_TOKEN not in json.dumps(result)


def test_evaluate_page_takes_only_public_hub_models_from_visitors(monkeypatch):
    import importlib.util as iu
    import types

    spec = iu.spec_from_file_location("aloe_eval_app_secrets", Path(__file__).resolve().parents[1] / "harness/aloe/app.py")
    app = iu.module_from_spec(spec)
    spec.loader.exec_module(app)
    asked = []

    def info(repo, token=None):  # stands in for huggingface_hub.model_info (the Hub is unreachable here)
        asked.append((repo, token))
        if repo == "org/missing":
            raise OSError("404")
        return types.SimpleNamespace(private=False, gated="manual" if repo == "org/gated" else False)

    assert app.visitor_model_refusal("openai:gpt-4o", info) is None  # locally: you are the owner
    monkeypatch.setenv("SPACE_ID", "owner/aloe")
    assert "embedded model only" in app.visitor_model_refusal("org/public", info)
    monkeypatch.setenv("ALOE_SPACE_ALLOW_MODEL_CHANGE", "true")
    assert "public Hub model (ORG/NAME) only" in app.visitor_model_refusal("openai:gpt-4o", info)
    assert "public Hub model (ORG/NAME) only" in app.visitor_model_refusal("./my-folder", info)
    assert "private or gated" in app.visitor_model_refusal("org/gated", info)
    assert "not a public Hub model" in app.visitor_model_refusal("org/missing", info)
    assert app.visitor_model_refusal("org/public", info) is None and app.visitor_model_refusal("embedded") is None
    assert {token for _, token in asked} == {False}  # the check never used the owner's token
    assert app.run("a | b", "openai:gpt-4o", 1, 8)[1].startswith("⚠️ 'openai:gpt-4o': visitors may choose")


def test_oauth_build_asks_for_read_repos_and_installs_gradios_oauth_extra():
    from huggingface_hub import SpaceCard

    from aloe_bench.commands import hub_space_folder

    data = SpaceCard(str(hub_space_folder.space_card("space", "---\ntitle: T\n---\n# T\n", "cpu-basic", True, "3.11"))).data
    assert data.hf_oauth is True and data.to_dict()["hf_oauth_scopes"] == ["read-repos"]
    text = hub_space_folder.requirements_text("space", "cpu-basic", "aloe-bench==1", [], "note", oauth=True)
    assert any(line.startswith("gradio[oauth]==") for line in text.splitlines())
    assert "## Visitors and secrets" in hub_space_folder.space_card("space", "---\ntitle: T\n---\n# T\n", "cpu-basic", False,
                                                          "3.11").text


def test_gradio_fills_the_visitors_token_into_the_wrapped_handlers():
    """gradio finds `gr.OAuthToken | None` parameters by type hint; the secret-scrubbing wrapper must keep them."""
    from gradio.utils import get_type_hints, is_special_typed_parameter

    from aloe_bench.space.ui import _endpoint

    ui, _ = _space_ui({})
    for handler, session_arg in ((ui.on_send, 1), (ui.on_score, 0), (ui.on_induce, 0), (ui.on_autoplay, 1)):
        wrapped = _endpoint(handler, session_arg)
        assert is_special_typed_parameter("oauth_token", get_type_hints(wrapped)), handler.__name__


def test_a_visitor_cannot_load_a_folder_on_the_spaces_disk(tmp_path):
    """With the opt-in a visitor may type a spec; a path (say the owner's HF cache of a gated model) is refused
    in the Models box and by the loader, and the answer does not tell whether the folder exists."""
    from aloe_bench.core.backends import BackendError, ModelSpec, build_backend

    folder = tmp_path / "hub" / "models--org--gated" / "snapshots" / "abc"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    assert ModelSpec.parse(str(folder)).kind == "hf"  # for the owner it is a model folder like any other
    judge = ScriptedBackend(options={"3": 1.0}, fn=lambda m, c: "Profile: None", kind="embedded")
    config = SpaceConfig.from_env({"SPACE_ID": "owner/aloe", "ALOE_SPACE_ALLOW_MODEL_CHANGE": "true"})
    ui = SpaceUI(config, lambda spec, token=None: judge if spec == "embedded" else build_backend(spec, token=token))
    session = new_session(config)
    session.persona = ui.sets[ui.default_set].personas[0]
    answers = {spec: ui.on_settings(spec, "", "embedded", "embedded", session, ui.config)[-1]
               for spec in (str(folder), str(tmp_path / "nothing-here"), "~/.cache/huggingface/hub")}
    assert all(a == "⚠️ model: visitors of a public Space can only choose Hub models (ORG/NAME), not folders on "
                    "the Space's disk" for a in answers.values()), answers
    assert session.models == ["embedded"]
    # below the box, the loader refuses it for every visitor, signed in or not
    for token in (False, VISITOR_HF_TOKEN):
        for spec in (str(folder), ModelSpec.parse(str(folder))):
            with pytest.raises(BackendError, match="folder on this machine"):
                build_backend(spec, token=token)
    session.reset(models=[str(folder)])
    out = list(ui.on_send("hello", session, ui.config, None))[-1][-1]
    assert "folder on this machine" in out and session.n_turns == 0


GATED_SCRIPT = textwrap.dedent("""
    import json, sys
    from huggingface_hub import hf_hub_download
    from aloe_bench.core.backends import BackendError, build_backend

    out = {"cached": hf_hub_download("gatedorg/gated-model", "config.json", token=False)}
    for who, token in (("anonymous", False), ("signed_in", sys.argv[1])):
        try:
            build_backend("gatedorg/gated-model", token=token)
            out[who] = "loaded"
        except BackendError as exc:
            out[who] = str(exc)
    print("RESULT " + json.dumps(out))
""")


def _gated(method, path, body):
    return 403, {"error": "Access to model gatedorg/gated-model is restricted."}, {"X-Error-Code": "GatedRepo"}


def test_a_gated_model_in_the_owners_cache_never_loads_for_a_visitor(tmp_path):
    """huggingface_hub serves cached files when the Hub refuses a gated repo (shown here first): so a visitor's
    Hub model loads only after the Hub confirms that visitor (or nobody, anonymously) may read it."""
    cache = tmp_path / "hf" / "hub" / "models--gatedorg--gated-model"
    sha = "1" * 40
    (cache / "refs").mkdir(parents=True)
    (cache / "refs" / "main").write_text(sha)
    (cache / "snapshots" / sha).mkdir(parents=True)
    (cache / "snapshots" / sha / "config.json").write_text('{"owner": "downloaded with the owner token"}')
    hub = Recorder(_gated)
    result = _run_against_hub(hub, GATED_SCRIPT, tmp_path)
    assert result["cached"].startswith(str(cache))  # the hole: refused by the Hub, served from the cache anyway
    assert "does not confirm that no token (anonymous) may read" in result["anonymous"]
    assert "does not confirm that the signed-in visitor's token may read" in result["signed_in"]
    asked = [(path, auth) for _, path, auth in hub.seen if "auth-check" in path]
    assert asked == [("/api/models/gatedorg/gated-model/auth-check", ""),
                     ("/api/models/gatedorg/gated-model/auth-check", f"Bearer {VISITOR_HF_TOKEN}")]
    assert not any(OWNER_HF_TOKEN in auth for _, _, auth in hub.seen)


def test_evaluate_page_refuses_a_hub_looking_id_that_is_a_folder_on_disk(tmp_path, monkeypatch):
    import importlib.util as iu
    import types

    spec = iu.spec_from_file_location("aloe_eval_app_disk", Path(__file__).resolve().parents[1] / "harness/aloe/app.py")
    app = iu.module_from_spec(spec)
    spec.loader.exec_module(app)
    monkeypatch.setenv("SPACE_ID", "owner/aloe")
    monkeypatch.setenv("ALOE_SPACE_ALLOW_MODEL_CHANGE", "true")
    public = lambda repo, token=None: types.SimpleNamespace(private=False, gated=False)  # noqa: E731
    assert app.visitor_model_refusal("org/name", public) is None
    (tmp_path / "org" / "name").mkdir(parents=True)  # ModelSpec.parse would take this folder, not the Hub repo
    monkeypatch.chdir(tmp_path)
    assert "public Hub model (ORG/NAME) only" in app.visitor_model_refusal("org/name", public)
