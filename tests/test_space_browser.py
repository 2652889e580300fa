"""A real browser drives the Space on the embedded model: type, watch the reply stream and get scored, auto-play.

Needs Debian's Chromium at /usr/bin/chromium (scripts/setup.sh --test installs it); without it the test fails.
"""

from __future__ import annotations

import os
import re
import socket
import time
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
# The test saves its screenshot under tmp_path; set ALOE_SPACE_SCREENSHOT=docs/space.png to refresh the README's.
SCREENSHOT_ENV = "ALOE_SPACE_SCREENSHOT"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run"]
SCORE = re.compile(r"judge \d\.\d\d / 5")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, poll: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def send_and_wait_for_score(page, message: str, timeout: float, what: str) -> list[str]:
    """Type `message` as the persona, wait until the reply shows its judge score; assert the reply streamed.

    Returns every distinct text the reply showed on the way (its growth, then the score beside it)."""
    page.locator("#msg textarea").fill(message)
    page.locator("#msg textarea").press("Enter")
    bot = page.locator("#chat-a .bot").last
    seen: list[str] = []

    def scored():
        try:
            text = bot.inner_text(timeout=500) if page.locator("#chat-a .bot").count() else ""
        except Exception:  # the element re-renders while streaming
            return False
        if text and (not seen or seen[-1] != text):
            seen.append(text)
        return SCORE.search(text)

    wait_for(scored, timeout, what)
    replies = [s.split("judge")[0].strip() for s in seen if "scoring" in s]
    assert len(set(replies)) >= 2, f"the reply did not stream: saw {seen}"
    return seen


@pytest.fixture(scope="module")
def space_url():
    from aloe_bench.space.space_config import SpaceConfig
    from aloe_bench.space.ui import build_demo

    port = free_port()
    config = SpaceConfig(port=port, reply_max_new_tokens=12, user_max_new_tokens=12, induction_max_new_tokens=12,
                         max_autoplay_turns=2, results=str(Path(__file__).parent / "no-results-here"))
    demo = build_demo(config)
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.timeout(420)
def test_chat_scores_autoplay_and_plot_in_a_real_browser(space_url, tmp_path):
    assert os.path.exists(CHROMIUM), f"{CHROMIUM} is missing: install Debian's chromium (scripts/setup.sh --test)"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1300})
        page.goto(space_url)
        page.locator("#msg textarea").wait_for(timeout=60_000)
        assert "marine biologist" in page.locator("#persona").inner_text()  # the persona shows profile + personality

        # 1. Type as the persona: the reply streams (its text grows), then its score appears beside it.
        send_and_wait_for_score(page, "Hi. Back from a dive, the kelp was fine. Saw an octopus.", 180,
                                "the first reply's judge score")
        assert page.locator("#msg textarea").input_value() == ""  # the textbox was freed for the next message
        wait_for(lambda: "After turn 1" in page.locator("#revealed").inner_text(), 120, "the induction panel")

        # 2. Start over with the same persona and let the simulated user play two turns.
        page.locator("#reset").click()
        wait_for(lambda: page.locator("#chat-a .bot").count() == 0, 30, "the reset")
        page.locator("#autoplay").click()
        wait_for(lambda: "Auto-play finished 2 turns" in page.locator("#status").inner_text(), 300, "two auto-play turns")
        summary = page.locator("#summary-a").inner_text()
        assert re.search(r"scores by turn: \d\.\d\d, \d\.\d\d · running IR: [+-]\d\.\d{3}", summary), summary
        assert len(page.locator("#chat-a .bot").all()) == 2
        assert all(SCORE.search(b.inner_text()) for b in page.locator("#chat-a .bot").all())

        # 3. The plot shows the two scores (vega labels every point "turn: k; value: v; series: s") and the trend.
        def points(series):
            labels = page.locator("#plot-a svg path[aria-roledescription='point']").evaluate_all(
                "els => els.map(e => e.getAttribute('aria-label'))")
            return [label for label in labels if label.endswith(f"series: {series}")]

        score_points = wait_for(lambda: len(points("score")) == 2 and points("score"), 30, "two points on the plot")
        assert [p.split(";")[0] for p in score_points] == ["turn: 1", "turn: 2"]
        shown = re.search(r"scores by turn: (\d\.\d\d), (\d\.\d\d)", summary).groups()
        plotted = [float(re.search(r"value: ([\d.]+)", p).group(1)) for p in score_points]
        assert [f"{v:.2f}" for v in plotted] == list(shown)
        assert len(points("trend")) == 2
        wait_for(lambda: "After turn 2" in page.locator("#revealed").inner_text(), 120, "induction after auto-play")
        screenshot = Path(os.environ.get(SCREENSHOT_ENV) or tmp_path / "space.png")
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(screenshot), full_page=True)
        assert screenshot.stat().st_size > 10_000
        browser.close()
