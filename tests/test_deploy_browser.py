"""The BUILT Space folders driven in headless Chromium, each app.py run from a fresh venv as the Space runs it.

`aloe hub build space|evaluate` writes the folders; their own wheels go into a new venv (third-party packages come
from the project's site-packages, as in test_deploy.py); a real browser types into the chat folder's page and runs
the evaluate folder's page. Set ALOE_EVALUATE_SCREENSHOT=docs/evaluate_space.png to refresh the README's picture.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from aloe_bench.commands import hub_space_folder
from test_deploy import _free_port, third_party_path
from test_space_browser import CHROMIUM, FLAGS, send_and_wait_for_score, wait_for

SCREENSHOT_ENV = "ALOE_EVALUATE_SCREENSHOT"


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory):
    root = tmp_path_factory.mktemp("built")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    folders = {kind: hub_space_folder.build_folder(kind, root / kind) for kind in ("space", "evaluate")}
    wheels = sorted((folders["space"] / "wheels").glob("*.whl"))
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-deps", "--force-reinstall",
                    *map(str, wheels)], check=True)
    return venv, folders, root


def _serve(folder: Path, venv: Path, env_extra: dict, log: Path):
    port = _free_port()
    env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
           "PYTHONPATH": third_party_path(), "GRADIO_ANALYTICS_ENABLED": "False", **env_extra}
    env.pop("SPACE_ID", None)
    proc = subprocess.Popen([str(venv / "bin" / "python"), "app.py"], cwd=folder, env=env, stdout=log.open("w"),
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"

    def up():
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            return urllib.request.urlopen(url, timeout=5).status == 200
        except OSError:
            return False

    wait_for(up, 240, f"{folder.name}/app.py to answer", poll=1)
    return proc, url


def _browser(p):
    assert os.path.exists(CHROMIUM), f"{CHROMIUM} is missing: install Debian's chromium (scripts/setup.sh --test)"
    return p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.timeout(900)
def test_built_chat_folder_streams_a_reply_and_scores_it(fresh_venv, tmp_path):
    from playwright.sync_api import sync_playwright

    venv, folders, _ = fresh_venv
    limits = {"ALOE_SPACE_REPLY_MAX_NEW_TOKENS": "12", "ALOE_SPACE_INDUCTION_MAX_NEW_TOKENS": "12",
              "ALOE_SPACE_RESULTS": str(tmp_path / "no-results")}
    proc, url = _serve(folders["space"], venv, limits, tmp_path / "space.log")
    try:
        with sync_playwright() as p:
            browser = _browser(p)
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(url)
            page.locator("#msg textarea").wait_for(timeout=60_000)
            send_and_wait_for_score(page, "Hi. Back from a dive, the kelp was fine. Saw an octopus.", 240,
                                    "the reply's judge score")
            assert "running IR" in page.locator("#summary-a").inner_text()
            browser.close()
    finally:
        proc.terminate()
        proc.wait(30)
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import aloe_bench; print(aloe_bench.__file__)"],
                           capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ""}, cwd=tmp_path)
    assert str(venv) in where.stdout  # the page ran the folder's own wheel


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.timeout(900)
def test_built_evaluate_folder_page_evaluates_a_persona(fresh_venv, tmp_path):
    from playwright.sync_api import sync_playwright

    venv, folders, _ = fresh_venv
    proc, url = _serve(folders["evaluate"], venv, {"TMPDIR": str(tmp_path)}, tmp_path / "evaluate.log")
    try:
        with sync_playwright() as p:
            browser = _browser(p)
            page = browser.new_page(viewport={"width": 1200, "height": 1000})
            page.goto(url)
            page.locator("#personas textarea").wait_for(timeout=60_000)
            page.locator("#turns input[type=number]").fill("2")
            page.locator("#turns input[type=number]").press("Enter")
            page.locator("#tokens input[type=number]").fill("16")
            page.locator("#tokens input[type=number]").press("Enter")
            page.locator("#evaluate").click()
            wait_for(lambda: "Evaluated 1 persona(s) x 2 turns" in page.locator("#status").inner_text(), 600,
                     "the evaluation")
            metrics = page.locator("#metrics").inner_text()
            assert "AL_avg" in metrics and "IR" in metrics
            screenshot = Path(os.environ.get(SCREENSHOT_ENV) or tmp_path / "evaluate_space.png")
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot), full_page=True)
            assert screenshot.stat().st_size > 10_000
            browser.close()
    finally:
        proc.terminate()
        proc.wait(30)
