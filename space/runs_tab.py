"""The Runs tab: read finished runs back, one persona at a time, and put two runs side by side on that persona.

Handlers only translate between widgets and `runs` (which reads and formats). On a public Space (`config.public`)
a visitor picks among the sources the owner configured (`runs`, else the leaderboard's `results`); a typed path
is refused, and a `hub:` source is read with the visitor's own token or anonymously.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import gradio as gr
import pandas as pd

from .redact import redact, scrub
from .runs import (RunEntry, RunsError, conversation, list_runs, load_rows, persona_curve,
                   personas_of, summary_markdown, transcript_markdown)
from .sources import check_visitor_source, hub_token, parse_sources
from .score_plot import ScorePlot
from .views import score_curve

MAX_RUNS = 200  # runs listed from one source at most
NONE = ""  # the "compare with" choice that turns comparison off


@dataclass
class RunsSession:
    """One browser session's runs: the source read last and its runs by label."""

    source: str = ""
    entries: dict[str, RunEntry] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # results files of the source that could not be read


def configured_sources(config) -> list[str]:
    return parse_sources(config.runs) or [config.results]


def _plot(rows: list[dict]):
    scores, criteria = persona_curve(rows)
    curve = score_curve(scores, criteria)
    return pd.DataFrame(curve) if curve else None


