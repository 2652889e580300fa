"""The persona picker: the sets offered, a persona by label or at random, one written by hand, and its card."""

from __future__ import annotations

import random

from aloe_bench.core.personas import Persona, PersonaSet, combine, load_persona_set, packaged_data, read_pool

from .errors import SpaceError


def persona_sets(extra_source: str | None = None) -> dict[str, PersonaSet]:
    """The persona sets offered in the picker: the packaged eval set, the seed pools, and an optional extra one."""
    sets = {"eval (20 profiles x 5 personalities)": load_persona_set("default")}
    seeds = combine(read_pool(packaged_data("seed_profiles.jsonl"), "profile"),
                    read_pool(packaged_data("seed_personalities.jsonl"), "personality"), max_personalities=5)
    sets["seed pools (24 profiles x 5 personalities)"] = PersonaSet("seed", tuple(seeds), "seed")
    if extra_source and extra_source != "default":
        extra = load_persona_set(extra_source)
        sets[f"{extra.name} ({len(extra)} personas)"] = extra
    return sets


def persona_label(persona: Persona) -> str:
    head = persona.profile if len(persona.profile) <= 70 else persona.profile[:67] + "..."
    return f"{persona.id}: {head}"


def find_persona(persona_set: PersonaSet, label: str) -> Persona:
    for persona in persona_set:
        if persona_label(persona) == label or persona.id == label:
            return persona
    raise SpaceError(f"no persona {label!r} in the set {persona_set.name!r}")


def random_persona(persona_set: PersonaSet, rng: random.Random | None = None) -> Persona:
    return (rng or random).choice(persona_set.personas)


def custom_persona(profile: str, personality: str, max_chars: int) -> Persona:
    """A persona written by hand; both parts are required and bounded like any other input."""
    profile, personality = (profile or "").strip(), (personality or "").strip()
    if not profile or not personality:
        raise SpaceError("write both a profile (who the user is) and a personality (how they talk)")
    for name, text in (("profile", profile), ("personality", personality)):
        if len(text) > max_chars:
            raise SpaceError(f"the {name} has {len(text)} characters; the limit is {max_chars}")
    return Persona("custom", profile, personality, "custom", "custom")


def persona_markdown(persona: Persona | None) -> str:
    if persona is None:
        return "*No persona chosen yet: pick one, draw one at random, or write your own.*"
    return f"**Profile** ({persona.profile_id or persona.id}): {persona.profile}\n\n" \
           f"**Personality** ({persona.personality_id or persona.id}): {persona.personality}"
