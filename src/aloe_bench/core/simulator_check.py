"""A check of the simulated user: does the role-play user leak the persona, break its role, reveal the persona a
little at a time, and vary what it writes?

The ALOE protocol assumes the role-play user speaks as the persona without quoting it, reveals the profile over the
turns and never writes as the assistant or about the role-play. This module measures each of those from a run's
user messages: verbatim leaks of the profile or personality (long shared word spans), role breaks (a small rule set,
kept as named data so every flag says which rule fired), the reveal curve (how well the persona is retrieved from
the messages up to turn k among the run's distinct profiles and personalities; the embedding function is passed
in, so this module loads no model), message length and repetition across turns. docs/simulator-check.md describes
the rules and the measures.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from statistics import mean, median
from typing import Callable, Sequence

import numpy as np

MIN_SPAN_WORDS = 8
WHOLESALE_SHARE = 0.5  # a field is stated wholesale when spans of >= MIN_SPAN_WORDS words cover this share of it
REPEAT_NGRAM = 4
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class RoleBreakRule:
    """One named rule: a user message matching `pattern` (case-insensitive) breaks the user's role in `kind` way."""

    name: str
    kind: str  # "assistant_voice", "meta" or "stage_direction"
    pattern: str
    example: str


ROLE_BREAK_RULES: tuple[RoleBreakRule, ...] = (
    RoleBreakRule("as_an_ai", "assistant_voice",
                  r"\bas an? (?:ai|artificial intelligence|language model|assistant|chatbot)\b",
                  "As an AI, I don't have hobbies."),
    RoleBreakRule("offers_help", "assistant_voice",
                  r"\bhow (?:can|may|could) i (?:help|assist)(?: you)?\b|\bi(?:'m| am) here to (?:help|assist)\b",
                  "How can I help you today?"),
    RoleBreakRule("sample_text", "meta",
                  r"\bhere(?: is|'s) (?:a|an|the|my) (?:sample|example|possible|suggested|draft)\b"
                  r"|\bsample (?:text|message|conversation|dialogue|response)\b",
                  "Here is a sample text that could be used for the conversation:"),
    RoleBreakRule("as_the_user", "meta", r"\bas the (?:user|persona|character)\b",
                  "As the user, I would ask about gardening."),
    RoleBreakRule("role_play", "meta", r"\brole[- ]?play(?:ing)?\b|\bmy persona\b|\bthe persona\b",
                  "In this role-play I am a teacher."),
    RoleBreakRule("assistant_replied", "meta", r"\bthe assistant (?:replied|said|responded|wrote)\b",
                  "The assistant replied: sounds fun."),
    RoleBreakRule("asterisk_action", "stage_direction", r"\*[^*\n]{1,80}\*", "*smiles warmly*"),
    RoleBreakRule("bracket_action", "stage_direction", r"\[[^\]\n]{1,80}\]", "[laughs] That's funny."),
    RoleBreakRule("parenthesised_action", "stage_direction",
                  r"\((?:\w+ )?(?:smiles?|laughs?|sighs?|nods?|pauses?|grins?|chuckles?|winks?|shrugs?)\b"
                  r"[^)\n]{0,60}\)",
                  "(smiles) I love that."),
)
_COMPILED = tuple((rule, re.compile(rule.pattern, re.IGNORECASE)) for rule in ROLE_BREAK_RULES)


def words(text: str) -> list[str]:
    """Case- and punctuation-insensitive words (apostrophes dropped, so "I'm" is one word)."""
    return _WORD.findall(text.casefold().replace("'", "").replace("\u2019", ""))


def _ngrams(tokens: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)}


def longest_shared_span(message: list[str], field: list[str]) -> int:
    """The length in words of the longest run of words that `message` and `field` share verbatim."""
    best, previous = 0, [0] * (len(field) + 1)
    for word in message:
        current = [0] * (len(field) + 1)
        for j, other in enumerate(field, 1):
            if word == other:
                current[j] = previous[j - 1] + 1
                best = max(best, current[j])
        previous = current
    return best


