"""Test-only helpers. The fake backends moved to `aloe_bench.testing.backends` (the benchmarks use them too);
`ScriptedBackend` is re-exported so tests that import it from here keep working."""

from aloe_bench.testing.backends import ScriptedBackend

__all__ = ["ScriptedBackend", "assert_append_only"]


def assert_append_only(chain: list[list[dict]], role: str, tokenizer=None) -> None:
    """Each request of `chain` (one conversation's requests of one role, turn by turn) starts with the one before:
    as a message list (what an endpoint is sent) and, with `tokenizer`, as the chat-template text and token ids
    a local model is given (generation prompt included), so a prefix cache reuses the whole earlier request."""
    for before, after in zip(chain, chain[1:]):
        assert len(after) > len(before) and after[:len(before)] == before, role
        if tokenizer is not None:
            texts = [tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True)
                     for m in (before, after)]
            assert texts[1].startswith(texts[0]), role
            ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
            assert ids[1][:len(ids[0])] == ids[0], role
