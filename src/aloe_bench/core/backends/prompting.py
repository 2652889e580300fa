"""Prompts for local engines: the model's own chat template, left-truncated by whole turns to fit the context."""

from __future__ import annotations

from .base import Messages


class ChatTemplatePrompts:
    """Mixin for backends that tokenise prompts themselves; needs `tokenizer`, `max_context`, `_tokenizer_lock`."""

    def _render(self, messages: Messages) -> list[int]:
        with self._tokenizer_lock:
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def encode_prompt(self, messages: Messages, reserve: int) -> list[int]:
        """Token ids for `messages` plus the generation prompt, left-truncated to fit the context.

        Whole old turns are dropped first (keeping any system message) so the template stays intact;
        only a single over-long message is cut token-wise from the left.
        """
        budget = max(self.max_context - reserve, 1)
        ids = self._render(messages)
        if len(ids) <= budget:
            return ids
        head = [m for m in messages[:1] if m["role"] == "system"]
        body = list(messages[len(head):])
        while len(body) > 1 and len(ids) > budget:
            body = body[2:] if len(body) > 2 else body[1:]
            ids = self._render(head + body)
        return ids[-budget:] if len(ids) > budget else ids

    def option_token_ids(self, options: list[str]) -> list[int]:
        """The single token id of each option; an option that is not one token is the caller's error."""
        from .base import BackendError

        ids = []
        for option in options:
            with self._tokenizer_lock:
                encoded = self.tokenizer.encode(option, add_special_tokens=False)
            if len(encoded) != 1:
                raise BackendError(f"option {option!r} is {len(encoded)} tokens for {self.model_id}; need exactly 1")
            ids.append(encoded[0])
        return ids
