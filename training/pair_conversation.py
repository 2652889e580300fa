"""One conversation of `aloe generate` and the five roles that play each of its turns.

A turn: the role-play user writes; the induction says what the user has revealed so far; a preferred responder
that is told those facts and a rejected responder that is not both answer; one of the two replies, drawn at
random, continues the conversation, and the pair judge (`pair_judge`) records which one suits the persona
better. Every request of turn k is seeded from the run's seed and k, so a resumed run and the request cache see
the same requests whichever schedule plays them.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field, replace

from aloe_bench.core.backends import ChatBackend, Completion, GenerationConfig
from aloe_bench.core.induction import induction_messages, parse_induction_lenient, parse_induction_strict
from aloe_bench.core.judge import auto_scoring
from aloe_bench.core.personas import Persona
from aloe_bench.core.reask import Answer, Reasker

from .generate_config import GenerateConfig
from .pair_judge import LETTERS, letter_parser, pair_judge_request, verdict_from_letter, verdict_from_scores


def responder_messages(prompts, history: list[dict], revealed: list[tuple[str, str]] | None) -> list[dict]:
    """A responder's request: its system message, then the conversation ending on the user's new message.

    The rejected responder (`revealed` None) sees the conversation as it is. The preferred one gets, after each
    user message, a note of the facts revealed up to that message (`revealed`: one (profile, personality) pair
    per user message, oldest first): earlier notes stay as they were, so each turn's request starts with the
    previous turn's (servers with prefix caching reuse it) and the newest note is the induction's latest answer.
    """
    if revealed is None:
        return [{"role": "system", "content": prompts["responder_rejected"]["system"]}, *history]
    prompt = prompts["responder_preferred"]
    users = [i for i, m in enumerate(history) if m["role"] == "user"]
    if len(revealed) != len(users):
        raise ValueError(f"{len(revealed)} revealed-fact notes for {len(users)} user messages")
    note_of = dict(zip(users, revealed))
    messages = [{"role": "system", "content": prompt["system"]}]
    for i, message in enumerate(history):
        if i in note_of:
            profile, personality = note_of[i]
            message = {"role": "user", "content": prompt.render("note", message=message["content"],
                                                                revealed_profile=profile,
                                                                revealed_personality=personality)}
        messages.append(message)
    return messages


def revealed_so_far(conv: PairConversation, latest: tuple[str, str]) -> list[tuple[str, str]]:
    """The revealed facts after each user message of `conv` so far, then `latest` (this turn's induction)."""
    return [(t["revealed_profile"], t["revealed_personality"]) for t in conv.turns] + [latest[:2]]


@dataclass
class PairConversation:
    """One generated conversation: a persona pair's turns, each with a preferred and a rejected reply."""

    index: int
    persona: Persona
    seed: int
    history: list[dict] = field(default_factory=list)
    turns: list[dict] = field(default_factory=list)
    error: str | None = None

    @property
    def id(self) -> str:
        return f"conv-{self.index:05d}"

    def rng(self, turn: int) -> random.Random:
        """The draws of turn `turn` (judge order, continuing reply): the same on every run with this seed."""
        return random.Random(f"{self.seed}:{turn}")

    def ended(self, turns: int) -> bool:
        """Stopped by a failure, or all `turns` played."""
        return self.error is not None or len(self.turns) == turns

    def to_record(self, models: str, prompt_sha256: str) -> dict:
        """The line `conversations.jsonl` keeps for this conversation; `models` and `prompt_sha256` are the run's,
        as JSON text."""
        persona = self.persona
        return {"id": self.id, "persona_id": persona.id,
                "profile_id": persona.profile_id, "personality_id": persona.personality_id,
                "profile": persona.profile, "personality": persona.personality,
                "turns": self.turns, "models": models, "prompt_sha256": prompt_sha256,
                "seed": self.seed, "error": self.error}


class ConversationGenerator:
    """The five roles (one backend each, shared when two roles name the same model) and how a turn uses them.

    `step` plays one turn of a group of conversations with one batched call per role (the lockstep schedule);
    `converse` plays one conversation as its own task, its pair judges beside the next turns (the free schedule).
    Both send the same requests with the same seeds and record the same turns. `failures` counts failed steps
    by role.
    """

    def __init__(self, cfg: GenerateConfig, backends: dict[str, ChatBackend], prompts=None):
        from aloe_bench.core.prompts import load_prompts
        from aloe_bench.core.simulator import UserSimulator

        self.cfg = cfg
        self.backends = backends
        self.prompts = prompts or load_prompts()
        self.user = UserSimulator(backends["user"], GenerationConfig(cfg.user_max_new_tokens, cfg.user_temperature,
                                                                     seed=cfg.seed), self.prompts, cfg.max_retries)
        self.reasker = Reasker(cfg.max_retries, cfg.retry_temperature)
        scoring = cfg.judge_scoring
        if scoring == "auto":
            scoring = auto_scoring(backends["judge"].spec.kind)  # the pair judge's direct prompt answers "A"/"B"
        self.judge_scoring = scoring
        lenient = cfg.induction_parse == "lenient" or (
            cfg.induction_parse == "auto" and backends["induction"].spec.kind == "embedded")
        self.induction_parse = "lenient" if lenient else "strict"
        self._parse_induction = parse_induction_lenient if lenient else parse_induction_strict
        self.judge_prompt = self.prompts["pair_judge_direct" if scoring == "logprobs" else "pair_judge"]
        self._parse_letter = letter_parser(self.judge_prompt)
        self.failures = {"user": 0, "induction": 0, "preferred": 0, "rejected": 0, "judge": 0}

    def _turn_seed(self, turn: int) -> int:
        return self.cfg.seed * 1000 + turn

    def _turn_config(self, max_new_tokens: int, turn: int) -> GenerationConfig:
        """The induction's, the responders' and the judge's settings at turn `turn`."""
        return GenerationConfig(max_new_tokens, self.cfg.temperature, seed=self._turn_seed(turn))

    def _user_config(self, turn: int) -> GenerationConfig:
        return replace(self.user.config, seed=self._turn_seed(turn))

    def _user_ok(self, conv: PairConversation, turn: int, user: Completion) -> bool:
        if not user.ok:
            self.failures["user"] += 1
            conv.error = f"turn {turn}: user simulator: {user.error}"
        return user.ok

    def _induction_ok(self, conv: PairConversation, turn: int, induction: Answer) -> bool:
        if not induction.ok:
            self.failures["induction"] += 1
            last = (induction.raw or "")[:200]
            conv.error = (f"turn {turn}: induction: {induction.error} after {induction.attempts} attempts "
                          f"(last answer: {last!r})")
        return induction.ok

    def _responders_ok(self, conv: PairConversation, turn: int, preferred: Answer, rejected: Answer) -> bool:
        failed = [(name, answer) for name, answer in (("preferred", preferred), ("rejected", rejected))
                  if not answer.ok]
        for name, _ in failed:
            self.failures[name] += 1
        if failed:
            conv.error = "; ".join(f"turn {turn}: {name} responder: {answer.error} after {answer.attempts} attempts"
                                   for name, answer in failed)
        return not failed

    def _record_turn(self, conv: PairConversation, turn: int, message: str, induction: Answer, preferred: str,
                     rejected: str) -> dict:
        """Record the turn (judge fields still empty) and continue with one of the two replies, at random.

        The continuation does not depend on the judge, so the judge can run off the critical path."""
        rng = conv.rng(turn)
        position = rng.choice("AB")
        continued = rng.choice(("preferred", "rejected"))
        profile, personality, unlabelled = induction.value
        record = {
            "turn": turn, "user_message": message, "revealed_profile": profile,
            "revealed_personality": personality, "preferred": preferred, "rejected": rejected,
            "judge_choice": None, "judge_raw": None, "continued_with": continued,
            "preferred_position": position, "error": None,
            "induction_raw": induction.raw, "induction_unlabelled": unlabelled,
            "attempts": {"induction": induction.attempts, "judge": 0},
        }
        conv.turns.append(record)
        reply = preferred if continued == "preferred" else rejected
        conv.history += [{"role": "user", "content": message}, {"role": "assistant", "content": reply}]
        return record

    def _record_verdict(self, record: dict, verdict: Answer) -> None:
        if not verdict.ok:
            self.failures["judge"] += 1
        record.update(judge_choice=verdict.value, judge_raw=verdict.raw,
                      attempts={**record["attempts"], "judge": verdict.attempts},
                      error=None if verdict.ok else f"pair judge: {verdict.error} after {verdict.attempts} attempts")

    def step(self, group: list[PairConversation], turn: int) -> None:
        """Advance every live conversation of `group` by one turn (one batched call per role: lockstep)."""
        live = [c for c in group if c.error is None and len(c.turns) == turn - 1]
        if not live:
            return
        users = self.user.next_messages([c.persona for c in live], [c.history for c in live], self._user_config(turn))
        speaking = [(conv, user.text) for conv, user in zip(live, users) if self._user_ok(conv, turn, user)]
        if not speaking:
            return
        asked = [conv.history + [{"role": "user", "content": message}] for conv, message in speaking]
        induced = self.reasker.ask(self.backends["induction"],
                                   [induction_messages(self.prompts, conv.persona, history)
                                    for (conv, _), history in zip(speaking, asked)],
                                   self._turn_config(self.cfg.induction_max_new_tokens, turn), self._parse_induction)
        ready = [(conv, message, history, induction)
                 for (conv, message), history, induction in zip(speaking, asked, induced)
                 if self._induction_ok(conv, turn, induction)]
        reply_config = self._turn_config(self.cfg.reply_max_new_tokens, turn)
        preferred = self.reasker.ask(self.backends["preferred"],
                                     [responder_messages(self.prompts, history, revealed_so_far(conv, induction.value))
                                      for conv, _, history, induction in ready], reply_config)
        rejected = self.reasker.ask(self.backends["rejected"],
                                    [responder_messages(self.prompts, history, None) for _, _, history, _ in ready],
                                    reply_config)
        records = [(conv, self._record_turn(conv, turn, message, induction, pref.value, rej.value))
                   for (conv, message, _, induction), pref, rej in zip(ready, preferred, rejected)
                   if self._responders_ok(conv, turn, pref, rej)]
        for (_, record), verdict in zip(records, self._judge_batch(records, turn)):
            self._record_verdict(record, verdict)

    def _judge_batch(self, records: list[tuple[PairConversation, dict]], turn: int) -> list[Answer]:
        """The pair judge's verdict on each recorded turn, in one batch: "preferred"/"rejected" (or an error)."""
        if not records:
            return []
        asks = [pair_judge_request(self.judge_prompt, conv.persona, record) for conv, record in records]
        requests = [messages for messages, _ in asks]
        if self.judge_scoring == "logprobs":
            scores = self.backends["judge"].score_options(requests, LETTERS)
            return [verdict_from_scores(reply_of, s) for (_, reply_of), s in zip(asks, scores)]
        answers = self.reasker.ask(self.backends["judge"], requests,
                                   self._turn_config(self.cfg.judge_max_new_tokens, turn), self._parse_letter)
        return [verdict_from_letter(reply_of, answer) for (_, reply_of), answer in zip(asks, answers)]

    async def _judge_one(self, conv: PairConversation, record: dict) -> None:
        """`_judge_batch` for one turn, awaitable; the verdict goes into `record`."""
        request, reply_of = pair_judge_request(self.judge_prompt, conv.persona, record)
        if self.judge_scoring == "logprobs":
            verdict = verdict_from_scores(reply_of, await self.backends["judge"].ascore_options(request, LETTERS))
        else:
            answer = await self.reasker.aask(self.backends["judge"], request,
                                             self._turn_config(self.cfg.judge_max_new_tokens, record["turn"]),
                                             self._parse_letter)
            verdict = verdict_from_letter(reply_of, answer)
        self._record_verdict(record, verdict)

    async def converse(self, conv: PairConversation, turns: int) -> None:
        """One conversation as its own task (the free schedule): the same requests, seeds and records as
        `step`, one request at a time; each turn's pair judge runs alongside the next turn."""
        judges: list[asyncio.Task] = []
        try:
            for turn in range(len(conv.turns) + 1, turns + 1):
                if conv.error is not None:
                    break
                user = await self.user.anext_message(conv.persona, conv.history, self._user_config(turn))
                if not self._user_ok(conv, turn, user):
                    break
                history = conv.history + [{"role": "user", "content": user.text}]
                induction = await self.reasker.aask(self.backends["induction"],
                                                    induction_messages(self.prompts, conv.persona, history),
                                                    self._turn_config(self.cfg.induction_max_new_tokens, turn),
                                                    self._parse_induction)
                if not self._induction_ok(conv, turn, induction):
                    break
                reply_config = self._turn_config(self.cfg.reply_max_new_tokens, turn)
                preferred, rejected = await asyncio.gather(
                    self.reasker.aask(self.backends["preferred"], responder_messages(
                        self.prompts, history, revealed_so_far(conv, induction.value)), reply_config),
                    self.reasker.aask(self.backends["rejected"], responder_messages(self.prompts, history, None),
                                      reply_config))
                if not self._responders_ok(conv, turn, preferred, rejected):
                    break
                record = self._record_turn(conv, turn, user.text, induction, preferred.value, rejected.value)
                judges.append(asyncio.create_task(self._judge_one(conv, record)))
            await asyncio.gather(*judges)
        except BaseException:
            for task in judges:
                task.cancel()
            raise
