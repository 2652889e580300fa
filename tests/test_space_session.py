"""Unit tests of the Space's session logic (persona choice, turns, scoring, running IR, export) on fakes."""

from __future__ import annotations

import json
import random

import pytest
from aloe_bench.space.autoplay import autoplay
from aloe_bench.space.chat import check_message, induce, score_pending, stream_turn
from aloe_bench.space.errors import SpaceError
from aloe_bench.space.export import export
from aloe_bench.space.persona_picker import (custom_persona, find_persona, persona_label, persona_markdown, persona_sets,
                                             random_persona)
from aloe_bench.space.roles import SpaceRoles
from aloe_bench.space.session import Lane, Turn, new_session
from aloe_bench.space.space_config import SpaceConfig
from aloe_bench.space.views import chat_messages, curve_rows, lane_summary, running_metrics, trend_line
from aloe_bench.testing.backends import ScriptedBackend

from aloe_bench.core.induction import induction_messages
from aloe_bench.core.metrics import aloe_metrics
from aloe_bench.core.personas import Persona

PERSONA = Persona("p1", "A beekeeper in Wales who restores old bicycles.", "Terse, dry humour, no emojis.", "pa", "qa")
PROBS = {"1": 0.1, "2": 0.1, "3": 0.2, "4": 0.3, "5": 0.3}  # expected score 3.6


def make(config=None, reply=None, judge=None, user=None, compare=False):
    """A session plus roles whose loader hands out scripted backends by spec name."""
    config = config or SpaceConfig(model="a/model", compare_model="b/model" if compare else None,
                                   user_model="u/model", judge_model="embedded")
    backends = {
        "a/model": reply or ScriptedBackend(fn=lambda m, c: f"A reply to: {m[-1]['content']}"),
        "b/model": ScriptedBackend(fn=lambda m, c: f"B reply after {len(m)} messages"),
        "u/model": user or ScriptedBackend(fn=lambda m, c: f"*waves* user says hi #{len(m)}"),
        "embedded": judge or ScriptedBackend(options=PROBS, fn=lambda m, c: "Profile: beekeeper\nPersonality: terse",
                                             kind="embedded"),
    }
    session = new_session(config)
    session.persona = PERSONA
    return session, SpaceRoles(config, loader=lambda spec: backends[spec]), backends


def send(session, roles, text):
    return list(stream_turn(session, roles, text))


def test_persona_sets_and_choice():
    sets = persona_sets()
    eval_set = sets["eval (20 profiles x 5 personalities)"]
    assert len(eval_set) == 100 and len(sets["seed pools (24 profiles x 5 personalities)"]) == 120
    persona = eval_set.personas[7]
    assert find_persona(eval_set, persona_label(persona)) == persona
    assert random_persona(eval_set, random.Random(3)) in eval_set.personas
    with pytest.raises(SpaceError, match="no persona"):
        find_persona(eval_set, "nobody")
    shown = persona_markdown(persona)
    assert persona.profile in shown and persona.personality in shown


def test_custom_persona_is_validated():
    persona = custom_persona("  A nurse in Oslo.  ", "Chatty.", max_chars=50)
    assert (persona.profile, persona.personality) == ("A nurse in Oslo.", "Chatty.")
    with pytest.raises(SpaceError, match="both a profile"):
        custom_persona("A nurse", " ", max_chars=50)
    with pytest.raises(SpaceError, match="personality has 60 characters; the limit is 50"):
        custom_persona("A nurse", "x" * 60, max_chars=50)


def test_message_bounds():
    config = SpaceConfig(max_input_chars=20, max_turns=1)
    session, roles, _ = make(config=config)
    with pytest.raises(SpaceError, match="empty"):
        check_message(session, "   ", config)
    with pytest.raises(SpaceError, match="21 characters; the limit is 20"):
        check_message(session, "x" * 21, config)
    session.persona = None
    with pytest.raises(SpaceError, match="choose a persona"):
        check_message(session, "hi", config)


def test_turns_stream_into_both_lanes_with_the_same_user_messages():
    session, roles, backends = make(compare=True)
    states = send(session, roles, "hello")
    assert len(states) >= 3  # the user's message at once, then the growing replies
    send(session, roles, "second")
    a, b = session.lanes
    assert [t.user for t in a.turns] == [t.user for t in b.turns] == ["hello", "second"]
    assert a.turns[1].reply == "A reply to: second"
    assert b.turns[1].reply == "B reply after 3 messages"  # saw its own first turn, then the new message
    last_request = backends["b/model"].calls[-1][0][0]
    assert last_request[1] == {"role": "assistant", "content": "B reply after 1 messages"}
    assert all(t.judge == "pending" for t in a.turns + b.turns)


