"""The transformers backend on the embedded model, the request cache, and the simulator's cleaning."""

import json
import shutil

import pytest

from aloe_bench.core.backends import BackendError, GenerationConfig, build_backend
from aloe_bench.core.backends.cache import CachedBackend, RequestCache
from aloe_bench.core.personas import Persona
from aloe_bench.core.simulator import clean_user_message, role_play_messages
from aloe_bench.testing.backends import ScriptedBackend

pytestmark = pytest.mark.slow
GREEDY = GenerationConfig(max_new_tokens=12, temperature=0.0)


def chat(text):
    return [{"role": "user", "content": text}]


def test_batched_generation_matches_one_at_a_time(embedded_backend):
    prompts = [chat("Name a fruit."), chat("Say hello to a beekeeper who lives in Lyon and loves jazz."),
               chat("What is 2+2?")]
    batched = embedded_backend.generate(prompts, GREEDY)
    single = [embedded_backend.generate([p], GREEDY)[0] for p in prompts]
    assert all(c.ok and c.text and 0 < c.tokens <= 12 for c in batched)
    # left padding must not change greedy outputs
    assert [c.text for c in batched] == [c.text for c in single]


def test_identity_and_revision(embedded_backend):
    info = embedded_backend.describe()
    assert info["model_id"] == "embedded:HuggingFaceTB/SmolLM2-135M-Instruct"
    assert info["resolved_revision"].startswith("gguf-sha256:")
    assert info["chat_template_sha256"] and info["device"] == "cpu" and info["dtype"] == "float32"


def test_left_truncation_drops_old_turns_but_keeps_system(embedded_backend):
    messages = [{"role": "system", "content": "SYSTEM-MARKER"}]
    for i in range(30):
        messages += [{"role": "user", "content": f"turn {i} " + "words " * 40},
                     {"role": "assistant", "content": "ok " * 20}]
    messages.append({"role": "user", "content": "LAST-QUESTION"})
    old = embedded_backend.max_context
    embedded_backend.max_context = 400
    try:
        ids = embedded_backend.encode_prompt(messages, reserve=50)
    finally:
        embedded_backend.max_context = old
    text = embedded_backend.tokenizer.decode(ids)
    assert len(ids) <= 350
    assert "SYSTEM-MARKER" in text and "LAST-QUESTION" in text and "turn 0 " not in text


def test_option_scores_are_a_distribution(embedded_backend):
    (scores,) = embedded_backend.score_options([chat("Pick a number from 1 to 5.")], ["1", "2", "3", "4", "5"])
    assert scores.error is None and set(scores.probs) == {"1", "2", "3", "4", "5"}
    assert sum(scores.probs.values()) == pytest.approx(1.0)
    assert 0 < scores.mass <= 1
    with pytest.raises(BackendError, match="need exactly 1"):
        embedded_backend.score_options([chat("x")], ["12345 67"])


def test_stream_yields_growing_text(embedded_backend):
    pieces = list(embedded_backend.stream(chat("Tell me about bees."), GREEDY))
    assert len(pieces) >= 2 and all(pieces[i + 1].startswith(pieces[i]) for i in range(len(pieces) - 1))
    assert pieces[-1].strip() == embedded_backend.generate([chat("Tell me about bees.")], GREEDY)[0].text


def test_folder_without_chat_template_is_refused(embedded_model_dir, tmp_path):
    folder = tmp_path / "no-template"
    shutil.copytree(embedded_model_dir, folder)
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(BackendError, match="no chat template"):
        build_backend(str(folder))


def test_cache_makes_repeats_free_and_skips_failures(tmp_path):
    inner = ScriptedBackend(fn=lambda m, c: RuntimeError("boom") if "fail" in m[-1]["content"] else "answer")
    cache = RequestCache(tmp_path / "c.sqlite")
    backend = CachedBackend(inner, cache)
    first = backend.generate([chat("a"), chat("fail"), chat("b")], GREEDY)
    assert [c.text for c in first] == ["answer", None, "answer"] and not any(c.cached for c in first)
    second = CachedBackend(inner, RequestCache(tmp_path / "c.sqlite")).generate(
        [chat("a"), chat("fail"), chat("b")], GREEDY)
    assert [c.cached for c in second] == [True, False, True]
    assert len(inner.calls[-1][0]) == 1  # only the failed request was sent again
    other = backend.generate([chat("a")], GenerationConfig(max_new_tokens=12, temperature=0.0, seed=1))
    assert not other[0].cached  # a different seed is a different request


def test_clean_user_message():
    assert clean_user_message('*waves* "Hi there!"') == "Hi there!"
    assert clean_user_message("User: I love jazz *smiles* a lot") == "I love jazz a lot"
    assert clean_user_message("*sighs*") == ""


def test_role_play_messages_swap_roles_and_end_on_user():
    persona = Persona("p", "PROFILE-TEXT", "PERSONALITY-TEXT")
    history = [{"role": "user", "content": "u1"}, {"role": "assistant", "content": "a1"}]
    messages = role_play_messages(persona, history)
    assert "PROFILE-TEXT" in messages[0]["content"] and "PERSONALITY-TEXT" in messages[0]["content"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[2]["content"] == "u1" and "a1" in messages[3]["content"]
