"""The check of the simulated user: the role-break rules, leak spans, exact counts on a samples file written here, a
reveal curve that jumps at the turn the persona is revealed, and the `simulator` block of an eval's results file."""

from __future__ import annotations

import json
import sys

import pytest

from aloe_bench.commands.main import main
from aloe_bench.core.personas import load_persona_set
from aloe_bench.core.simulator_check import (ROLE_BREAK_RULES, UserMessage, chance_levels, leaks, repetition,
                                             reveal_curve, role_breaks, words)
from aloe_bench.harness import results as results_module
from aloe_bench.harness import runner
from aloe_bench.testing.backends import ScriptedBackend

CLEAN = ["I went for a long walk by the river this morning and it cleared my head.",
         "Any ideas for a quick dinner? I have rice, eggs and some spinach.",
         "My sister keeps sending me articles about productivity apps. Are any of them worth it?"]


@pytest.mark.parametrize("rule", ROLE_BREAK_RULES, ids=lambda r: r.name)
def test_each_rule_flags_its_example_and_no_rule_flags_plain_chat(rule):
    assert rule.name in role_breaks(rule.example)
    assert all(role_breaks(text) == [] for text in CLEAN)


def test_rule_names_are_unique_and_kinds_known():
    assert len({r.name for r in ROLE_BREAK_RULES}) == len(ROLE_BREAK_RULES)
    assert {r.kind for r in ROLE_BREAK_RULES} == {"assistant_voice", "meta", "stage_direction"}


def test_leak_spans_ignore_case_and_punctuation():
    profile = "He is a retired chemistry teacher who taught in Dundee, Scotland, for thirty-eight years and loves golf."
    seven = "Honestly, a RETIRED chemistry teacher who taught in... well, never mind."
    eight = "I'm a RETIRED chemistry teacher -- who taught in Dundee! Anyway, what about you?"
    assert leaks(seven, {"profile": profile}) == []
    (leak,) = leaks(eight, {"profile": profile})
    assert leak["field"] == "profile" and leak["kind"] == "span" and leak["span_words"] == 8
    (whole,) = leaks(f"Here it is: {profile.upper()}", {"profile": profile})
    assert whole["kind"] == "wholesale" and whole["covered"] == 1.0


def test_repetition_is_the_share_of_four_grams_used_before():
    first = words("I really love going to the beach")
    earlier = {tuple(first[i:i + 4]) for i in range(len(first) - 3)}
    assert repetition(words("I really love going to the mountains"), earlier) == pytest.approx(3 / 4)
    assert repetition(words("too short"), earlier) is None


def _persona_rows(personas):
    """Nine messages of three personas with two leaks and six role-break flags in five messages."""
    p0, p1, p2 = personas
    p1_span = " ".join(words(p1.profile)[:10])  # 10 of its words: a span, not wholesale
    messages = {
        # a wholesale profile leak and sample_text:
        (p0, 1): f"Here is a sample text that could be used for the conversation: {p0.profile}",
        (p0, 2): "Weekends outdoors are the best. How can I help you today?",  # offers_help
        (p0, 3): CLEAN[0],
        (p1, 1): f"Funny story: {p1_span}, and yet I still cannot cook rice.",  # profile span
        (p1, 2): "*smiles* That sounds great, tell me more.",  # asterisk_action
        (p1, 3): "In this role-play, as the user, I would ask about books.",  # role_play + as_the_user
        (p2, 1): CLEAN[1],
        (p2, 2): "Odd thing: " + " ".join(words(p2.profile)[:7]) + ", whatever.",  # 7 words: no leak
        (p2, 3): "[laughs] Fine, you win this one.",  # bracket_action
    }
    return [{"persona_id": p.id, "profile_id": p.profile_id, "personality_id": p.personality_id, "turn": turn,
             "user_message": text, "reply": "ok", "error": None, "score": 3}
            for (p, turn), text in messages.items()]


