"""The pair judge of `aloe generate`: which of a turn's two replies suits the whole persona better.

The judge sees both replies as A and B, in the random order the turn recorded (`preferred_position`), so neither
side gains from coming first; its letter (a `[[A]]`/`[[B]]` answer, or the likelier of the two letters as the
first token) is mapped back to "preferred" or "rejected".
"""

from __future__ import annotations

import json
import re
from dataclasses import replace

from aloe_bench.core.backends import OptionScores
from aloe_bench.core.personas import Persona
from aloe_bench.core.reask import Answer

LETTERS = ["A", "B"]


def pair_judge_messages(prompt, persona: Persona, message: str, reply_a: str, reply_b: str) -> list[dict]:
    """The judge's request: the full persona, the user's message, and the two replies as A and B."""
    values = dict(profile=persona.profile, personality=persona.personality, message=message,
                  reply_a=reply_a, reply_b=reply_b)
    return [{"role": "system", "content": prompt["system"]}, {"role": "user", "content": prompt.render("user", **values)}]


def pair_judge_request(prompt, persona: Persona, turn: dict) -> tuple[list[dict], dict[str, str]]:
    """The judge's request for a recorded turn, and which reply each letter stands for."""
    preferred_first = turn["preferred_position"] == "A"
    first, second = ("preferred", "rejected") if preferred_first else ("rejected", "preferred")
    messages = pair_judge_messages(prompt, persona, turn["user_message"], turn[first], turn[second])
    return messages, {"A": first, "B": second}


def verdict_from_scores(reply_of: dict[str, str], scores: OptionScores) -> Answer:
    """The verdict of a judge scored by the probability of each letter (a tie is a failure, not a coin flip)."""
    if scores.error:
        return Answer(None, None, 1, f"backend: {scores.error}")
    if scores.probs["A"] == scores.probs["B"]:
        return Answer(None, json.dumps(scores.probs), 1, "tie between A and B")
    letter = "A" if scores.probs["A"] > scores.probs["B"] else "B"
    return Answer(reply_of[letter], json.dumps({"probs": scores.probs, "mass": scores.mass}), 1, None)


def verdict_from_letter(reply_of: dict[str, str], answer: Answer) -> Answer:
    """The verdict of a judge that wrote its letter: `answer` with the letter mapped to the reply it names."""
    return answer if answer.value is None else replace(answer, value=reply_of[answer.value])


def letter_parser(prompt):
    """A parser of the judge's written answer: its last `score_pattern` match (the letter), or None."""
    def parse(text: str) -> str | None:
        found = re.findall(prompt["score_pattern"], text or "")
        return found[-1] if found else None

    return parse