def leaks(message: str, fields: dict[str, str], min_words: int = MIN_SPAN_WORDS) -> list[dict]:
    """The leaks of one user message: for each field (profile, personality) it copies a span of `min_words` words or
    more from, `{field, kind: "span"|"wholesale", span_words, covered}`; "wholesale" when the copied spans cover
    `WHOLESALE_SHARE` of the field (a field shorter than `min_words` leaks only when copied whole)."""
    said = words(message)
    found = []
    for name, text in fields.items():
        field = words(text)
        if not field or not said:
            continue
        n = min(min_words, len(field))
        span = longest_shared_span(said, field)
        if span < n:
            continue
        shared = _ngrams(said, n)
        covered = set()
        for i in range(len(field) - n + 1):
            if tuple(field[i:i + n]) in shared:
                covered.update(range(i, i + n))
        share = len(covered) / len(field)
        found.append({"field": name, "kind": "wholesale" if share >= WHOLESALE_SHARE else "span",
                      "span_words": span, "covered": round(share, 3)})
    return found


def role_breaks(message: str) -> list[str]:
    """Names of the role-break rules `message` matches, in `ROLE_BREAK_RULES` order."""
    return [rule.name for rule, pattern in _COMPILED if pattern.search(message)]


def repetition(message: list[str], earlier: set[tuple[str, ...]], n: int = REPEAT_NGRAM) -> float | None:
    """The share of a message's word n-grams its user already wrote earlier (None for a message under n words)."""
    grams = _ngrams(message, n)
    return len(grams & earlier) / len(grams) if grams else None


@dataclass(frozen=True)
class UserMessage:
    """One simulated user message with the persona it was written for."""

    persona_id: str
    turn: int
    text: str
    profile: str
    personality: str


def message_checks(messages: Sequence[UserMessage], min_words: int = MIN_SPAN_WORDS) -> list[dict]:
    """Per message: leaks, role-break rule names, length in words and repetition against the same persona's earlier
    messages (messages are taken in turn order within each persona)."""
    seen: dict[str, set] = defaultdict(set)
    checked = []
    for message in sorted(messages, key=lambda m: (m.persona_id, m.turn)):
        tokens = words(message.text)
        checked.append({"persona_id": message.persona_id, "turn": message.turn,
                        "leaks": leaks(message.text, {"profile": message.profile,
                                                      "personality": message.personality}, min_words),
                        "role_breaks": role_breaks(message.text), "length_words": len(tokens),
                        "repetition": repetition(tokens, seen[message.persona_id])})
        seen[message.persona_id] |= _ngrams(tokens, REPEAT_NGRAM)
    return checked


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return round(float(mean(values)), 4) if values else None


def summarise_checks(checked: list[dict]) -> dict:
    """Counts and rates over checked messages: leaks by field and kind, role breaks by rule, length, repetition."""
    leak_counts = {f"{field}_{kind}": 0 for field in ("profile", "personality") for kind in ("span", "wholesale")}
    rule_counts = {rule.name: 0 for rule in ROLE_BREAK_RULES}
    leaked = broke = 0
    for item in checked:
        leaked += bool(item["leaks"])
        broke += bool(item["role_breaks"])
        for leak in item["leaks"]:
            leak_counts[f"{leak['field']}_{leak['kind']}"] += 1
        for name in item["role_breaks"]:
            rule_counts[name] += 1
    lengths = [item["length_words"] for item in checked]
    return {"messages": len(checked),
            "leaks": {"messages": leaked, "rate": _rate(leaked, len(checked)), **leak_counts},
            "role_breaks": {"messages": broke, "rate": _rate(broke, len(checked)), "rules": rule_counts},
            "length_words": {"mean": _mean(lengths), "median": float(median(lengths)) if lengths else None},
            "repetition": {"mean": _mean([item["repetition"] for item in checked])}}


def chance_levels(candidates: int) -> dict:
    """Top-1 accuracy and MRR of a uniformly random ranking of `candidates` items."""
    if candidates < 1:
        return {"top1": None, "mrr": None}
    return {"top1": round(1 / candidates, 4),
            "mrr": round(sum(1 / r for r in range(1, candidates + 1)) / candidates, 4)}