def test_check_of_a_samples_file_gives_exactly_the_planted_counts(tmp_path, capsys):
    personas = [p for p in load_persona_set("default")][::5][:3]  # three different profiles
    samples = tmp_path / "samples_20260101T000000.jsonl"
    samples.write_text("".join(json.dumps(row) + "\n" for row in _persona_rows(personas)))
    out = tmp_path / "check.json"
    assert main(["simulator", "check", str(samples), "--personas", "default", "--output", str(out)]) == 0
    report = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out) == report
    (run,) = report["runs"]
    block = run["simulator"]
    assert block["messages"] == 9
    assert block["leaks"] == {"messages": 2, "rate": round(2 / 9, 4), "profile_span": 1, "profile_wholesale": 1,
                              "personality_span": 0, "personality_wholesale": 0}
    assert block["role_breaks"]["messages"] == 5
    assert {k: v for k, v in block["role_breaks"]["rules"].items() if v} == {
        "offers_help": 1, "sample_text": 1, "as_the_user": 1, "role_play": 1, "asterisk_action": 1,
        "bracket_action": 1}
    assert [t["leaks"]["messages"] for t in block["per_turn"]] == [2, 0, 0]
    assert [t["role_breaks"]["messages"] for t in block["per_turn"]] == [1, 2, 2]
    assert {(f["persona_id"], f["turn"]) for f in run["flagged"]} == {
        (personas[0].id, 1), (personas[0].id, 2), (personas[1].id, 1), (personas[1].id, 2), (personas[1].id, 3),
        (personas[2].id, 3)}
    assert run["personas"] == {"set": "aloe-bench-eval", "evaluated": 3}
    assert block["reveal"]["profile"]["candidates"] == 3 and block["reveal"]["profile"]["chance"]["top1"] == 0.3333


PROFILES = {
    "reef": ("She is a 34-year-old marine biologist who studies coral reefs in Australia and loves scuba diving.",
             "Most weekends I am underwater off the Queensland coast, checking how the corals are bleaching."),
    "bikes": ("He is a 58-year-old retired firefighter from Chicago who restores vintage motorcycles in his garage.",
              "Since I stopped putting out blazes in the Windy City, I rebuild old sixties bikes in my shed."),
    "chess": ("She is a 22-year-old computer science student in Seoul who competes in chess tournaments.",
              "Between coding assignments at my Korean university I prepare for my next over-the-board chess event."),
    "bread": ("He is a 45-year-old bakery owner in Lyon who makes sourdough bread and pastries every morning.",
              "I get up at four to shape the loaves and croissants for my little shop in France."),
}
UNRELATED = ["What is a good name for a houseplant?", "How long should I let a cup of tea steep?"]


def test_reveal_curve_jumps_at_the_turn_the_persona_is_revealed():
    from aloe_bench.core.embedded import sentence_embedder

    embed, _ = sentence_embedder()
    messages = [UserMessage(name, turn, text, profile, "They are cheerful.")
                for name, (profile, reveal) in PROFILES.items()
                for turn, text in enumerate([*UNRELATED, reveal], 1)]
    curve = reveal_curve(messages, "profile", embed, turns=3)
    assert curve["candidates"] == 4 and curve["chance"] == chance_levels(4) == {"top1": 0.25, "mrr": 0.5208}
    assert curve["personas"] == [4, 4, 4]
    assert curve["top1"][0] <= 0.25 and curve["top1"][1] <= 0.25  # the same unrelated messages for every persona
    assert curve["top1"][2] == 1.0 and curve["mrr"][2] == 1.0
    assert curve["mrr"][2] - curve["mrr"][1] > 0.3


def test_the_reveal_curve_is_skipped_with_its_reason_without_the_embedder(monkeypatch):
    from aloe_bench.core import embedded
    from aloe_bench.core.errors import DependencyError

    def missing(name=None):
        raise DependencyError("the sentence embedder needs sentence-transformers")

    monkeypatch.setattr(embedded, "sentence_embedder", missing)
    personas = list(load_persona_set("default"))[:2]
    embedder = results_module.load_reveal_embedder()
    block = results_module.simulator_block(_persona_rows([*personas, personas[0]])[:6], personas, 3, embedder)
    assert block["reveal"] == {"skipped": "embedder unavailable: the sentence embedder needs sentence-transformers"}
    assert block["messages"] == 6 and len(block["per_turn"]) == 3


