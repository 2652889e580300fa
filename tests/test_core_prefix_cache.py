"""The transformers backend's prompt-prefix cache: longest common prefix within a scope, LRU bound, release, and
(on the embedded model) the same texts and scores as a full read."""

from __future__ import annotations

import asyncio
import time

import pytest
import torch

from aloe_bench.core.backends import BackendOptions, GenerationConfig, build_backend
from aloe_bench.core.backends.prefix_cache import PrefixCache, current_scope, new_scope, prefix_scope
from aloe_bench.core.conversation import ConversationRoles, ConversationState, converse
from aloe_bench.core.judge import SCORE_OPTIONS, Judge, JudgeConfig, JudgeItem
from aloe_bench.core.personas import Persona
from aloe_bench.core.simulator import UserSimulator
from aloe_bench.testing.backends import ScriptedBackend

TOKEN_BYTES = 2 * 4  # one layer, one head, head_dim 1, fp32: a key and a value per token


def layers(n: int) -> list:
    return [(torch.zeros(1, 1, n, 1), torch.zeros(1, 1, n, 1))]


def test_longest_common_prefix_not_exact_extension_and_counted():
    cache = PrefixCache(10_000)
    cache.add("s", [1, 2, 3, 4, 5, 6], layers(6))
    cache.add("s", [1, 2, 9, 9], layers(4))
    entry, reused = cache.longest("s", [1, 2, 3, 4, 7, 7, 7], limit=6)  # diverges inside the entry
    assert reused == 4 and list(entry.tokens) == [1, 2, 3, 4, 5, 6]
    entry, reused = cache.longest("s", [1, 2, 3], limit=2)  # at most `limit`: the last token is always read
    assert reused == 2
    entry, reused = cache.longest("s", [8, 8], limit=1)
    assert entry is None and reused == 0
    stats = cache.stats
    assert (stats.hits, stats.misses, stats.reused_tokens, stats.computed_tokens) == (2, 1, 6, 3 + 1 + 2)


def test_scopes_never_match_each_other():
    cache = PrefixCache(10_000)
    cache.add("visitor-a", [1, 2, 3, 4], layers(4))
    assert cache.longest("visitor-b", [1, 2, 3, 4, 5], limit=4) == (None, 0)
    assert cache.longest("visitor-a", [1, 2, 3, 4, 5], limit=4)[1] == 4


def test_an_entry_that_a_new_one_extends_is_dropped():
    cache = PrefixCache(10_000)
    cache.add("s", [1, 2, 3], layers(3))
    cache.add("s", [1, 2, 3, 4, 5], layers(5))
    cache.add("t", [1, 2], layers(2))  # another scope keeps its own
    assert cache.stats.entries == 2 and cache.stats.bytes == 7 * TOKEN_BYTES


def test_least_recently_used_entries_go_first_under_the_bound():
    cache = PrefixCache(10 * TOKEN_BYTES)
    cache.add("s", [1, 1, 1, 1], layers(4))
    cache.add("s", [2, 2, 2, 2], layers(4))
    cache.longest("s", [1, 1, 1, 1, 9], limit=4)  # [1...] is now the most recently used
    cache.add("s", [3, 3, 3, 3], layers(4))
    assert cache.longest("s", [2, 2, 2, 2], limit=3)[0] is None
    assert cache.longest("s", [1, 1, 1, 1], limit=3)[1] == 3
    assert cache.stats.evictions == 1 and cache.stats.peak_bytes <= 10 * TOKEN_BYTES
    cache.add("s", list(range(20)), layers(20))  # larger than the whole bound: not kept
    assert cache.stats.bytes <= 10 * TOKEN_BYTES


def test_release_frees_a_scope_and_a_late_answer_adds_nothing_to_it():
    cache = PrefixCache(10_000)
    cache.add("conv-1", [1, 2, 3], layers(3))
    cache.add("conv-2", [4, 5, 6], layers(3))
    assert cache.release("conv-1") == 1
    cache.add("conv-1", [1, 2, 3, 4], layers(4))  # a request that was still in flight when it ended
    assert cache.scope_entries("conv-1") == 0 and cache.scope_entries("conv-2") == 1
    assert cache.stats.bytes == 3 * TOKEN_BYTES