def reveal_curve(messages: Sequence[UserMessage], field: str, embed: Callable[[list[str]], np.ndarray],
                 turns: int) -> dict:
    """How identifiable `field` ("profile" or "personality") is from each persona's messages up to turn k.

    Every message and every distinct candidate text is embedded on its own (unit vectors); a persona's similarity to
    each candidate at turn k is the mean over its messages of turns <= k; its rank of the true candidate gives top-1
    and reciprocal rank, averaged over the personas with a message by turn k.
    """
    candidates = sorted({getattr(m, field) for m in messages})
    index = {text: i for i, text in enumerate(candidates)}
    curve = {"candidates": len(candidates), "chance": chance_levels(len(candidates)),
             "top1": [None] * turns, "mrr": [None] * turns, "personas": [0] * turns}
    if not messages:
        return curve
    similarity = embed([m.text for m in messages]) @ embed(candidates).T
    by_persona: dict[str, list[int]] = defaultdict(list)
    for i, message in enumerate(messages):
        by_persona[message.persona_id].append(i)
    for k in range(1, turns + 1):
        hits, reciprocal = [], []
        for positions in by_persona.values():
            upto = [i for i in positions if messages[i].turn <= k]
            if not upto:
                continue
            pooled = similarity[upto].mean(axis=0)
            truth = index[getattr(messages[upto[0]], field)]
            rank = 1 + int((pooled > pooled[truth]).sum())
            hits.append(rank == 1)
            reciprocal.append(1 / rank)
        if hits:
            curve["top1"][k - 1] = round(float(np.mean(hits)), 4)
            curve["mrr"][k - 1] = round(float(np.mean(reciprocal)), 4)
            curve["personas"][k - 1] = len(hits)
    return curve


def check_simulator(messages: Sequence[UserMessage], turns: int, embed: Callable[[list[str]], np.ndarray] | None,
                    *, embedder_name: str | None = None, skipped_reason: str | None = None,
                    min_words: int = MIN_SPAN_WORDS) -> tuple[dict, list[dict]]:
    """The simulator block (overall, per turn, and the reveal curve unless `embed` is None) and the per-message checks.

    `skipped_reason` says why the reveal curve is absent when `embed` is None.
    """
    checked = message_checks(messages, min_words)
    block = {"min_span_words": min_words, "rules": [rule.name for rule in ROLE_BREAK_RULES],
             **summarise_checks(checked)}
    block["per_turn"] = [{"turn": k, **summarise_checks([c for c in checked if c["turn"] == k])}
                         for k in range(1, turns + 1)]
    if embed is None:
        block["reveal"] = {"skipped": skipped_reason or "no embedder"}
    else:
        block["reveal"] = {"embedder": embedder_name, "pooling": "mean of per-message cosine similarities",
                           "profile": reveal_curve(messages, "profile", embed, turns),
                           "personality": reveal_curve(messages, "personality", embed, turns)}
    return block, checked


# -- the optional LLM check of role breaks ----------------------------------------------------------------
LLM_CHECK_PROMPT = "role_break_check"


def llm_role_breaks(messages: Sequence[UserMessage], backend, prompt, generation) -> list[dict]:
    """Ask `backend` (a chat backend, built by the caller) whether each message breaks the user's role, with
    `prompt` (the prompt book's `role_break_check`) and `generation` (a GenerationConfig). Per message, in
    `messages` order: `{persona_id, turn, verdict: True|False|None, answer, failure}`; an answer that does not start
    with yes or no, or a backend error, is a recorded failure (verdict None), never a verdict."""
    pattern = re.compile(prompt["answer_pattern"])
    requests = [[{"role": "system", "content": prompt["system"]},
                 {"role": "user", "content": prompt.render("user", message=m.text)}] for m in messages]
    out = []
    for message, completion in zip(messages, backend.generate(requests, generation) if requests else []):
        item = {"persona_id": message.persona_id, "turn": message.turn, "verdict": None,
                "answer": completion.text, "failure": None}
        if not completion.ok:
            item["failure"] = f"backend error: {completion.error}"
        elif (match := pattern.search(completion.text.strip())) is None:
            item["failure"] = f"unparsable answer: {completion.text.strip()[:80]!r}"
        else:
            item["verdict"] = match.group(1).lower() == "yes"
        out.append(item)
    return out


def summarise_llm_checks(answers: list[dict], checked: list[dict]) -> dict:
    """Counts of the LLM's answers (`llm_role_breaks`) beside the rule-based flags of the same messages (`checked`,
    from `message_checks`): breaks, failures, rate over the answered messages, and how the two agree."""
    rules = {(c["persona_id"], c["turn"]): bool(c["role_breaks"]) for c in checked}
    answered = [a for a in answers if a["verdict"] is not None]
    breaks = sum(a["verdict"] for a in answered)
    agreement = {"both": 0, "llm_only": 0, "rules_only": 0, "neither": 0}
    for a in answered:
        by_rules = rules.get((a["persona_id"], a["turn"]), False)
        agreement[("both" if by_rules else "llm_only") if a["verdict"] else
                  ("rules_only" if by_rules else "neither")] += 1
    return {"messages": len(answers), "breaks": breaks, "failures": len(answers) - len(answered),
            "rate": _rate(breaks, len(answered)), "agreement_with_rules": agreement}
