"""The Rate tab in headless Chromium: three ratings (keyboard shortcuts and a click) land in the rater's file,
and two raters in two browser contexts at once write separate, complete files.

No model runs: the tab only reads a finished run. Needs Debian's Chromium at /usr/bin/chromium.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from aloe_bench.core.ratings import read_ratings
from rate_fixtures import RUN_ID, write_run
from test_space_browser import CHROMIUM, FLAGS, free_port, wait_for

REPLY = re.compile(r"REPLY-(\S+)-(\d+)")


@pytest.fixture(scope="module")
def rate_space(tmp_path_factory):
    from aloe_bench.space.space_config import SpaceConfig
    from aloe_bench.space.ui import build_demo

    root = tmp_path_factory.mktemp("rate")
    rows = write_run(root / "runs" / "some-model", personas=3, turns=2)
    port = free_port()
    config = SpaceConfig(port=port, results=str(root / "runs"), ratings_dir=str(root / "ratings"))
    demo = build_demo(config)
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/", root, rows
    demo.close()


def open_rate_tab(browser, url, rater):
    page = browser.new_context(viewport={"width": 1300, "height": 1100}).new_page()
    page.goto(url)
    page.get_by_role("tab", name="Rate").click()
    page.locator("#rate-rater input, #rate-rater textarea").first.fill(rater)
    page.locator("#rate-start").click()
    wait_for(lambda: REPLY.search(page.locator("#rate-item").inner_text()), 30, f"{rater}'s first row")
    return page


def shown_row(page):
    """The row being rated: the last reply on screen (the history above it shows the earlier turns' replies)."""
    persona, turn = REPLY.findall(page.locator("#rate-item").inner_text())[-1]
    return persona, int(turn)


def rate(page, how, saved_before):
    """Rate the row on screen by `how` (a key, or ('click', n)); return (persona, turn) rated."""
    row = shown_row(page)
    if isinstance(how, tuple):
        page.locator(f"#rate-{how[1]}").click()
    else:
        page.locator("body").click(position={"x": 5, "y": 5})  # focus off any textbox
        page.keyboard.press(how)
    wait_for(lambda: f"{saved_before + 1} saved" in page.locator("#rate-status").inner_text(), 30,
             f"rating {saved_before + 1} to be saved")
    # the status and the next row are separate outputs of one event: wait for the next row too before going on
    wait_for(lambda: not REPLY.search(page.locator("#rate-item").inner_text())
             or shown_row(page) != row, 30, f"the row after rating {saved_before + 1}")
    return row


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.timeout(300)
def test_three_ratings_by_key_and_click_land_in_the_file(rate_space):
    assert os.path.exists(CHROMIUM), f"{CHROMIUM} is missing: install Debian's chromium (scripts/setup.sh --test)"
    from playwright.sync_api import sync_playwright

    url, root, rows = rate_space
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        page = open_rate_tab(browser, url, "ann")
        text = page.locator("#rate-item").inner_text()
        assert "secret-model-name" not in text and "JUDGE" not in text and "4.75" not in text  # blind
        rated = [rate(page, "4", 0), rate(page, ("click", 2), 1), rate(page, "5", 2)]
        browser.close()
    records = read_ratings(Path(root) / "ratings" / "ratings-ann.jsonl")
    assert [(r["persona_id"], r["turn"], r["score"]) for r in records] == [
        (rated[0][0], rated[0][1], 4), (rated[1][0], rated[1][1], 2), (rated[2][0], rated[2][1], 5)]
    assert {r["rater"] for r in records} == {"ann"} and {r["run_id"] for r in records} == {RUN_ID}
    assert len(set(rated)) == 3


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.timeout(300)
def test_two_raters_at_once_write_separate_complete_files(rate_space):
    from playwright.sync_api import sync_playwright

    url, root, rows = rate_space
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        pages = {name: open_rate_tab(browser, url, name) for name in ("cat", "dan")}
        rated = {name: [] for name in pages}
        for i in range(len(rows)):  # interleaved: every row, both raters, alternating
            for name, page in pages.items():
                rated[name].append(rate(page, "1" if name == "cat" else "3", i))
        assert "All rows done" in pages["cat"].locator("#rate-item").inner_text()
        browser.close()
    for name, score in (("cat", 1), ("dan", 3)):
        records = read_ratings(Path(root) / "ratings" / f"ratings-{name}.jsonl")
        assert {r["rater"] for r in records} == {name} and {r["score"] for r in records} == {score}
        assert sorted((r["persona_id"], r["turn"]) for r in records) == sorted(
            (r["persona_id"], r["turn"]) for r in rows)
        assert [(r["persona_id"], r["turn"]) for r in records] == rated[name]
    assert rated["cat"] != rated["dan"]  # each rater's own seeded order