def test_backend_failure_keeps_earlier_turns_and_raises_a_message():
    flaky = ScriptedBackend(fn=lambda m, c: "fine" if len(m) == 1 else RuntimeError("server said 500"))
    session, roles, _ = make(reply=flaky)
    send(session, roles, "one")
    with pytest.raises(SpaceError, match="the assistant failed: server said 500"):
        send(session, roles, "two")
    assert [t.user for t in session.lanes[0].turns] == ["one"]


def test_unknown_model_is_a_message_not_a_crash():
    config = SpaceConfig(model="nope/missing", judge_model="embedded")
    session = new_session(config)
    session.persona = PERSONA

    def loader(spec):
        raise OSError("nope/missing is not a local folder and the Hub is offline")

    with pytest.raises(SpaceError, match="could not load the assistant model 'nope/missing'.*Hub is offline"):
        send(session, SpaceRoles(config, loader=loader), "hi")
    assert session.n_turns == 0


def test_scores_come_from_the_judge_distribution_and_land_on_their_turn():
    session, roles, _ = make(compare=True)
    send(session, roles, "one")
    send(session, roles, "two")  # sent before the first turn was scored
    assert score_pending(session, roles) == 4
    for lane in session.lanes:
        assert lane.scores() == [pytest.approx(3.6), pytest.approx(3.6)]
        assert lane.turns[0].distribution == PROBS
    assert score_pending(session, roles) == 0  # nothing left to judge


def test_unparsable_text_judge_is_a_failure_not_a_number():
    judge = ScriptedBackend(answers=["I cannot rate this."])
    config = SpaceConfig(model="a/model", user_model="u/model", judge_model="j/model")
    session, _, backends = make(config=config)
    backends["j/model"] = judge
    roles = SpaceRoles(config, loader=lambda spec: backends[spec])
    send(session, roles, "hi")
    score_pending(session, roles)
    turn = session.lanes[0].turns[0]
    assert (turn.score, turn.judge, turn.judge_error) == (None, "failed", "unparsable judge answer")
    assert "judge failed" in chat_messages(session.lanes[0])[1]["content"]


def test_running_ir_and_trend_follow_core_metrics():
    lane = Lane("m", [Turn("u", "r", score=s, judge="scored") for s in (2.0, 3.0, 3.5, 4.5)])
    metrics = running_metrics(lane.scores())
    assert metrics == aloe_metrics([2.0, 3.0, 3.5, 4.5])
    trend = trend_line(lane.scores())
    assert trend[1] - trend[0] == pytest.approx(metrics["IR"])
    assert sum(trend) / 4 == pytest.approx(metrics["AL_avg"])
    assert "running IR: +0.800" in lane_summary(lane)
    rows = curve_rows(lane)
    assert {r["series"] for r in rows} == {"score", "trend"} and len(rows) == 8

    one = Lane("m", [Turn("u", "r", score=3.0, judge="scored")])
    assert {r["series"] for r in curve_rows(one)} == {"score", "trend"}  # both series from turn 1 on
    assert running_metrics(one.scores()) is None and "needs 2 scored turns" in lane_summary(one)

    gap = Lane("m", [Turn("u", "r", score=3.0, judge="scored"), Turn("u", "r", judge="failed")])
    assert running_metrics(gap.scores()) is None and trend_line(gap.scores()) is None
    assert "a turn has no score" in lane_summary(gap)


def test_induction_reads_the_conversation_with_the_induction_prompt():
    session, roles, backends = make()
    assert induce(session, roles) is None  # nothing said yet
    send(session, roles, "my bees are grumpy today")
    assert induce(session, roles) == "Profile: beekeeper\nPersonality: terse"
    request = backends["embedded"].calls[-1][0][0]
    assert request[0]["content"] == roles.prompts["induction"]["system"]
    assert "User: my bees are grumpy today" in request[1]["content"]
    assert session.revealed_turns == 1


def test_induction_asks_and_reads_as_data_generation_does():
    answers = iter(["Sure! Here is what I noticed.\nProfile: keeps bees\nPersonality: None\nHope that helps.",
                    "The user   keeps bees.", "  "])
    induction = ScriptedBackend(fn=lambda m, c: next(answers))
    session, roles, backends = make(SpaceConfig(model="a/model", user_model="u/model", judge_model="embedded",
                                                induction_model="i/model"))
    backends["i/model"] = induction
    send(session, roles, "my bees are grumpy today")
    assert induce(session, roles) == "Profile: keeps bees\nPersonality: None"  # the chatter around the labels is not kept
    assert induction.calls[-1][0][0] == induction_messages(roles.prompts, PERSONA, session.lanes[0].history())
    assert induce(session, roles) == "The user keeps bees."  # unlabelled: shown as it came, as generate keeps it
    with pytest.raises(SpaceError, match="empty answer"):
        induce(session, roles)
    assert session.revealed == "The user keeps bees."  # the last reading stays


