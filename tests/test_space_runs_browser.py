"""The Runs tab in headless Chromium: load two runs written here, read a persona's turns with their scores,
compare the two runs on that persona, and open a run from its leaderboard row.

No model runs: the tab only reads finished runs. Needs Debian's Chromium at /usr/bin/chromium. Set
ALOE_RUNS_SCREENSHOT=docs/space-runs.png to refresh the README's screenshot.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runs_fixtures import PERSONAS, write_two_runs
from test_space_browser import CHROMIUM, FLAGS, free_port, wait_for

SCREENSHOT_ENV = "ALOE_RUNS_SCREENSHOT"


@pytest.fixture(scope="module")
def runs_space(tmp_path_factory):
    from aloe_bench.space.space_config import SpaceConfig
    from aloe_bench.space.ui import build_demo

    root = tmp_path_factory.mktemp("runs")
    write_two_runs(root / "runs")
    port = free_port()
    demo = build_demo(SpaceConfig(port=port, results=str(root / "runs")))
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


def pick(page, elem_id, text):
    """Choose the option of dropdown `elem_id` that contains `text`."""
    page.locator(f"#{elem_id} input").click()
    page.get_by_role("option", name=text).first.click()


def text_of(page, elem_id):
    return page.locator(f"#{elem_id}").inner_text()


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.timeout(300)
def test_runs_tab_shows_a_persona_and_compares_two_runs(runs_space, tmp_path):
    assert os.path.exists(CHROMIUM), f"{CHROMIUM} is missing: install Debian's chromium (scripts/setup.sh --test)"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        page = browser.new_context(viewport={"width": 1400, "height": 1200}).new_page()
        page.goto(runs_space)
        page.get_by_role("tab", name="Runs").click()
        page.locator("#runs-load").click()
        # the newest run (tuned/model) opens first, on the first persona
        wait_for(lambda: "REPLY-B-evp01__evq01-1" in text_of(page, "runs-turns-a"), 60, "run B's turns")
        pick(page, "runs-run-a", "base/model")
        wait_for(lambda: "REPLY-A-evp01__evq01-2" in text_of(page, "runs-turns-a"), 60, "run A's turns")
        turns = text_of(page, "runs-turns-a")
        for shown in ("USER-evp01__evq01-1", "score 3.00", "style 2.00", "judge-two", "no integer in the answer",
                      "RAW-A-1", "leak"):
            assert shown in turns, shown
        # the plot: one point per score and per criterion, on integer turns
        points = lambda: page.locator("#runs-plot-a svg path[aria-roledescription='point']").evaluate_all(
            "els => els.map(e => e.getAttribute('aria-label'))")
        labels = wait_for(lambda: len(points()) >= 8 and points(), 30, "the plot's points")
        assert {label.split(";")[0] for label in labels} == {"turn: 1", "turn: 2"}

        pick(page, "runs-run-b", "tuned/model")
        wait_for(lambda: "REPLY-B-evp01__evq01-2" in text_of(page, "runs-turns-b"), 60, "run B beside run A")
        assert "JUDGE-TIMEOUT" in text_of(page, "runs-turns-b")
        assert "REPLY-A-evp01__evq01-2" in text_of(page, "runs-turns-a")
        assert "tuned/model" in text_of(page, "runs-summary-b") and "base/model" in text_of(page, "runs-summary-a")
        # run B's single scored turn shows as a point
        wait_for(lambda: page.locator("#runs-plot-b svg path[aria-roledescription='point']").count() >= 1, 30,
                 "run B's single point")
        screenshot = Path(os.environ.get(SCREENSHOT_ENV) or tmp_path / "space-runs.png")
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(screenshot), full_page=True)

        pick(page, "runs-persona", PERSONAS[1])
        wait_for(lambda: "has no persona" in text_of(page, "runs-status"), 60, "run B lacks the second persona")

        # a leaderboard row opens its run in the Runs tab
        page.get_by_role("tab", name="Leaderboard").click()
        page.locator("#leaderboard").get_by_text("base/model").first.click()
        wait_for(lambda: page.locator("#runs-turns-a").is_visible()
                 and "REPLY-A-evp01__evq01-1" in text_of(page, "runs-turns-a"), 60, "the run opened from the board")
        browser.close()


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.timeout(300)
def test_chat_plot_shows_one_scored_turn_as_a_point_on_integer_turns():
    """The Chat tab's plot (scripted backends, no model): one scored turn is a point, two are points at turns 1, 2."""
    from playwright.sync_api import sync_playwright

    from aloe_bench.space.ui import build_demo
    from test_space_ui import config, fakes

    port = free_port()
    demo = build_demo(config(port=port, results="no-results-here"), fakes()[1])
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
            page = browser.new_context(viewport={"width": 1300, "height": 1100}).new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            points = lambda: page.locator("#plot-a svg path[aria-roledescription='point']").evaluate_all(
                "els => els.map(e => e.getAttribute('aria-label'))")
            for n, text in enumerate(("hello", "more"), 1):
                page.locator("#msg textarea").fill(text)
                page.locator("#msg textarea").press("Enter")
                labels = wait_for(lambda: len(points()) == 2 * n and points(), 60, f"{n} scored turn(s) plotted")
                assert sorted(label.split(";")[0] for label in labels if "series: score" in label) == [
                    f"turn: {k}" for k in range(1, n + 1)]
            ticks = page.locator("#plot-a svg .role-axis-label text").evaluate_all("els => els.map(e => e.textContent)")
            assert {"1", "2"} <= set(ticks) and "1.5" not in ticks
            browser.close()
    finally:
        demo.close()
