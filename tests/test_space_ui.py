"""The Space's Gradio handlers, its CLI and folder, and a load check: concurrent client sessions over loopback."""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from aloe_bench.space.space_config import SpaceConfig
from aloe_bench.space.ui import SpaceUI
from aloe_bench.testing.backends import ScriptedBackend

SPACE = Path(__file__).resolve().parents[1] / "space"
PROBS = {"1": 0.0, "2": 0.2, "3": 0.2, "4": 0.4, "5": 0.2}  # expected 3.6


class SlowStreamer(ScriptedBackend):
    """Echoes the last user message word by word, sleeping between words, so sessions overlap in time."""

    def __init__(self, delay=0.02, **kwargs):
        super().__init__(fn=lambda m, c: f"echo {m[-1]['content']}", **kwargs)
        self.delay = delay

    def stream(self, messages, config):
        text = ""
        for word in f"echo {messages[-1]['content']}".split():
            time.sleep(self.delay)
            text = f"{text} {word}".strip()
            yield text


def fakes():
    judge = ScriptedBackend(options=PROBS, fn=lambda m, c: "Profile: None\nPersonality: None", kind="embedded")
    backends = {"embedded": judge, "a/model": SlowStreamer(), "b/model": SlowStreamer(),
                "u/model": ScriptedBackend(fn=lambda m, c: "I keep bees")}
    return backends, lambda spec: backends[spec]


def config(**kw):
    return SpaceConfig(**{"model": "a/model", "user_model": "u/model", "judge_model": "embedded", **kw})


def ui_and_session(**kw):
    from aloe_bench.space.session import new_session

    _, loader = fakes()
    ui = SpaceUI(config(**kw), loader)
    session = new_session(ui.config)
    session.persona = ui.sets[ui.default_set].personas[0]
    return ui, session


def test_send_streams_then_scoring_fills_in_the_score():
    ui, session = ui_and_session()
    outputs = list(ui.on_send("hello bees", session, ui.config))
    assert outputs[0][0] == "" and outputs[0][3] == "Replying…"  # textbox cleared at once
    growing = [o[1][-1]["content"] for o in outputs[1:-1] if o[1] and o[1][-1]["role"] == "assistant"]
    assert growing[0].startswith("echo\n") and growing[-1].startswith("echo hello bees")  # streamed
    assert "judge: scoring..." in outputs[-1][1][-1]["content"]
    chat_a, chat_b, plot_a, plot_b, summary_a, summary_b, status = ui.on_score(session, ui.config)
    assert "judge 3.60 / 5" in chat_a[-1]["content"] and status == "Scored 1 reply."
    assert list(plot_a.columns) == ["turn", "value", "series"] and set(plot_a["series"]) == {"score", "trend"}
    assert plot_b is None and chat_b == []
    assert ui.on_induce(session, ui.config).endswith("Profile: None\nPersonality: None")


def test_bad_input_and_backend_errors_are_messages():
    ui, session = ui_and_session(max_input_chars=10)
    out = list(ui.on_send("x" * 11, session, ui.config))
    assert out[-1][0] == "x" * 11 and out[-1][3].startswith("⚠️ the message has 11 characters")  # text kept
    ui.loader = lambda spec: (_ for _ in ()).throw(OSError("connection refused"))
    out = list(ui.on_send("hi", session, ui.config))
    assert "could not load the assistant model 'a/model': connection refused" in out[-1][3]
    assert session.n_turns == 0
    assert ui.on_score(session, ui.config)[-1] is not None


