"""The Rate tab: people score replies 1-5, blind to the model and the judge, to check a judge against them.

A rater loads a run (a samples file, a run folder, or a results dataset) and rates one row at a time; each
rating is appended at once to that rater's own file, which `aloe judge agree` reads (see docs/judges.md).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr

from aloe_bench.core.io import DataFileError, PersonaFileError, read_json
from aloe_bench.core.judge import clip_text
from aloe_bench.core.errors import AloeError
from aloe_bench.core.personas import load_persona_set
from aloe_bench.core.ratings import RatingsError, append_rating, check_rater, rating_record
from aloe_bench.core.run_files import (SAMPLES_PREFIX, find_samples_files, read_samples, results_path_for,
                                      run_id_of)

from .leaderboard import is_results_dataset
from .redact import redact, scrub
from .runs import RunsError, list_runs, load_rows
from .sources import check_visitor_source, hub_token, offered_sources

# Keyboard shortcuts, installed once per page: a key clicks the matching button while the Rate tab is shown.
KEYBOARD_JS = """
() => {
  if (window.__aloeRateKeys) return;
  window.__aloeRateKeys = true;
  const keys = {"1": "rate-1", "2": "rate-2", "3": "rate-3", "4": "rate-4", "5": "rate-5",
                "s": "rate-skip", "b": "rate-back", "Backspace": "rate-back"};
  document.addEventListener("keydown", (event) => {
    const target = event.target;
    if (target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA" || target.isContentEditable)) return;
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const id = keys[event.key];
    const found = id && document.getElementById(id);
    const button = found && (found.tagName === "BUTTON" ? found : found.querySelector("button"));
    if (!button || button.offsetParent === null) return;  // the Rate tab is not visible
    event.preventDefault();
    button.click();
  });
}
"""


class RateError(AloeError, ValueError):
    """The source cannot be rated (missing file, unknown personas); worded for the page."""


@dataclass(frozen=True)
class Item:
    """One row to rate: a reply of a run, with the persona and the conversation up to it."""

    run_id: str
    persona_id: str
    turn: int
    profile: str
    personality: str
    history: tuple  # (user, assistant) pairs before this turn
    message: str
    reply: str


@dataclass
class RateSession:
    """One browser session's rating state: who rates, what, in which order, and where they are."""

    rater: str | None = None
    items: list[Item] = field(default_factory=list)
    order: list[int] = field(default_factory=list)
    position: int = 0
    path: Path | None = None
    written: int = 0


def _for_page(path: Path, read):
    """`read(path)`, its file errors worded for the page: the file is named, the server's folders are not."""
    try:
        return read(path)
    except DataFileError as exc:
        raise RateError(str(exc).replace(str(path), path.name)) from None


def _read_run(samples: Path) -> tuple[str, list[dict], dict | None]:
    """(run id, sample rows, results or None) of a run's samples log; a torn last row (a run still writing) is left
    out."""
    results_path = results_path_for(samples)
    results = _for_page(results_path, read_json) if results_path.is_file() else None
    return run_id_of(samples), _for_page(samples, read_samples), results


def _runs_in_folder(folder: Path, max_rows: int) -> list[tuple[str, list[dict], dict | None]]:
    """(run id, sample rows, results) for every run under `folder`: run files, or a results dataset folder (read by
    the Runs tab's reader)."""
    runs = [_read_run(samples) for samples in find_samples_files(folder)]
    if runs or not is_results_dataset(folder):
        return runs
    try:
        return [(e.run_id, load_rows(e, max_rows), e.results) for e in list_runs(str(folder))]
    except RunsError as exc:
        raise RateError(str(exc).replace(str(folder), folder.name)) from None


def _resolve(source: str, token=None) -> Path:
    source = (source or "").strip()
    if not source:
        raise RateError("give a samples file, a run folder, or a results dataset (folder or hub:ORG/NAME)")
    if source.startswith("hub:"):
        from huggingface_hub import snapshot_download

        try:
            return Path(snapshot_download(source[4:], repo_type="dataset", allow_patterns=["results/*", "samples/*"],
                                          **({} if token is None else {"token": token})))
        except Exception as exc:
            raise RateError(f"Hub dataset {source[4:]!r} could not be read: {type(exc).__name__}: {exc}") from None
    return Path(source).expanduser()


def load_items(source: str, run_id: str | None = None, max_rows: int = 5000, token=None) -> list[Item]:
    """The rateable rows of one run in `source`: every row with a message and a reply, with its history. `token`
    reads a `hub:` source (None: the environment's credentials, False: anonymously)."""
    path = _resolve(source, token)
    if path.is_file():
        if not path.name.startswith(SAMPLES_PREFIX):
            raise RateError(f"{path.name}: expected a samples_<run id>.jsonl file")
        runs = [_read_run(path)]
    elif path.is_dir():
        runs = _runs_in_folder(path, max_rows)
    else:
        raise RateError(f"{source}: no such file or folder")
    if run_id:
        runs = [r for r in runs if r[0] == run_id.strip()]
    if not runs:
        raise RateError(f"{source}: no run found" + (f" with id {run_id}" if run_id else ""))
    if len(runs) > 1:
        raise RateError(f"{source} holds {len(runs)} runs ({', '.join(r[0] for r in runs)}): give a run id")
    rid, rows, results = runs[0]
    if results is None:
        raise RateError(f"{source}: run {rid} has no results file, so its personas are unknown")
    run_cfg = results.get("config", {}).get("run", {})
    try:
        personas = {p.id: p for p in load_persona_set(run_cfg.get("personas", "default"),
                                                      run_cfg.get("max_personalities", 5))}
    except (PersonaFileError, OSError) as exc:
        raise RateError(f"run {rid}: its persona set {run_cfg.get('personas')!r} cannot be read: {exc}") from None
    rows = sorted(rows, key=lambda r: (r["persona_id"], int(r["turn"])))
    items, history = [], {}
    for row in rows:
        so_far = history.setdefault(row["persona_id"], [])
        if row.get("user_message") is None or row.get("reply") is None or row.get("error"):
            continue
        persona = personas.get(row["persona_id"])
        if persona is None:
            raise RateError(f"run {rid}: persona {row['persona_id']!r} is not in its persona set")
        items.append(Item(rid, row["persona_id"], int(row["turn"]), persona.profile, persona.personality,
                          tuple(so_far), row["user_message"], row["reply"]))
        so_far.append((row["user_message"], row["reply"]))
        if len(items) >= max_rows:
            break
    if not items:
        raise RateError(f"run {rid}: no row with a message and a reply to rate")
    return items


def shuffled(n: int, rater: str, run_id: str) -> list[int]:
    """A random order of n rows, the same every time for the same rater and run."""
    order = list(range(n))
    random.Random(f"{rater}\x00{run_id}").shuffle(order)
    return order


CLIP = 1500  # characters of each shown text


def item_markdown(item: Item) -> str:
    """Persona, conversation so far and the reply: no model name, no judge score."""
    lines = [f"**Profile:** {clip_text(item.profile, CLIP)}", "", f"**Personality:** {clip_text(item.personality, CLIP)}",
             "", f"### Conversation (turn {item.turn})"]
    for user, assistant in item.history:
        lines += [f"**User:** {clip_text(user, CLIP)}", "", f"**Assistant:** {clip_text(assistant, CLIP)}", ""]
    lines += [f"**User:** {clip_text(item.message, CLIP)}", "", "### Reply to rate", "", clip_text(item.reply, CLIP)]
    return "\n".join(lines)


class RateTab:
    """The Rate tab of one Space: its widgets, and handlers that load a run, show rows in the rater's order,
    and append each rating (or skip) to `<ratings_dir>/ratings-<rater>.jsonl`."""

    def __init__(self, config):
        self.config = config
        self.ratings_dir = Path(config.ratings_dir).expanduser()
        self.sources = offered_sources(config, config.rate_source)  # what a public Space's visitor may open

    def _show(self, state: RateSession, note: str = ""):
        if state.position >= len(state.order):
            return ("**All rows done.** Thank you!", f"{state.written} saved to `{state.path.name}` (every row rated or skipped). {note}")
        item = state.items[state.order[state.position]]
        progress = f"Row {state.position + 1} of {len(state.order)} · {state.written} saved to `{state.path.name}`"
        return item_markdown(item), (f"{note} · " if note else "") + progress

    def on_start(self, source, run_id, rater, state: RateSession, oauth_token: gr.OAuthToken | None = None):
        try:
            rater = check_rater(rater)
            source = check_visitor_source(self.config, source, self.sources, RateError, "runs")
            items = load_items(source, run_id, self.config.max_rate_rows, hub_token(self.config, oauth_token))
        except (RateError, RatingsError) as exc:
            return scrub(("", redact(f"⚠️ {exc}"), state))
        state.rater, state.items, state.position, state.written = rater, items, 0, 0
        state.order = shuffled(len(items), rater, items[0].run_id)
        state.path = self.ratings_dir / f"ratings-{rater}.jsonl"
        return scrub((*self._show(state, f"Loaded run {items[0].run_id}"), state))

    def on_rate(self, score, state: RateSession):
        if not state.items:
            return ("", "⚠️ load a run first", state)
        if state.position >= len(state.order):
            return (*self._show(state), state)
        item = state.items[state.order[state.position]]
        append_rating(state.path, rating_record(state.rater, item.run_id, item.persona_id, item.turn, score))
        state.written += 1
        state.position += 1
        return scrub((*self._show(state, "skipped" if score is None else f"rated {score}"), state))

    def on_back(self, state: RateSession):
        if not state.items:
            return ("", "⚠️ load a run first", state)
        state.position = max(0, state.position - 1)
        return scrub((*self._show(state, "back one row: a new rating replaces the earlier one"), state))

    def build(self, demo) -> None:
        """The tab's widgets and events; call inside the app's `gr.Blocks`."""
        cfg = self.config
        state = gr.State(RateSession(), time_to_live=cfg.session_ttl_s)
        with gr.Tab("Rate"):
            gr.Markdown("Rate replies 1-5 for how well they fit this user (style, relevance, human-like), without "
                        "seeing which model wrote them or what the judge said. Keys: **1-5** rate, **s** skip, "
                        "**b** / Backspace back.")
            with gr.Row():
                # on a public Space the visitor picks among the offered sources; typed ones are refused (sources.py)
                source = gr.Dropdown(self.sources, value=self.sources[0], allow_custom_value=not cfg.public,
                                     label="Run: samples file, run folder, or results dataset (folder or hub:ORG/NAME)",
                                     scale=4, elem_id="rate-source")
                run_id = gr.Textbox("", label="Run id (if several)", scale=1, elem_id="rate-run-id")
                rater = gr.Textbox("", label="Your rater id", max_length=64, scale=1, elem_id="rate-rater")
                start = gr.Button("Start", scale=1, elem_id="rate-start")
            shown = gr.Markdown("", elem_id="rate-item")
            with gr.Row():
                buttons = [gr.Button(str(n), elem_id=f"rate-{n}") for n in range(1, 6)]
                skip = gr.Button("Skip (s)", elem_id="rate-skip")
                back = gr.Button("Back (b)", elem_id="rate-back")
            status = gr.Markdown("", elem_id="rate-status")
        out = [shown, status, state]
        limits = dict(concurrency_id="rate", concurrency_limit=cfg.concurrency_limit, show_progress="hidden")
        start.click(self.on_start, [source, run_id, rater, state], out, api_name="rate_start", **limits)
        for n, button in enumerate(buttons, 1):
            button.click(lambda s, n=n: self.on_rate(n, s), state, out, api_name=f"rate_{n}", **limits)
        skip.click(lambda s: self.on_rate(None, s), state, out, api_name="rate_skip", **limits)
        back.click(self.on_back, state, out, api_name="rate_back", **limits)
        demo.load(None, None, None, js=KEYBOARD_JS)


def add_rate_tab(demo, config) -> None:
    RateTab(config).build(demo)