def test_an_eval_results_file_carries_the_simulator_block(tmp_path, monkeypatch, capsys):
    sentence_transformers_was_loaded = "sentence_transformers" in sys.modules
    made = iter([ScriptedBackend(fn=lambda m, c: "a reply"),
                 ScriptedBackend(fn=lambda m, c: "As an AI, how can I help you with the weather today?"),
                 ScriptedBackend(["4"])])
    monkeypatch.setattr(runner, "build_backend", lambda spec, options=None, **kw: next(made))
    assert main(["eval", "--max_personas", "2", "--turns", "2", "--bootstrap_resamples", "10", "--progress", "false",
                 "--output_dir", str(tmp_path)]) == 0
    results_file = json.loads(capsys.readouterr().out)["results_file"]
    results = json.loads(open(results_file).read())
    for key in ("metrics", "counts", "config", "results", "judge", "files"):
        assert key in results
    block = results["simulator"]
    assert block["messages"] == 4 and [t["messages"] for t in block["per_turn"]] == [2, 2]
    assert block["role_breaks"]["rules"]["as_an_ai"] == 4 and block["role_breaks"]["rules"]["offers_help"] == 4
    assert block["repetition"]["mean"] == 0.5  # turn 1 repeats nothing, turn 2 everything
    assert block["reveal"] == {"skipped": results_module.REVEAL_IN_CHECK}  # a results file loads no embedder
    assert "sentence_transformers" not in sys.modules or sentence_transformers_was_loaded