def test_autoplay_plays_the_persona_for_n_turns_and_scores_each():
    session, roles, backends = make()
    states = list(autoplay(session, roles, 2))
    lane = session.lanes[0]
    assert [t.user for t in lane.turns] == ["user says hi #2", "user says hi #4"]  # stage direction stripped
    assert lane.scores() == [pytest.approx(3.6)] * 2
    assert len(states) > 2
    system = backends["u/model"].calls[0][0][0][0]["content"]
    assert PERSONA.profile in system and PERSONA.personality in system


def test_autoplay_is_bounded_by_the_settings():
    config = SpaceConfig(model="a/model", user_model="u/model", judge_model="embedded", max_autoplay_turns=2,
                         max_turns=3)
    session, roles, _ = make(config=config)
    list(autoplay(session, roles, 50))
    assert session.n_turns == 2
    list(autoplay(session, roles, 2))
    assert session.n_turns == 3 and "reached 3 turns" in session.notice


def test_export_is_json_with_persona_turns_and_scores():
    session, roles, _ = make(compare=True)
    send(session, roles, "hi")
    score_pending(session, roles)
    data = json.loads(json.dumps(export(session, roles)))
    assert data["persona"]["profile"] == PERSONA.profile
    assert [lane["model"] for lane in data["lanes"]] == ["a/model", "b/model"]
    assert data["lanes"][0]["turns"][0]["score"] == pytest.approx(3.6)
    assert data["lanes"][0]["turns"][0]["user"] == "hi"
    session.reset()
    assert session.n_turns == 0 and session.persona == PERSONA


def test_sessions_are_independent_copies():
    import copy

    template = new_session(SpaceConfig())
    one, two = copy.deepcopy(template), copy.deepcopy(template)
    one.lanes[0].turns.append(Turn("x"))
    assert two.n_turns == 0 and template.n_turns == 0 and one.lock is not two.lock


def test_config_from_env():
    config = SpaceConfig.from_env({"ALOE_SPACE_MODEL": "openai:gpt-4o-mini", "ALOE_SPACE_MAX_TURNS": "4",
                                   "ALOE_SPACE_ALLOW_MODEL_CHANGE": "false"}, host="0.0.0.0")
    assert (config.model, config.max_turns, config.allow_model_change, config.host) == (
        "openai:gpt-4o-mini", 4, False, "0.0.0.0")
    with pytest.raises(ValueError, match="ALOE_SPACE_MAX_TURNS='many': expected int"):
        SpaceConfig.from_env({"ALOE_SPACE_MAX_TURNS": "many"})
    with pytest.raises(ValueError, match="judge_preset"):
        SpaceConfig(judge_preset="vibes")


def test_autoplay_writes_the_next_message_while_the_judge_scores_the_last_reply():
    """Auto-play runs on the core's conversation task: the judge of turn 1 is off the critical path, so the
    simulated user is asked for turn 2 while that judge is still working (it waits here until it sees that)."""
    import threading

    user_asked = {1: threading.Event(), 2: threading.Event()}

    def user_fn(messages, config):
        user_asked[(len(messages) // 2)].set()  # 2 messages at turn 1, 4 at turn 2
        return f"user message #{len(messages)}"

    overlapped = []

    class WaitingJudge(ScriptedBackend):
        def _score_options_batch(self, conversations, options):
            overlapped.append(user_asked[2].wait(timeout=5))  # a judge on the critical path would time out
            return super()._score_options_batch(conversations, options)

    session, roles, _ = make(user=ScriptedBackend(fn=user_fn), judge=WaitingJudge(options=PROBS, kind="embedded"))
    list(autoplay(session, roles, 2))
    assert overlapped[0] is True
    assert session.lanes[0].scores() == [pytest.approx(3.6)] * 2 and session.n_turns == 2


def test_autoplay_failures_are_messages_and_drop_only_the_failed_turn():
    session, roles, _ = make(reply=ScriptedBackend(fn=lambda m, c: RuntimeError("out of memory") if len(m) > 2
                                                   else "first reply"))
    with pytest.raises(SpaceError, match="the assistant failed: .*out of memory"):
        list(autoplay(session, roles, 3))
    lane = session.lanes[0]
    assert [t.reply for t in lane.turns] == ["first reply"] and lane.scores() == [pytest.approx(3.6)]

    session, roles, _ = make(user=ScriptedBackend(fn=lambda m, c: RuntimeError("rate limited")))
    with pytest.raises(SpaceError, match="the user simulator failed: .*rate limited"):
        list(autoplay(session, roles, 2))
    assert session.n_turns == 0