def test_compare_autoplay_export_reset_and_settings():
    ui, session = ui_and_session(compare_model="b/model")
    final = list(ui.on_autoplay(2, session, ui.config))[-1]
    chat_a, chat_b, plot_a, plot_b, _, summary_b, status = final
    assert status == "Auto-play finished 2 turns."
    assert [m["content"] for m in chat_a if m["role"] == "user"] == ["I keep bees"] * 2
    assert [m["content"] for m in chat_b if m["role"] == "user"] == ["I keep bees"] * 2
    assert len(plot_b[plot_b.series == "score"]) == 2 and "running IR: +0.000" in summary_b
    path, data = ui.on_export(session, ui.config)
    assert Path(path).read_text().count('"score": 3.6') == 4 and data["lanes"][1]["model"] == "b/model"
    assert ui.on_reset(session)[-1] == "Conversation reset (same persona)." and session.n_turns == 0

    out = ui.on_settings("a/model", "", "u/model", "not a spec", session, ui.config)
    assert "not a spec" in out[-1] and out[-1].startswith("⚠️")
    new_config, *_, status = ui.on_settings("a/model", "", "u/model", "embedded", session, ui.config)
    assert new_config.compare_model is None and len(session.lanes) == 1 and ui.config.compare_model == "b/model"
    locked = config(allow_model_change=False)
    assert "fixed models" in ui.on_settings("x/y", "", "u/model", "embedded", session, locked)[-1]


def test_persona_handlers():
    ui, session = ui_and_session()
    label, md, revealed, *_ = ui.on_random(ui.default_set, session)
    assert session.persona.profile in md and label.startswith(session.persona.id)
    seed_set = list(ui.sets)[1]
    choice = ui.persona_choices(seed_set)[3]
    out = ui.on_pick(seed_set, choice, session)
    assert session.persona == ui.sets[seed_set].personas[3] and out[-1].startswith("Persona **")
    out = ui.on_custom("A sailor.", "", session, ui.config)
    assert "both a profile" in out[-1]
    ui.on_custom("A sailor.", "Blunt.", session, ui.config)
    assert session.persona.id == "custom"


def test_leaderboard_handler(tmp_path):
    ui, _ = ui_and_session()
    frame, note = ui.on_leaderboard(str(tmp_path / "missing"))
    assert frame.empty and note.startswith("⚠️ results folder")


def test_cli_flags_and_space_folder():
    from aloe_bench.commands.main import build_parser

    args = build_parser().parse_args(["space", "--host", "127.0.0.1", "--port", "7999", "--model", "embedded",
                                      "--compare-model", "./runs/dpo", "--user-model", "embedded",
                                      "--judge-model", "openai:gpt-4o-mini", "--share", "False"])
    assert (args.port, args.compare_model, args.judge_model, args.share) == (7999, "./runs/dpo",
                                                                             "openai:gpt-4o-mini", False)
    text = (SPACE / "README.md").read_text()
    front = yaml.safe_load(text.split("---")[1])
    assert front["sdk"] == "gradio" and front["sdk_version"] == "6.31.0" and front["app_file"] == "app.py"
    assert front["python_version"] == "3.11" and "models" in front and "datasets" in front
    requirements = (SPACE / "requirements.txt").read_text()
    assert "aloe hub build space" in requirements  # the deployable requirements are built (tests/test_deploy.py)
    source = (SPACE / "app.py").read_text()
    assert "import spaces" in source and "except ImportError" in source


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_load_check_every_client_session_gets_its_own_complete_conversation():
    """N concurrent gradio_client sessions over loopback, each with its own persona and messages."""
    from gradio_client import Client

    n_clients, turns = 6, 3
    _, loader = fakes()
    port = free_port()
    ui = SpaceUI(config(concurrency_limit=2, max_queue=64), loader)
    demo = ui.build()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    labels = ui.persona_choices(ui.default_set)
    seen = threading.Barrier(n_clients, timeout=60)

    def one_session(i: int) -> tuple[dict, float]:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        seen.wait()  # start together
        started = time.perf_counter()
        client.predict(ui.default_set, labels[i], api_name="/pick_persona")
        for t in range(turns):
            client.predict(f"client {i} turn {t}", api_name="/chat")
            client.predict(api_name="/score")
        _, data = client.predict(api_name="/export")
        client.close()
        return data, time.perf_counter() - started

    try:
        with ThreadPoolExecutor(n_clients) as pool:
            results = list(pool.map(one_session, range(n_clients)))
    finally:
        demo.close()
    personas = ui.sets[ui.default_set].personas
    for i, (data, _) in enumerate(results):
        assert data["persona"]["id"] == personas[i].id
        turns_done = data["lanes"][0]["turns"]
        assert [t["user"] for t in turns_done] == [f"client {i} turn {t}" for t in range(turns)]
        assert [t["reply"] for t in turns_done] == [f"echo client {i} turn {t}" for t in range(turns)]
        assert [t["score"] for t in turns_done] == [pytest.approx(3.6)] * turns
    slowest = max(seconds for _, seconds in results)
    print(f"load check: {n_clients} sessions x {turns} turns, slowest session {slowest:.1f}s")