class RunsTab:
    """The Runs tab of one Space: a source, a run, an optional run to compare, a persona; both conversations."""

    def __init__(self, config):
        self.config = config
        self.sources = configured_sources(config)
        self.tab_id = None  # the tab's id in its gr.Tabs, known once built

    def load(self, source: str, state: RunsSession, oauth_token=None) -> list[str]:
        """Read the runs of `source` into `state`; their labels. RunsError when the source is refused or unreadable."""
        source = check_visitor_source(self.config, source, self.sources, RunsError, "runs")
        problems: list[str] = []
        entries = list_runs(source, hub_token(self.config, oauth_token), problems)[:MAX_RUNS]
        state.source, state.entries, state.problems = source, {}, problems
        for entry in entries:
            label = entry.label
            while label in state.entries:
                label += " ·"
            state.entries[label] = entry
        return list(state.entries)

    def _rows(self, label, state, oauth_token) -> tuple[RunEntry, list[dict]] | None:
        entry = state.entries.get(label or NONE)
        if entry is None:
            return None
        return entry, load_rows(entry, self.config.max_run_rows, hub_token(self.config, oauth_token))

    def show(self, run_a, run_b, persona, state: RunsSession, oauth_token=None) -> tuple:
        """(summary, plot, transcript) for run A and for run B on the same persona, and a status line."""
        out, note = [], []
        for which, label in (("A", run_a), ("B", run_b)):
            found = self._rows(label, state, oauth_token)
            if found is None:
                out += ["", None, ""]
                continue
            entry, rows = found
            turns = conversation(rows, persona) if persona else []
            if persona and not turns:
                note.append(f"run {which} ({entry.run_id}) has no persona `{persona}`")
            out += [summary_markdown(entry, persona, turns), _plot(turns), transcript_markdown(turns) if persona else ""]
        return (*out, redact("; ".join(note)))

    # -- handlers ---------------------------------------------------------------------------------
    def on_load(self, source, state: RunsSession, oauth_token: gr.OAuthToken | None = None):
        """-> run A, run B (choices), persona (cleared), status, state."""
        try:
            labels = self.load(source, state, oauth_token)
        except RunsError as exc:
            return scrub((gr.skip(), gr.skip(), gr.skip(), redact(f"⚠️ {exc}"), state))
        return scrub((gr.update(choices=labels, value=labels[0]), gr.update(choices=[NONE, *labels], value=NONE),
                      gr.update(choices=[], value=None), redact(f"{len(labels)} run(s) in {source}." + (
                          f" Skipped {len(state.problems)} unreadable: {state.problems[0]}" if state.problems else "")),
                      state))

    def on_run(self, run_a, state: RunsSession, oauth_token: gr.OAuthToken | None = None):
        """Run A chosen -> its personas (the first one picked), status."""
        try:
            found = self._rows(run_a, state, oauth_token)
        except RunsError as exc:
            return gr.skip(), redact(f"⚠️ {exc}")
        if found is None:
            return gr.update(choices=[], value=None), ""
        personas = personas_of(found[1])
        return gr.update(choices=personas, value=personas[0] if personas else None), \
            f"run {found[0].run_id}: {len(personas)} persona(s), {len(found[1])} row(s)"

    def on_show(self, run_a, run_b, persona, state: RunsSession, oauth_token: gr.OAuthToken | None = None):
        try:
            return scrub(self.show(run_a, run_b, persona, state, oauth_token))
        except RunsError as exc:
            return (*(gr.skip(),) * 6, redact(f"⚠️ {exc}"))

    def on_open(self, source, run_id, state: RunsSession, oauth_token: gr.OAuthToken | None = None):
        """Open run `run_id` of `source` (a leaderboard row's link): the tab's widgets, filled, and the tab selected."""
        try:
            labels = self.load(source, state, oauth_token)
            label = next((lb for lb, e in state.entries.items() if e.run_id == run_id), None)
            if label is None:
                raise RunsError(f"{source}: no run {run_id!r}")
            personas = personas_of(self._rows(label, state, oauth_token)[1])
            persona = personas[0] if personas else None
            shown = self.show(label, NONE, persona, state, oauth_token)
        except RunsError as exc:
            return scrub((gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), *(gr.skip(),) * 6,
                          redact(f"⚠️ {exc}"), state))
        return scrub((gr.update(selected=self.tab_id), gr.update(value=source),
                      gr.update(choices=labels, value=label), gr.update(choices=[NONE, *labels], value=NONE),
                      gr.update(choices=personas, value=persona), *shown[:6],
                      shown[6] or f"Opened run {run_id} from the leaderboard.", state))

    # -- layout -----------------------------------------------------------------------------------
    def build(self):
        """The tab's widgets; call inside the app's `gr.Tabs`. Returns the widgets the leaderboard link fills."""
        cfg = self.config
        self.state = gr.State(RunsSession(), time_to_live=cfg.session_ttl_s)
        with gr.Tab("Runs") as self.tab:
            gr.Markdown("Read finished runs: pick a run and a persona to see the whole conversation with each "
                        "turn's scores, the judge's answers and failures; pick a second run to compare on the same "
                        "persona." + (" This Space offers the runs below." if cfg.public else
                                      " Source: a run folder, a results dataset folder, or hub:ORG/NAME."))
            with gr.Row():
                self.source = gr.Dropdown(self.sources, value=self.sources[0], label="Runs source",
                                          allow_custom_value=not cfg.public, scale=4, elem_id="runs-source")
                self.load_btn = gr.Button("Load runs", scale=1, elem_id="runs-load")
            with gr.Row():
                self.run_a = gr.Dropdown([], label="Run", elem_id="runs-run-a")
                self.run_b = gr.Dropdown([], label="Compare with (empty: off)", elem_id="runs-run-b")
                self.persona = gr.Dropdown([], label="Persona", elem_id="runs-persona")
            self.status = gr.Markdown("", elem_id="runs-status")
            columns = []
            with gr.Row():
                for side in ("a", "b"):
                    with gr.Column():
                        columns += [gr.Markdown("", elem_id=f"runs-summary-{side}"),
                                    ScorePlot(None, label="Score by turn", elem_id=f"runs-plot-{side}"),
                                    gr.Markdown("", elem_id=f"runs-turns-{side}")]
        self.views = columns
        self.tab_id = self.tab._id
        return self

    def wire(self, demo) -> None:
        limits = dict(concurrency_id="runs", concurrency_limit=self.config.concurrency_limit, show_progress="minimal")
        state, show_in = self.state, [self.run_a, self.run_b, self.persona, self.state]
        show_out = [*self.views, self.status]
        self.load_btn.click(self.on_load, [self.source, state], [self.run_a, self.run_b, self.persona, self.status,
                                                                  state], api_name="runs_load", **limits) \
            .then(self.on_run, [self.run_a, state], [self.persona, self.status], api_name=False, **limits) \
            .then(self.on_show, show_in, show_out, api_name=False, **limits)
        self.run_a.input(self.on_run, [self.run_a, state], [self.persona, self.status], api_name=False, **limits) \
            .then(self.on_show, show_in, show_out, api_name=False, **limits)
        for widget in (self.run_b, self.persona):
            widget.input(self.on_show, show_in, show_out, api_name=False, **limits)