class ScopeRecorder(ScriptedBackend):
    """Records the prefix-cache scope of every call, and every release."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.scopes: list[str] = []
        self.released: list[str] = []

    def _generate_batch(self, conversations, config):
        self.scopes.append(current_scope())
        return super()._generate_batch(conversations, config)

    def _score_options_batch(self, conversations, options):
        self.scopes.append(current_scope())
        return super()._score_options_batch(conversations, options)

    def release_prefixes(self, scope: str) -> int:
        self.released.append(scope)
        return 0


PERSONA = Persona("p1", "A beekeeper in Wales.", "Terse.", "pa", "qa")
PROBS = {"1": 0.1, "2": 0.1, "3": 0.2, "4": 0.3, "5": 0.3}


def _roles(backend, judge_backend=None):
    user = UserSimulator(backend, GenerationConfig(8))
    judge = Judge(judge_backend or backend, JudgeConfig(scoring="logprobs"))
    return ConversationRoles(backend, user, judge, GenerationConfig(8))


def test_a_finished_conversation_releases_its_own_scope():
    backend = ScopeRecorder(fn=lambda m, c: "hello there", options=PROBS)
    judged = []
    asyncio.run(converse(ConversationState(PERSONA), 2, _roles(backend), judged.append))
    assert len(judged) == 2
    scopes = set(backend.scopes)
    assert len(scopes) == 1 and "" not in scopes  # one scope of its own, for all three roles
    assert backend.released == list(scopes)


def test_a_cancelled_conversation_releases_its_scope():
    backend = ScopeRecorder(fn=lambda m, c: time.sleep(0.01) or "hello there", options=PROBS)

    async def main():
        task = asyncio.create_task(converse(ConversationState(PERSONA), 50, _roles(backend), lambda r: None))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert backend.released and set(backend.released) == set(backend.scopes)


def test_a_caller_that_chose_the_scope_keeps_it_and_releases_it_itself():
    backend = ScopeRecorder(fn=lambda m, c: "hello there", options=PROBS)
    with prefix_scope("space-session-x"):
        asyncio.run(converse(ConversationState(PERSONA), 1, _roles(backend), lambda r: None))
    assert set(backend.scopes) == {"space-session-x"} and backend.released == []


def test_space_sessions_have_scopes_of_their_own_released_on_reset_and_expiry(monkeypatch):
    from aloe_bench.space import cache_scope
    from aloe_bench.space.chat import score_pending, stream_turn
    from aloe_bench.space.roles import SpaceRoles
    from aloe_bench.space.session import new_session
    from aloe_bench.space.space_config import SpaceConfig

    released = []
    monkeypatch.setattr(cache_scope, "release_everywhere", lambda scope: released.append(scope) or 0)
    backend = ScopeRecorder(fn=lambda m, c: "a reply", options=PROBS)
    config = SpaceConfig(model="a/model", user_model="a/model", judge_model="a/model")
    roles = SpaceRoles(config, loader=lambda spec: backend)
    one, two = new_session(config), new_session(config)
    for session in (one, two):
        session.persona = PERSONA
        backend.scopes.clear()
        list(stream_turn(session, roles, "hi"))
        score_pending(session, roles)
        assert len(backend.scopes) >= 2 and set(backend.scopes) == {session.cache_scope}
    assert one.cache_scope != two.cache_scope and current_scope() == ""
    first = one.cache_scope
    one.reset()
    assert released == [first] and one.cache_scope != first
    two_scope = two.cache_scope
    two.close()  # gradio's delete_callback when the session expires
    assert released == [first, two_scope]


# -- on the embedded model ------------------------------------------------------------------------------------
GREEDY = GenerationConfig(max_new_tokens=24, temperature=0.0)
PERSONAS = [Persona("a", "A nurse in Oslo who climbs on weekends.", "Chatty, uses exclamation marks.", "pa", "qa"),
            Persona("b", "A retired teacher restoring a sailing boat.", "Formal and precise.", "pb", "qb"),
            Persona("c", "A student who bakes sourdough.", "Short replies, lowercase.", "pc", "qc")]
LOGIT_BOUND = 1e-3  # largest |logit difference| allowed between the cached path and a full read (fp32 on CPU)


@pytest.fixture(scope="module")
def full_read():
    return build_backend("embedded", BackendOptions(kv_cache_mb=0))


@pytest.fixture(scope="module")
def cached():
    return build_backend("embedded", BackendOptions(kv_cache_mb=512))


def _play(backend, turns: int, personas=PERSONAS):
    """Lockstep turns of every role on `backend`, greedy: user messages, replies and judge distributions."""
    user = UserSimulator(backend, GREEDY)
    judge = Judge(backend, JudgeConfig(scoring="logprobs"))
    histories = [[] for _ in personas]
    out = []
    for _ in range(turns):
        messages = user.next_messages(personas, histories)
        replies = backend.generate([h + [{"role": "user", "content": m.text}] for h, m in zip(histories, messages)],
                                   GREEDY)
        verdicts = judge.score([JudgeItem(p, m.text, r.text, h)
                                for p, m, r, h in zip(personas, messages, replies, histories)])
        out.append(([m.text for m in messages], [r.text for r in replies], [v.distribution for v in verdicts]))
        histories = [h + [{"role": "user", "content": m.text}, {"role": "assistant", "content": r.text}]
                     for h, m, r in zip(histories, messages, replies)]
    return out


def _same(expected, got):
    for (users, replies, dists), (users2, replies2, dists2) in zip(expected, got):
        assert users2 == users and replies2 == replies
        for d, d2 in zip(dists, dists2):
            assert max(abs(d[k] - d2[k]) for k in SCORE_OPTIONS) <= 1e-4


@pytest.mark.slow
def test_cached_path_gives_the_full_reads_texts_and_scores_for_every_role(full_read, cached):
    expected = _play(full_read, 3)
    with prefix_scope(new_scope("test")):
        before = cached.prefix_cache.stats.hits
        got = _play(cached, 3)
    _same(expected, got)
    stats = cached.prefix_cache.stats
    assert stats.hits - before >= 2 * 3 * len(PERSONAS)  # from turn 2 on every role's request reuses a prefix
    assert stats.reused_tokens > stats.computed_tokens


@pytest.mark.slow
def test_a_batch_mixing_cached_and_uncached_rows(full_read, cached):
    # Every prompt of one scope shares at least the chat template's default system prompt, so the uncached row
    # comes from a scope with no entries, batched with the others as concurrent requests are.
    chats = [[{"role": "user", "content": "Tell me about bees."}], [{"role": "user", "content": "And cats?"}]]
    scope = new_scope("test")
    with prefix_scope(scope):
        first = cached.generate(chats, GREEDY)
    longer = chats[0] + [{"role": "assistant", "content": first[0].text}, {"role": "user", "content": "More."}]
    mixed = [(longer, scope), ([{"role": "user", "content": "A brand new question about boats."}], new_scope("test")),
             (chats[1], scope)]

    async def ask(chat, in_scope, call):
        with prefix_scope(in_scope):
            return await call(chat)

    async def batch(call):
        return await asyncio.gather(*(ask(chat, in_scope, call) for chat, in_scope in mixed))

    stats, batches = cached.prefix_cache.stats, cached.worker.stats.batches
    hits, misses = stats.hits, stats.misses
    got = asyncio.run(batch(lambda chat: cached.agenerate(chat, GREEDY)))
    assert (stats.hits - hits, stats.misses - misses, cached.worker.stats.batches - batches) == (2, 1, 1)
    scores = asyncio.run(batch(lambda chat: cached.ascore_options(chat, SCORE_OPTIONS)))
    assert stats.misses - misses == 1  # the new row's first request left an entry in its scope
    chats = [chat for chat, _ in mixed]
    assert [c.text for c in got] == [c.text for c in full_read.generate(chats, GREEDY)]
    for s, s2 in zip(scores, full_read.score_options(chats, SCORE_OPTIONS)):
        assert max(abs(s.probs[k] - s2.probs[k]) for k in SCORE_OPTIONS) <= 1e-4


@pytest.mark.slow
def test_logits_on_a_cached_prefix_stay_within_the_bound(full_read, cached):
    chat = [{"role": "user", "content": "I keep bees in Wales."}]
    with prefix_scope(new_scope("test")):
        reply = cached.generate([chat], GREEDY)[0].text
        chat += [{"role": "assistant", "content": reply}, {"role": "user", "content": "What do they eat in winter?"}]
        prompt = cached.encode_prompt(chat, 1)
        with torch.inference_mode():
            got = cached._rows.last_logits([prompt], [current_scope()])
            expected = full_read.model(input_ids=torch.tensor([prompt])).logits[:, -1, :]
    assert got is not None  # read on top of the cached first turn
    difference = float((got - expected).abs().max())
    assert difference <= LOGIT_BOUND, f"largest logit difference {difference}"


@pytest.mark.slow
def test_a_request_with_no_cached_prefix_is_read_in_full_and_counted(cached):
    chat = [{"role": "user", "content": "Something nobody asked before: the history of the tuba."}]
    stats = cached.prefix_cache.stats
    with prefix_scope(new_scope("test")):
        before = (stats.misses, stats.computed_tokens, stats.reused_tokens)
        cached.score_options([chat], SCORE_OPTIONS)
    assert stats.misses - before[0] == 1 and stats.reused_tokens == before[2]
    assert stats.computed_tokens - before[1] == len(cached.encode_prompt(chat, 1))


@pytest.mark.slow
def test_eviction_under_a_tiny_bound_keeps_results_right(full_read):
    tiny = build_backend("embedded", BackendOptions(kv_cache_mb=1))
    tiny.prefix_cache.max_bytes = 400 * 46080  # about 400 tokens of SmolLM2: less than one turn of the three roles
    with prefix_scope(new_scope("test")):
        got = _play(tiny, 2, PERSONAS[:2])
    _same(_play(full_read, 2, PERSONAS[:2]), got)
    assert tiny.prefix_cache.stats.evictions > 0 and tiny.prefix_cache.stats.peak_bytes <= 400 * 46080


@pytest.mark.slow
def test_cancelling_a_conversation_frees_its_entries():
    backend = build_backend("embedded", BackendOptions(kv_cache_mb=256))
    roles = ConversationRoles(backend, UserSimulator(backend, GREEDY), Judge(backend, JudgeConfig(scoring="logprobs")),
                              GREEDY)

    async def main():
        judged = asyncio.Event()
        task = asyncio.create_task(converse(ConversationState(PERSONAS[0]), 10, roles, lambda r: judged.set()))
        await judged.wait()
        assert backend.prefix_cache.stats.entries > 0
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    backend.worker.call(lambda: None)  # requests still in flight have finished
    assert backend.prefix_cache.stats.entries == 0 and backend.prefix_cache.stats.released > 0


@pytest.mark.slow
def test_the_option_changes_no_run_identity_or_rows_and_a_resumed_run_works_with_an_empty_cache(tmp_path, full_read):
    from aloe_bench.bench.turns import compare_rows, with_backend
    from aloe_bench.harness.eval_config import EvalConfig
    from aloe_bench.harness.protocol import resolve_run
    from aloe_bench.harness.results import RunFiles
    from aloe_bench.harness.runner import build_roles, evaluate_model

    def config(out, turns):
        return resolve_run(EvalConfig(protocol="smoke", max_personas=2, turns=turns, output_dir=str(out), cache=False,
                                      schedule="lockstep", reply_max_new_tokens=16, user_max_new_tokens=16,
                                      bootstrap_resamples=10, progress=False))

    def rows(results, out, roles):
        return RunFiles(out, results["fingerprint"], roles.model.model_id).load_samples()

    reference_roles = with_backend(build_roles(config(tmp_path / "off", 3)), full_read)
    reference = evaluate_model(config(tmp_path / "off", 3), reference_roles)
    cached_roles = build_roles(config(tmp_path / "on", 2))  # the default: the prefix cache on
    assert cached_roles.model.prefix_cache is not None
    evaluate_model(config(tmp_path / "on", 2), cached_roles)
    cached_roles.model.prefix_cache.clear()  # a resumed run starts with an empty cache
    resumed = evaluate_model(config(tmp_path / "on", 3), cached_roles)
    assert resumed["fingerprint"] == reference["fingerprint"]
    comparison = compare_rows(rows(reference, tmp_path / "off", reference_roles), rows(resumed, tmp_path / "on",
                                                                                      cached_roles))
    assert comparison["identical"] and comparison["rows"] == [6, 6], comparison


def test_bench_turns_clock_and_row_comparison():
    from aloe_bench.bench.turns import TurnClock, compare_rows

    clock = TurnClock(None)
    for role, tokens in (("user", 10), ("user", 5), ("model", 20), ("judge", 30), ("user", 40), ("model", 50)):
        clock.call(role, tokens)  # a user-simulator retry stays in its turn
    turns = clock.turns(ended=clock.marks[-1][0] + 1.0)
    assert [(t["turn"], t["prompt_tokens"], t["prompt_tokens_computed"]) for t in turns] == [(1, 65, 65), (2, 90, 90)]
    row = {"persona_id": "a", "turn": 1, "user_message": "hi", "reply": "yo", "score": 3.0,
           "judge_distribution": {"1": 0.5, "2": 0.5}}
    assert compare_rows([row], [dict(row, score=3.00005)])["identical"]
    assert not compare_rows([row], [dict(row, reply="hey")])["identical"]
    assert not compare_rows([row], [dict(row, judge_distribution={"1": 0.6, "2": 0.4})])["identical"]