def test_stop_cancels_autoplay_and_chat_and_drops_the_unfinished_turn():
    ui, session = ui_and_session()
    demo = ui.build()
    deps = demo.config["dependencies"]
    by_api = {d.get("api_name"): d for d in deps}
    stop = next(d for d in deps if d.get("cancels"))
    assert by_api["autoplay"]["id"] in stop["cancels"] and by_api["chat"]["id"] in stop["cancels"]
    limits = {(f.api_name, f.concurrency_id, f.concurrency_limit) for f in demo.fns.values()}
    assert {("chat", "chat", 2), ("autoplay", "chat", 2), ("score", "background", 1)} <= limits
    assert demo._queue.max_size == ui.config.max_queue

    from aloe_bench.space.autoplay import autoplay

    running = autoplay(session, ui.roles(ui.config), 2)
    next(running)  # the simulated user's message is in, the reply has started streaming
    next(running)
    running.close()  # what gradio does with a cancelled generator, sooner or later
    assert session.n_turns == 0

    running = autoplay(session, ui.roles(ui.config), 2)
    while session.n_turns < 2:
        next(running)  # turn 1 finished and scored, turn 2 started
    *_, status = ui.on_stop(session)
    assert status == "Stopped. The unfinished turn was dropped." and session.n_turns == 1
    assert session.lanes[0].turns[0].done and session.lanes[0].turns[0].score is not None
    running.close()  # closing late removes nothing more
    assert session.n_turns == 1


def test_app_module_builds_from_space_variables(monkeypatch):
    import importlib.util as iu

    spec = iu.spec_from_file_location("space_app", SPACE / "app.py")
    module = iu.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setenv("ALOE_SPACE_MODEL", "HuggingFaceTB/SmolLM2-135M-Instruct")
    monkeypatch.setenv("ALOE_SPACE_MAX_QUEUE", "7")
    monkeypatch.delenv("SPACE_ID", raising=False)
    config, demo = module.create_app()
    assert config.model == "HuggingFaceTB/SmolLM2-135M-Instruct" and config.host == "127.0.0.1"
    assert demo._queue.max_size == 7


def test_an_unexpected_backend_exception_is_a_message_too():
    from aloe_bench.space.autoplay import autoplay
    from aloe_bench.space.roles import SpaceRoles

    ui, session = ui_and_session()

    class Exploding(SlowStreamer):
        def stream(self, messages, config):
            yield "half a"
            raise ConnectionError("peer closed the stream")

    ui.loader = lambda spec: Exploding() if spec == "a/model" else fakes()[1](spec)
    out = list(ui.on_send("hi", session, ui.config))
    assert out[-1][3] == "⚠️ the assistant failed: peer closed the stream" and out[-1][0] == "hi"

    class Raising(ScriptedBackend):
        def _generate_batch(self, conversations, config):
            raise RuntimeError("CUDA driver vanished")

    ui.loader = lambda spec: Raising() if spec == "embedded" else fakes()[1](spec)
    list(autoplay(session, SpaceRoles(ui.config, fakes()[1]), 1))
    assert ui.on_induce(session, ui.config) == "⚠️ unexpected error: RuntimeError: CUDA driver vanished"
