"""The Space's reading tabs (Leaderboard, Rate, Runs) on a public Space: a visitor picks among the sources the owner
configured (a typed path or another Hub id is refused before anything is read), and a `hub:` source is read with the
visitor's own token or anonymously, never with the owner's HF_TOKEN; on the owner's machine any source may be typed
and the environment's credentials read it."""

from __future__ import annotations

import pytest

from aloe_bench.space.rate import RateSession, RateTab
from aloe_bench.space.space_config import SpaceConfig
from aloe_bench.space.ui import SpaceUI
from aloe_bench.testing.backends import echo_loader
from rate_fixtures import write_run
from runs_fixtures import write_two_runs

OWNER = "hf_OWNERSECRETTOKEN123"


class Visitor:
    token = "hf_visitor"


@pytest.fixture
def public(tmp_path, monkeypatch):
    monkeypatch.setenv("SPACE_ID", "owner/aloe")
    monkeypatch.setenv("HF_TOKEN", OWNER)
    write_two_runs(tmp_path / "runs")
    write_run(tmp_path / "rate" / "some-model")
    return SpaceConfig.from_env(results=str(tmp_path / "runs"), rate_source=str(tmp_path / "rate"),
                                runs=f"{tmp_path / 'runs'},hub:org/results", ratings_dir=str(tmp_path / "ratings"),
                                model="loadtest/echo", user_model="loadtest/user", judge_model="loadtest/judge")


@pytest.fixture
def hub_reads(monkeypatch):
    """Every Hub read the tabs make, with the token it was given ('NOT GIVEN': the environment's)."""
    seen = []

    def fake_load(source, config_name=None, split=None, **kwargs):
        seen.append(("load_dataset", source, kwargs.get("token", "NOT GIVEN")))
        raise FileNotFoundError("offline")

    def fake_snapshot(repo_id, **kwargs):
        seen.append(("snapshot", repo_id, kwargs.get("token", "NOT GIVEN")))
        raise FileNotFoundError("offline")

    monkeypatch.setattr("aloe_bench.core.dataset_folder.load_dataset_source", fake_load)
    monkeypatch.setattr("huggingface_hub.snapshot_download", fake_snapshot)
    return seen


def test_the_public_leaderboard_reads_only_offered_sources_with_the_visitors_token(public, tmp_path, hub_reads):
    assert public.public
    ui = SpaceUI(public, echo_loader())
    elsewhere = tmp_path / "elsewhere"
    write_two_runs(elsewhere)
    for typed in (str(elsewhere), "/etc", "hub:someone/else"):
        frame, note = ui.on_leaderboard(typed)
        assert frame.empty and note.startswith("⚠️ visitors of a public Space pick among the results"), note
    assert hub_reads == []  # refused before anything was read
    frame, note = ui.on_leaderboard(str(tmp_path / "runs"))
    assert len(frame) == 2 and note.startswith("2 result(s)")
    ui.on_leaderboard("hub:org/results")
    ui.on_leaderboard("hub:org/results", Visitor())
    assert hub_reads == [("load_dataset", "org/results", False), ("load_dataset", "org/results", "hf_visitor")]


def test_the_public_rate_tab_reads_only_offered_sources_with_the_visitors_token(public, tmp_path, hub_reads):
    tab = RateTab(public)
    assert tab.sources[0] == str(tmp_path / "rate") and "hub:org/results" in tab.sources
    for typed in (str(tmp_path / "runs" / ".."), "/etc", "hub:someone/else"):
        _, status, state = tab.on_start(typed, "", "ann", RateSession())
        assert status.startswith("⚠️ visitors of a public Space pick among the runs") and not state.items, status
    assert hub_reads == []
    md, status, state = tab.on_start(str(tmp_path / "rate"), "", "ann", RateSession())
    assert "REPLY-" in md and state.items
    tab.on_start("hub:org/results", "", "ann", RateSession())
    tab.on_start("hub:org/results", "", "ann", RateSession(), Visitor())
    assert hub_reads == [("snapshot", "org/results", False), ("snapshot", "org/results", "hf_visitor")]


def test_on_the_owners_machine_any_source_is_typed_and_read_with_the_environments_credentials(tmp_path, hub_reads):
    write_two_runs(tmp_path / "runs")
    config = SpaceConfig(results=str(tmp_path / "nothing-here"), ratings_dir=str(tmp_path / "ratings"),
                         model="loadtest/echo", user_model="loadtest/user", judge_model="loadtest/judge")
    assert not config.public
    ui = SpaceUI(config, echo_loader())
    frame, _ = ui.on_leaderboard(str(tmp_path / "runs"))
    assert len(frame) == 2
    ui.on_leaderboard("hub:someone/else")
    RateTab(config).on_start("hub:someone/else", "", "ann", RateSession())
    assert hub_reads == [("load_dataset", "someone/else", "NOT GIVEN"), ("snapshot", "someone/else", "NOT GIVEN")]