def test_the_check_of_an_eval_run_adds_the_reveal_curve(tmp_path, monkeypatch, capsys):
    made = iter([ScriptedBackend(fn=lambda m, c: "a reply"),
                 ScriptedBackend(fn=lambda m, c: f"Turn talk {len(m)}: I study cuttlefish in Tasmania."),
                 ScriptedBackend(["4"])])
    monkeypatch.setattr(runner, "build_backend", lambda spec, options=None, **kw: next(made))
    assert main(["eval", "--max_personas", "2", "--turns", "2", "--bootstrap_resamples", "10", "--progress", "false",
                 "--output_dir", str(tmp_path / "run")]) == 0
    capsys.readouterr()
    assert main(["simulator", "check", str(tmp_path / "run"), str(tmp_path / "run")]) == 0
    first, second = json.loads(capsys.readouterr().out)["runs"]  # side by side: one block per run named
    assert first["simulator"] == second["simulator"] and first["user_model"] and first["personas"]["evaluated"] == 2
    reveal = first["simulator"]["reveal"]
    assert reveal["embedder"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert reveal["profile"]["candidates"] == 1 and reveal["profile"]["top1"] == [1.0, 1.0]  # one profile: trivial
    assert reveal["personality"]["candidates"] == 2 and reveal["personality"]["chance"]["top1"] == 0.5


def _keyword_embedder(texts):
    """A fake sentence embedder with no model: one axis per PROFILES keyword, found in the text; text with none of
    them points mostly at a neutral axis, tilted towards the last keywords (so the turns before the reveal rank the
    same wrong profile first for everyone, never a tie)."""
    import numpy as np

    keys = list(PROFILES)
    vectors = []
    for text in texts:
        hit = [k for k, (profile, reveal) in PROFILES.items() if text in (profile, reveal)]
        vector = np.zeros(len(keys) + 1)
        if hit:
            vector[keys.index(hit[0])] = 1.0
        else:
            vector[:len(keys)] = 0.05 * np.arange(1, len(keys) + 1)
            vector[-1] = 1.0
        vectors.append(vector / np.linalg.norm(vector))
    return np.array(vectors)


def test_eval_with_simulator_reveal_adds_the_reveal_curve_which_jumps_at_turn_3(tmp_path, monkeypatch):
    from aloe_bench.core import embedded

    def user(messages, config):
        turn = 1 + sum(m["role"] == "assistant" for m in messages)
        profile = next(p for p, _ in PROFILES.values() if p in messages[0]["content"])
        reveal = next(r for p, r in PROFILES.values() if p == profile)
        return UNRELATED[turn - 1] if turn < 3 else reveal

    loaded = []
    monkeypatch.setattr(embedded, "sentence_embedder", lambda name=None: loaded.append(name) or
                        (_keyword_embedder, "fake-keyword-embedder"))

    def run(output_dir, *flags):
        made = iter([ScriptedBackend(fn=lambda m, c: "a reply"), ScriptedBackend(fn=user), ScriptedBackend(["4"])])
        monkeypatch.setattr(runner, "build_backend", lambda spec, options=None, **kw: next(made))
        settings = dict(turns=3, bootstrap_resamples=10, progress=False, output_dir=str(tmp_path / output_dir))
        return runner.evaluate_personas([p for p, _ in PROFILES.values()], ["They are cheerful."] * 4,
                                        **settings, **dict(flags))

    plain = run("plain")
    assert plain["simulator"]["reveal"] == {"skipped": results_module.REVEAL_IN_CHECK} and loaded == []
    revealed = run("reveal", ("simulator_reveal", True))
    assert loaded == [None]
    curve = revealed["simulator"]["reveal"]
    assert curve["embedder"] == "fake-keyword-embedder"
    assert curve["profile"]["candidates"] == 4 and curve["profile"]["personas"] == [4, 4, 4]
    assert curve["profile"]["top1"] == [0.25, 0.25, 1.0]  # the same unrelated messages, then the reveal at turn 3
    assert curve["profile"]["mrr"][2] == 1.0 and curve["profile"]["mrr"][1] < 0.6
    assert curve["personality"]["candidates"] == 1  # one personality: trivially found
    # a report only: the run's identity (fingerprint) and everything but the reveal curve are as without it
    assert revealed["fingerprint"] == plain["fingerprint"]
    assert {k: v for k, v in revealed["simulator"].items() if k != "reveal"} == \
        {k: v for k, v in plain["simulator"].items() if k != "reveal"}
    assert revealed["metrics"]["AL_avg"] == plain["metrics"]["AL_avg"] == 4.0


def test_llm_role_break_check_counts_beside_the_rules_and_records_unparsable_answers(tmp_path, monkeypatch, capsys):
    from aloe_bench.core import backends as backends_module
    from aloe_bench.core import embedded
    from aloe_bench.core.errors import DependencyError
    from aloe_bench.core.prompts import load_prompts

    def no_embedder(name=None):
        raise DependencyError("not needed here")

    monkeypatch.setattr(embedded, "sentence_embedder", no_embedder)

    def answer(messages, config):
        text = messages[-1]["content"].split("<<<MESSAGE\n", 1)[1].split("\nMESSAGE>>>", 1)[0]
        if "Fine, you win" in text:
            return "Maybe, hard to say."  # neither yes nor no: a recorded failure
        if "help you" in text or "role-play" in text or "origami" in text:
            return "Yes."
        return "no"

    llm = ScriptedBackend(fn=answer, name="fake/checker")
    built = []
    monkeypatch.setattr(backends_module, "build_backend",
                        lambda spec, options=None, **kw: built.append((spec, kw)) or llm)
    personas = [p for p in load_persona_set("default")][::5][:3]
    rows = _persona_rows(personas)
    rows[6]["user_message"] = "I fold origami cranes at night."  # (p2, 1): the LLM says yes, the rules do not
    samples = tmp_path / "samples_20260101T000000.jsonl"
    samples.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert main(["simulator", "check", str(samples), "--personas", "default", "--llm_check", "openai:checker",
                 "--llm_check_base_url", "http://127.0.0.1:9/v1"]) == 0
    (run,) = json.loads(capsys.readouterr().out)["runs"]
    assert built == [("openai:checker", {"base_url": "http://127.0.0.1:9/v1"})]
    assert len(llm.calls) == 1 and len(llm.calls[0][0]) == 9 and llm.calls[0][1].temperature == 0.0
    breaks = run["simulator"]["role_breaks"]
    assert breaks["messages"] == 5  # the rules' count is unchanged
    check = breaks["llm"]
    assert check["model"] == "fake/checker" and check["prompt"] == "role_break_check"
    assert check["prompt_sha256"] == load_prompts()["role_break_check"].sha256[:16]
    # yes: offers_help (p0,2), role-play (p1,3), origami (p2,1); failure: (p2,3); the other five: no
    assert (check["messages"], check["breaks"], check["failures"], check["rate"]) == (9, 3, 1, 0.375)
    assert check["agreement_with_rules"] == {"both": 2, "llm_only": 1, "rules_only": 2, "neither": 3}
    assert check["failed"] == [{"persona_id": personas[2].id, "turn": 3,
                                "failure": "unparsable answer: 'Maybe, hard to say.'"}]
    assert [t["role_breaks"]["llm"]["breaks"] for t in run["simulator"]["per_turn"]] == [1, 1, 1]
    assert [t["role_breaks"]["llm"]["failures"] for t in run["simulator"]["per_turn"]] == [0, 0, 1]
    flagged = {(f["persona_id"], f["turn"]): f for f in run["flagged"]}
    assert flagged[personas[2].id, 1]["llm_role_break"] is True and not flagged[personas[2].id, 1]["role_breaks"]
    assert flagged[personas[2].id, 3]["llm_role_break"] is None and flagged[personas[2].id, 3]["llm_failure"]
