"""The Gradio Blocks of the Space: chat as a persona, scores per turn, side-by-side models, leaderboard.

Handlers here only translate between widgets and the session modules (chat, autoplay, persona_picker, views,
export); every decision lives there. The chat's state is one `ChatSession` per browser session (gr.State),
mutated in place, so scoring that runs after the reply (a chained event) never overwrites a newer message.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import tempfile
import time
import uuid
from pathlib import Path

import gradio as gr
import pandas as pd

from aloe_bench.core.backends import build_backend
from aloe_bench.core.extras import require_extra
from aloe_bench.core.io import atomic_write_json
from aloe_bench.core.specs import ModelSpec, looks_local

from .autoplay import autoplay
from .chat import induce, score_pending, stop, stream_turn
from .errors import SpaceError
from .export import export
from .leaderboard import COLUMNS, LeaderboardError, load_leaderboard
from .persona_picker import custom_persona, find_persona, persona_label, persona_markdown, persona_sets, random_persona
from .rate import add_rate_tab
from .redact import redact, scrub
from .roles import SpaceRoles
from .runs_tab import RunsTab
from .score_plot import ScorePlot
from .session import ChatSession, Lane, new_session
from .sources import check_visitor_source, hub_token, offered_sources
from .space_config import SpaceConfig
from .views import chat_messages, curve_rows, lane_summary
from .visitor_models import BoundedLoader

EXPORT_DIR = Path(tempfile.gettempdir()) / "aloe-space-exports"

INTRO = """# ALOE: does the assistant learn who you are?
Chat as a persona (a **profile**: who the user is, and a **personality**: how they talk) without ever stating it.
A judge scores every reply 1-5 for how well it fits that user; the plot shows the scores by turn with their
trend line, whose slope is the running **IR** (improvement rate). Default models are the embedded
SmolLM2-135M-Instruct, a smoke-test judge: labels say which judge made each number."""


PUBLIC_SPECS_NOTE = ("Specs: `embedded`, `ORG/NAME`. A model you choose here never uses this Space's secrets: a "
                     "Hub model loads with your own token when you sign in (else anonymously), and endpoint models "
                     "(`openai:NAME`) are only those the owner configured.")


def _check_oauth_extra() -> None:
    """Sign-in needs gradio's `oauth` extra; say so in one line rather than deep inside gradio's app creation."""
    require_extra("authlib", "itsdangerous",
                  who="sign-in (oauth is on: the card's hf_oauth: true, or ALOE_SPACE_OAUTH; `aloe hub build space "
                      "--oauth` adds the extra)")


def _message(exc: Exception) -> str:
    """What the status line says about a failure (a SpaceError is already worded for people); secrets redacted."""
    text = f"⚠️ {exc}" if isinstance(exc, SpaceError) else f"⚠️ unexpected error: {type(exc).__name__}: {exc}"
    return redact(text)


def _endpoint(fn, session_arg: int | None = None):
    """Wrap a handler for gradio: every output scrubbed of secrets and, with `session_arg`, the session appended.

    Sending the ChatSession back out as a State output is what lets gradio time it out: a State only gets its
    time-to-live clock when an event writes it, and handlers mutate the session in place. The handlers
    themselves keep their return shapes (the unit tests call them directly).
    """
    def finish(out, args):
        out = scrub(out)
        if session_arg is None:
            return out
        return (*(out if isinstance(out, tuple) else (out,)), args[session_arg])

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def stream(*args):
            for out in fn(*args):
                yield finish(out, args)
        return stream

    @functools.wraps(fn)
    def call(*args):
        return finish(fn(*args), args)
    return call


def launch_options(config: SpaceConfig) -> dict:
    """Keyword arguments for `demo.launch` that bound the Space's memory (launch resets the session capacity)."""
    return {"state_session_capacity": config.max_sessions}


