"""Scripted backends for fast unit tests of the loop logic (no model involved)."""

from __future__ import annotations

from aloe_bench.core.backends.base import ChatBackend, Completion, OptionScores
from aloe_bench.core.specs import ModelSpec


class ScriptedBackend(ChatBackend):
    """Answers from a list of texts (cycled), or from a function of the messages; records every call."""

    def __init__(self, answers=None, fn=None, options=None, kind="hf"):
        super().__init__(ModelSpec(kind, "fake/model"))
        self.answers = list(answers or [])
        self.fn = fn
        self.options = options
        self.calls: list[tuple[list, object]] = []

    def _generate_batch(self, conversations, config):
        self.calls.append((conversations, config))
        out = []
        for messages in conversations:
            if self.fn is not None:
                text = self.fn(messages, config)
            else:
                text = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
            if isinstance(text, Exception):
                out.append(Completion(None, error=str(text)))
            else:
                out.append(Completion(text, tokens=len(text.split())))
        return out

    def _score_options_batch(self, conversations, options):
        self.calls.append((conversations, options))
        if self.options is None:
            return [OptionScores(error="no distribution") for _ in conversations]
        return [OptionScores(probs=dict(self.options), mass=1.0) for _ in conversations]


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
