"""The induction step: which of a persona's facts and traits a conversation has revealed so far.

One request builder and one parser, used by data generation (its preferred responder sees the revealed facts)
and by the Space's "revealed so far" panel, so both ask the same question and read the answer the same way.
"""

from __future__ import annotations

import re

from .judge import format_history
from .personas import Persona
from .prompts import PromptBook

_INDUCED = re.compile(r"^\W*(profile|personality)\W*:\W*?\s*(\w.*|)$", re.IGNORECASE)


def induction_messages(prompts: PromptBook, persona: Persona, history: list[dict]) -> list[dict]:
    """The induction role sees the whole persona and the conversation, and says which parts have been revealed."""
    prompt = prompts["induction"]
    return [{"role": "system", "content": prompt["system"]},
            {"role": "user", "content": prompt.render("user", profile=persona.profile, personality=persona.personality,
                                                      history=format_history(history))}]


def parse_induction(text: str) -> tuple[str, str] | None:
    """`Profile: ...` and `Personality: ...` lines -> (profile facts, personality traits); None if either is missing."""
    found: dict[str, str] = {}
    for line in (text or "").splitlines():
        match = _INDUCED.match(line.strip())
        if match and match.group(1).lower() not in found:
            found[match.group(1).lower()] = match.group(2).strip().strip("<>").strip() or "None"
    if "profile" not in found or "personality" not in found:
        return None
    return found["profile"], found["personality"]


def parse_induction_strict(text: str) -> tuple[str, str, bool] | None:
    """`parse_induction` in the shape the generator stores (the flag says the labels were missing: never here)."""
    parsed = parse_induction(text)
    return None if parsed is None else (*parsed, False)


def parse_induction_lenient(text: str) -> tuple[str, str, bool] | None:
    """Like `parse_induction`, but an answer without the labels becomes the profile facts (flagged `True`)."""
    parsed = parse_induction(text)
    if parsed is not None:
        return (*parsed, False)
    cleaned = re.sub(r"\s+", " ", text or "").strip()
    return (cleaned[:400], "None", True) if cleaned else None
