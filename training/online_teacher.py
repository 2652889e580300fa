"""The optional teacher candidate of `aloe train online`: `aloe generate`'s preferred responder adds one reply a turn.

At each rollout turn the teacher's model first says what the user has revealed so far (the induction of
`aloe generate`, shown the whole persona and the conversation), then answers as the preferred responder, with a
note of the revealed facts after each user message (`pair_conversation.responder_messages`). Its reply is judged
like the policy's candidates and marked `source: teacher` in the rollout row; it may be a DPO pair's chosen reply,
never its rejected one (the rejected reply is always the policy's own).
"""

from __future__ import annotations

TEACHER = "teacher"
POLICY = "policy"


class Teacher:
    """The teacher's backend (it also plays the induction), the prompts, and its reply settings."""

    def __init__(self, backend, max_new_tokens: int, seed: int = 0, induction_max_new_tokens: int = 96):
        from aloe_bench.core.induction import parse_induction_lenient, parse_induction_strict
        from aloe_bench.core.prompts import load_prompts
        from aloe_bench.core.reask import Reasker

        self.backend = backend
        self.prompts = load_prompts()
        self.reasker = Reasker()
        self.max_new_tokens = max_new_tokens
        self.induction_max_new_tokens = induction_max_new_tokens
        self.seed = seed
        # as `aloe generate`'s induction_parse auto: the embedded model rarely writes the labels
        self.parse = parse_induction_lenient if backend.spec.kind == "embedded" else parse_induction_strict

    def replies(self, personas, histories: list[list[dict]], messages: list[str],
                revealed_before: list[list[tuple[str, str]]], turn: int, round_no: int) -> list[dict]:
        """One teacher candidate per conversation: {"reply", "error", "revealed"} (reply None when a step failed)."""
        from aloe_bench.core.backends import GenerationConfig
        from aloe_bench.core.induction import induction_messages

        from .pair_conversation import responder_messages

        config = GenerationConfig(self.induction_max_new_tokens, 0.0, seed=self.seed + 100_000 * round_no + turn)
        asked = [h + [{"role": "user", "content": m}] for h, m in zip(histories, messages)]
        induced = self.reasker.ask(self.backend, [induction_messages(self.prompts, p, h)
                                                  for p, h in zip(personas, asked)], config, self.parse)
        out, requests, where = [], [], []
        for n, (answer, history, before) in enumerate(zip(induced, asked, revealed_before)):
            if not answer.ok:
                out.append({"reply": None, "error": f"teacher induction: {answer.error}", "revealed": None})
                continue
            revealed = list(answer.value[:2])
            out.append({"reply": None, "error": None, "revealed": revealed})
            requests.append(responder_messages(self.prompts, history, [*before, tuple(revealed)]))
            where.append(n)
        reply_config = GenerationConfig(self.max_new_tokens, 0.0, seed=self.seed + 100_000 * round_no + turn)
        for n, answer in zip(where, self.reasker.ask(self.backend, requests, reply_config) if requests else []):
            out[n].update(reply=answer.value if answer.ok else None,
                          error=None if answer.ok else f"teacher: {answer.error}")
        return out