def prune_exports(max_age_s: float, folder: Path = EXPORT_DIR) -> int:
    """Delete exported files older than `max_age_s` (the export folder would otherwise only grow)."""
    removed, cutoff = 0, time.time() - max_age_s
    for path in folder.glob("aloe-conversation-*.json"):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except OSError:  # another worker removed it first
            pass
    return removed


def _plot_value(lane: Lane):
    rows = curve_rows(lane)
    return pd.DataFrame(rows) if rows else None


class SpaceUI:
    """Builds the Blocks for one `SpaceConfig`; `loader` turns a model spec into a backend (tests pass fakes)."""

    def __init__(self, config: SpaceConfig, loader=build_backend):
        self.config = config
        self.loader = BoundedLoader(loader, config)
        self.sets = persona_sets(config.personas)
        self.default_set = next(iter(self.sets))

    # -- helpers ----------------------------------------------------------------------------------
    def roles(self, config: SpaceConfig, oauth_token: gr.OAuthToken | None = None) -> SpaceRoles:
        """The session's roles; models the visitor chose load with their own token (`oauth_token`), if any."""
        loader = self.loader
        if isinstance(loader, BoundedLoader):
            loader = loader.for_visitor(getattr(oauth_token, "token", None) or None)
        return SpaceRoles(config, loader)

    def _lanes(self, session: ChatSession):
        lanes = list(session.lanes) + [None] * (2 - len(session.lanes))
        return lanes[0], lanes[1]

    def view(self, session: ChatSession) -> tuple:
        """chat_a, chat_b, plot_a, plot_b, summary_a, summary_b: everything derived from the session."""
        a, b = self._lanes(session)
        return (
            chat_messages(a), chat_messages(b) if b else [],
            _plot_value(a), _plot_value(b) if b else None,
            lane_summary(a), lane_summary(b) if b else "",
        )

    def chats(self, session: ChatSession) -> tuple:
        a, b = self._lanes(session)
        return chat_messages(a), chat_messages(b) if b else []

    def revealed_md(self, session: ChatSession) -> str:
        if session.revealed is None:
            return "*Nothing read yet: the induction model reads the conversation after each turn.*"
        return f"After turn {session.revealed_turns}:\n\n{session.revealed}"

    # -- persona ----------------------------------------------------------------------------------
    def persona_choices(self, set_name: str) -> list[str]:
        return [persona_label(p) for p in self.sets[set_name]]

    def on_set(self, set_name):
        return gr.update(choices=self.persona_choices(set_name), value=None)

    def _start(self, session, persona):
        session.reset(persona)
        return (persona_markdown(persona), self.revealed_md(session), *self.view(session),
                f"Persona **{persona.id}** chosen; the conversation starts fresh.")

    def on_pick(self, set_name, label, session):
        if not label:
            return (gr.skip(),) * 9
        try:
            persona = find_persona(self.sets[set_name], label)
        except (SpaceError, KeyError) as exc:
            return (*(gr.skip(),) * 8, f"⚠️ {exc}")
        return self._start(session, persona)

    def on_random(self, set_name, session):
        persona = random_persona(self.sets[set_name])
        return (persona_label(persona), *self._start(session, persona))

    def on_custom(self, profile, personality, session, config):
        try:
            persona = custom_persona(profile, personality, config.max_input_chars)
        except SpaceError as exc:
            return (*(gr.skip(),) * 8, f"⚠️ {exc}")
        return self._start(session, persona)

    # -- chat -------------------------------------------------------------------------------------
    def on_send(self, text, session, config, oauth_token: gr.OAuthToken | None = None):
        """Streams the reply; yields (textbox, chat_a, chat_b, status). Scoring follows as its own event.

        `oauth_token` is the signed-in visitor's (gradio fills it in; None when not signed in or no hf_oauth):
        a Hub model the visitor chose loads with it, never with the owner's HF_TOKEN."""
        roles = self.roles(config, oauth_token)
        try:
            yield ("", *self.chats(session), "Replying…")
            for _ in stream_turn(session, roles, text):
                yield (gr.skip(), *self.chats(session), gr.skip())
        except Exception as exc:  # every failure, expected or not, becomes a message in the page
            yield (text, *self.chats(session), _message(exc))
            return
        yield (gr.skip(), *self.chats(session), "Reply done; the judge is scoring it.")

    def on_score(self, session, config, oauth_token: gr.OAuthToken | None = None):
        """Judges every unscored reply; returns the refreshed chats, plots and summaries, and a status."""
        try:
            n = score_pending(session, self.roles(config, oauth_token))
        except Exception as exc:  # every failure, expected or not, becomes a message in the page
            return (*self.view(session), _message(exc))
        status = f"Scored {n} repl{'y' if n == 1 else 'ies'}." if n else gr.skip()
        return (*self.view(session), status)

    def on_induce(self, session, config, oauth_token: gr.OAuthToken | None = None):
        try:
            induce(session, self.roles(config, oauth_token))
        except Exception as exc:  # every failure, expected or not, becomes a message in the page
            return _message(exc)
        return self.revealed_md(session)

    def on_autoplay(self, n_turns, session, config, oauth_token: gr.OAuthToken | None = None):
        roles = self.roles(config, oauth_token)
        started = session.n_turns
        try:
            yield (*self.view(session), f"Auto-play: the simulated user plays the persona for {int(n_turns)} turns…")
            for _ in autoplay(session, roles, n_turns):
                yield (*self.view(session), f"Auto-play: turn {session.n_turns - started} of {int(n_turns)}")
        except Exception as exc:  # every failure, expected or not, becomes a message in the page
            yield (*self.view(session), _message(exc))
            return
        yield (*self.view(session), session.notice or f"Auto-play finished {session.n_turns - started} turns.")

    def on_stop(self, session):
        dropped = stop(session)
        return (*self.view(session), "Stopped." + (" The unfinished turn was dropped." if dropped else ""))

    def on_reset(self, session):
        session.reset()
        return (self.revealed_md(session), *self.view(session), "Conversation reset (same persona).")

    def on_export(self, session, config):
        data = export(session, self.roles(config))
        EXPORT_DIR.mkdir(parents=True, exist_ok=True)
        prune_exports(self.config.session_ttl_s)
        # a random name: ids and timestamps repeat across sessions, and names must not be guessable
        path = EXPORT_DIR / f"aloe-conversation-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex}.json"
        atomic_write_json(path, data)
        return str(path), data

    def on_settings(self, model, compare, user, judge, session, config):
        """Apply new model specs to this session only (checked by parsing; loaded on first use)."""
        if not config.allow_model_change:
            return (*(gr.skip(),) * 7, "⚠️ this Space runs fixed models (allow_model_change is off)")
        specs = {"model": model, "compare_model": compare or None, "user_model": user, "judge_model": judge}
        configured = self.loader.configured if isinstance(self.loader, BoundedLoader) else set()
        try:
            for name, spec in specs.items():
                if spec:
                    text = spec.strip()
                    if config.public and text not in configured and looks_local(text):
                        raise ValueError(f"{name}: visitors of a public Space can only choose Hub models (ORG/NAME), "
                                         "not folders on the Space's disk")
                    parsed = ModelSpec.parse(text)
                    if config.public and parsed.is_remote and spec.strip() not in configured:
                        raise ValueError(f"{name}: {spec.strip()!r}: endpoint models run on the owner's key, so "
                                         "visitors of a public Space can only choose Hub models")
                elif name != "compare_model":
                    raise ValueError(f"{name}: a model spec is required")
        except (ValueError, FileNotFoundError) as exc:
            return (*(gr.skip(),) * 7, redact(f"⚠️ {exc}"))
        config = dataclasses.replace(config, **{k: (v.strip() if v else v) for k, v in specs.items()})
        session.reset(models=new_session(config).models)
        on = config.compare_model is not None
        chat_a, chat_b, plot_a, plot_b, summary_a, summary_b = self.view(session)
        return (config, gr.update(value=chat_a, label=f"Assistant: {config.model}"),
                gr.update(value=chat_b, visible=on, label=f"Compare: {config.compare_model}"),
                gr.update(value=plot_a, label=f"Judge score by turn: {config.model}"),
                gr.update(value=plot_b, visible=on, label=f"Judge score by turn: {config.compare_model}"),
                summary_a, summary_b,
                f"Settings applied: assistant {config.model}" + (f" vs {config.compare_model}" if on else "")
                + f", judge {config.judge_model}.")

    # -- leaderboard ------------------------------------------------------------------------------
    def on_leaderboard(self, source, oauth_token: gr.OAuthToken | None = None):
        try:
            source = check_visitor_source(self.config, source, offered_sources(self.config), LeaderboardError,
                                          "results")
            board = load_leaderboard(source, hub_token(self.config, oauth_token))
        except LeaderboardError as exc:
            return pd.DataFrame(columns=COLUMNS), redact(f"⚠️ {exc}")
        note = f"{len(board.rows)} result(s) from {board.source}."
        if board.problems:
            note += "\n\nSkipped:\n" + "\n".join(f"- {p}" for p in board.problems)
        return pd.DataFrame(board.table(), columns=COLUMNS), redact(note)

    # -- layout -----------------------------------------------------------------------------------
    def build(self) -> gr.Blocks:
        cfg = self.config
        first = self.sets[self.default_set].personas[0]
        template = new_session(cfg)
        template.persona = first
        compare_on = cfg.compare_model is not None
        can_change = cfg.allow_model_change
        if cfg.oauth:
            _check_oauth_extra()

        # gradio's cached copies of exported files are deleted like the sessions they came from
        ttl = int(cfg.session_ttl_s)
        with gr.Blocks(title="ALOE Space", delete_cache=(max(60, min(3600, ttl)), ttl)) as demo:
            # deep-copied per browser session (see ChatSession.__deepcopy__); dropped after `ttl` s without an event
            session = gr.State(template, time_to_live=cfg.session_ttl_s, delete_callback=ChatSession.close)
            config = gr.State(cfg)
            gr.Markdown(INTRO)
            with gr.Tabs() as tabs:
                with gr.Tab("Chat"):
                    with gr.Row():
                        with gr.Column(scale=1, min_width=280):
                            set_dd = gr.Dropdown(list(self.sets), value=self.default_set, label="Persona set",
                                                 elem_id="persona-set")
                            persona_dd = gr.Dropdown(self.persona_choices(self.default_set), value=persona_label(first),
                                                     label="Persona", elem_id="persona-pick")
                            random_btn = gr.Button("Random persona", elem_id="persona-random")
                            with gr.Accordion("Write your own persona", open=False):
                                profile_tb = gr.Textbox(label="Profile (who the user is)", lines=3,
                                                        max_length=cfg.max_input_chars, elem_id="custom-profile")
                                personality_tb = gr.Textbox(label="Personality (how they talk)", lines=2,
                                                            max_length=cfg.max_input_chars, elem_id="custom-personality")
                                custom_btn = gr.Button("Use this persona", elem_id="custom-use")
                            persona_md = gr.Markdown(persona_markdown(first), elem_id="persona")
                            gr.Markdown("### What the user has revealed so far")
                            revealed = gr.Markdown(self.revealed_md(template), elem_id="revealed")
                            with gr.Accordion("Models", open=False):
                                model_tb = gr.Textbox(cfg.model, label="Assistant", elem_id="set-model",
                                                      interactive=can_change)
                                compare_tb = gr.Textbox(cfg.compare_model or "", label="Compare with (empty: off)",
                                                        elem_id="set-compare", interactive=can_change)
                                user_tb = gr.Textbox(cfg.user_model, label="User simulator", elem_id="set-user",
                                                     interactive=can_change)
                                judge_tb = gr.Textbox(cfg.judge_model, label="Judge", elem_id="set-judge",
                                                      interactive=can_change)
                                gr.Markdown(PUBLIC_SPECS_NOTE if cfg.public else
                                            "Specs: `embedded`, `ORG/NAME`, `./folder`, `openai:NAME` (endpoint and key "
                                            "from `OPENAI_BASE_URL` / `OPENAI_API_KEY`, i.e. Space secrets).")
                                if cfg.oauth:
                                    gr.LoginButton(elem_id="login")
                                apply_btn = gr.Button("Apply (resets the conversation)", elem_id="set-apply")
                        with gr.Column(scale=3):
                            with gr.Row():
                                chat_a = gr.Chatbot(label=f"Assistant: {cfg.model}", elem_id="chat-a", height=420,
                                                    feedback_options=None)
                                chat_b = gr.Chatbot(label=f"Compare: {cfg.compare_model}", elem_id="chat-b", height=420,
                                                    visible=compare_on, feedback_options=None)
                            with gr.Row():
                                msg = gr.Textbox(placeholder="Write as the persona and press Enter",
                                                 max_length=cfg.max_input_chars, show_label=False, scale=5,
                                                 elem_id="msg")
                                send_btn = gr.Button("Send", variant="primary", scale=1, elem_id="send")
                            with gr.Row():
                                turns = gr.Slider(1, cfg.max_autoplay_turns, value=min(3, cfg.max_autoplay_turns), step=1,
                                                  label="Auto-play turns", elem_id="autoplay-turns")
                                auto_btn = gr.Button("Auto-play", elem_id="autoplay")
                                stop_btn = gr.Button("Stop", variant="stop", elem_id="stop")
                                reset_btn = gr.Button("Reset", elem_id="reset")
                                export_btn = gr.Button("Export JSON", elem_id="export")
                            status = gr.Markdown("", elem_id="status")
                            with gr.Row():
                                plot_a = ScorePlot(None, label=f"Judge score by turn: {cfg.model}", elem_id="plot-a")
                                plot_b = ScorePlot(None, label=f"Judge score by turn: {cfg.compare_model}",
                                                   visible=compare_on, elem_id="plot-b")
                            summary_a = gr.Markdown(lane_summary(template.lanes[0]), elem_id="summary-a")
                            summary_b = gr.Markdown(lane_summary(template.lanes[1]) if compare_on else "",
                                                    elem_id="summary-b")
                            with gr.Accordion("Export", open=False):
                                export_file = gr.File(label="Conversation with scores", elem_id="export-file")
                                export_json = gr.JSON(label="Exported JSON", elem_id="export-json")
                with gr.Tab("Leaderboard"):
                    with gr.Row():
                        offered = offered_sources(cfg)  # a public Space's visitor picks among these (sources.py)
                        source_tb = gr.Dropdown(offered, value=cfg.results, allow_custom_value=not cfg.public,
                                                label="Results: a folder of results_*.json or hub:ORG/NAME",
                                                scale=4, elem_id="lb-source")
                        load_btn = gr.Button("Load", scale=1, elem_id="lb-load")
                    board = gr.Dataframe(pd.DataFrame(columns=COLUMNS), interactive=False, elem_id="leaderboard")
                    board_note = gr.Markdown("", elem_id="lb-note")
                add_rate_tab(demo, cfg)  # the Rate tab (space/rate.py): people rate replies, blind, to check a judge
                runs = RunsTab(cfg).build()  # the Runs tab (space/runs_tab.py): finished runs read back

            view_out = [chat_a, chat_b, plot_a, plot_b, summary_a, summary_b]
            persona_out = [persona_md, revealed, *view_out, status]
            background = dict(concurrency_id="background", concurrency_limit=1, show_progress="hidden")

            # every handler's outputs are scrubbed of secrets; those that touch the session also write it back
            # (the State's time-to-live restarts with each write, see _endpoint)
            E = _endpoint
            set_dd.change(E(self.on_set), set_dd, persona_dd, api_name=False)
            persona_dd.input(E(self.on_pick, 2), [set_dd, persona_dd, session], [*persona_out, session],
                             api_name="pick_persona")
            random_btn.click(E(self.on_random, 1), [set_dd, session], [persona_dd, *persona_out, session],
                             api_name="random_persona")
            custom_btn.click(E(self.on_custom, 2), [profile_tb, personality_tb, session, config],
                             [*persona_out, session], api_name="custom_persona")

            chat_events = []
            for trigger in (msg.submit, send_btn.click):
                event = trigger(E(self.on_send, 1), [msg, session, config], [msg, chat_a, chat_b, status, session],
                                api_name="chat" if trigger == msg.submit else False,
                                concurrency_id="chat", concurrency_limit=cfg.concurrency_limit, show_progress="minimal")
                # scoring and induction are chained events: the textbox is free again as soon as the reply is done
                first = trigger == msg.submit
                event.then(E(self.on_score, 0), [session, config], [*view_out, status, session],
                           api_name="score" if first else False, **background) \
                     .then(E(self.on_induce, 0), [session, config], [revealed, session],
                           api_name="induce" if first else False, **background)
                chat_events.append(event)
            auto = auto_btn.click(E(self.on_autoplay, 1), [turns, session, config], [*view_out, status, session],
                                  api_name="autoplay", concurrency_id="chat", concurrency_limit=cfg.concurrency_limit,
                                  show_progress="minimal")
            auto.then(E(self.on_induce, 0), [session, config], [revealed, session], api_name=False, **background)
            stop_btn.click(E(self.on_stop, 0), session, [*view_out, status, session], cancels=[auto, *chat_events],
                           api_name=False)
            reset_btn.click(E(self.on_reset, 0), session, [revealed, *view_out, status, session], api_name="reset")
            export_btn.click(E(self.on_export), [session, config], [export_file, export_json], api_name="export")
            apply_btn.click(E(self.on_settings, 4), [model_tb, compare_tb, user_tb, judge_tb, session, config],
                            [config, *view_out, status, session], api_name=False)
            load_btn.click(E(self.on_leaderboard), source_tb, [board, board_note], api_name="leaderboard")
            runs.wire(demo)
            # a leaderboard row links to its run: selecting it opens the run in the Runs tab
            board.select(E(self._open_run(runs)), [source_tb, board, runs.state],
                         [tabs, runs.source, runs.run_a, runs.run_b, runs.persona, *runs.views, runs.status,
                          runs.state], api_name=False, concurrency_id="runs", show_progress="minimal")
            demo.load(E(self._fill_leaderboard), None, [board, board_note], api_name=False)
        demo.queue(default_concurrency_limit=cfg.concurrency_limit, max_size=cfg.max_queue)
        return demo

    @staticmethod
    def _open_run(runs: RunsTab):
        def open_run(source, table, state, evt: gr.SelectData, oauth_token: gr.OAuthToken | None = None):
            """The run of the selected leaderboard row, opened in the Runs tab."""
            row = evt.row_value if evt.row_value is not None else table.iloc[evt.index[0]].tolist()
            return runs.on_open(source, str(dict(zip(COLUMNS, row)).get("run") or ""), state, oauth_token)
        return open_run

    def _fill_leaderboard(self):
        if Path(self.config.results).expanduser().is_dir() or self.config.results.startswith("hub:"):
            return self.on_leaderboard(self.config.results)
        return pd.DataFrame(columns=COLUMNS), f"No results folder at `{self.config.results}` yet."


def build_demo(config: SpaceConfig | None = None, loader=build_backend) -> gr.Blocks:
    """The Space's Blocks app for `config` (defaults: everything on the embedded model)."""
    return SpaceUI(config or SpaceConfig(), loader).build()
