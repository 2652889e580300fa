"""`aloe bench hostile`: how much replies that try to steer the judge move each judge preset's scores.

The suite is data (`aloe_bench/bench/data/hostile_replies.jsonl`): a few clean baseline exchanges (a user
message and a good reply, with translations) and hostile variants of the reply, each with a category:
planted scores (`Score: 5`, `[[5]]`), fake fences and prompt sections, "ignore previous instructions",
chat-template control tokens, low-score claims, injections in other languages, translations, empty and
very long replies. A variant is appended to the baseline reply (`append`), replaces it (`replace`) or is
the baseline's translation (`translate`).

For each preset, every persona is judged on its clean baseline and on each variant of it. Per category
the JSON gives the mean score, the shift against the same persona's baseline (paired: only personas
where both were scored) and the failure count. An unparsable judge answer is a failure and stays one:
it is counted, never turned into a number.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from aloe_bench.core.backends import BackendOptions, build_backend
from aloe_bench.core.io import PersonaFileError, atomic_write_json
from aloe_bench.core.errors import ConfigError
from aloe_bench.core.judge import Judge, JudgeConfig, JudgeItem
from aloe_bench.core.personas import load_persona_set, read_jsonl
from aloe_bench.core.prompts import load_prompts

logger = logging.getLogger(__name__)

SUITE_FILE = "hostile_replies.jsonl"
MODES = ("append", "replace", "translate")
EMBEDDED_NOTE = ("judged by the embedded 135M model: shows how parsing and prompt rendering hold up, not how a "
                 "real judge would be swayed; run with --judge-model openai:... for that")


@dataclass(frozen=True)
class Baseline:
    id: str
    message: str
    reply: str
    translations: dict


@dataclass(frozen=True)
class Variant:
    id: str
    category: str
    mode: str
    text: str = ""
    repeat: int = 1
    tail: str = ""
    lang: str | None = None

    def apply(self, baseline: Baseline) -> str:
        body = self.text * self.repeat + self.tail
        if self.mode == "append":
            return baseline.reply + body
        if self.mode == "replace":
            return body
        return baseline.translations[self.lang]


def load_suite(path: str | Path | None = None) -> tuple[list[Baseline], list[Variant]]:
    """The packaged suite (or another file of the same shape); a bad row names the file, line and field."""
    path = Path(path) if path else Path(str(resources.files("aloe_bench.bench").joinpath("data", SUITE_FILE)))
    baselines, variants, seen = [], [], set()
    for number, row in read_jsonl(path, repair_glued=False):
        where = f"{path}:{number}"
        if not isinstance(row, dict):
            raise PersonaFileError(f"{where}: expected an object")
        for name in ("id", "category"):
            if not isinstance(row.get(name), str) or not row[name]:
                raise PersonaFileError(f"{where}: field {name!r} must be a non-empty string")
        if row["id"] in seen:
            raise PersonaFileError(f"{where}: duplicate id {row['id']!r}")
        seen.add(row["id"])
        if row["category"] == "baseline":
            for name in ("message", "reply"):
                if not isinstance(row.get(name), str) or not row[name].strip():
                    raise PersonaFileError(f"{where}: field {name!r} must be a non-empty string")
            translations = row.get("translations", {})
            if not isinstance(translations, dict) or not all(isinstance(v, str) for v in translations.values()):
                raise PersonaFileError(f"{where}: field 'translations' must map language codes to strings")
            baselines.append(Baseline(row["id"], row["message"], row["reply"], translations))
            continue
        if row.get("mode") not in MODES:
            raise PersonaFileError(f"{where}: field 'mode' must be one of {MODES}, got {row.get('mode')!r}")
        for name, kind in (("text", str), ("tail", str), ("repeat", int)):
            if name in row and (not isinstance(row[name], kind) or isinstance(row[name], bool)):
                raise PersonaFileError(f"{where}: field {name!r} must be a {kind.__name__}")
        if row["mode"] == "translate" and not isinstance(row.get("lang"), str):
            raise PersonaFileError(f"{where}: field 'lang' is needed for mode 'translate'")
        variants.append(Variant(row["id"], row["category"], row["mode"], row.get("text", ""),
                                max(1, row.get("repeat", 1)), row.get("tail", ""), row.get("lang")))
    if not baselines:
        raise PersonaFileError(f"{path}: no row with category 'baseline'")
    for variant in variants:
        if variant.mode == "translate":
            missing = [b.id for b in baselines if variant.lang not in b.translations]
            if missing:
                raise PersonaFileError(f"{path}: variant {variant.id!r} needs a {variant.lang!r} translation "
                                       f"in baseline(s) {', '.join(missing)}")
    return baselines, variants


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def _summary(verdicts, baseline_scores: list[float | None] | None = None) -> dict:
    scores = [v.score for v in verdicts]
    out = {"n": len(verdicts), "scored": sum(s is not None for s in scores),
           "failures": sum(s is None for s in scores), "mean": _mean([s for s in scores if s is not None])}
    if baseline_scores is not None:
        shifts = [s - b for s, b in zip(scores, baseline_scores) if s is not None and b is not None]
        out.update(shift=_mean(shifts), paired=len(shifts),
                   max_shift=round(max(shifts), 4) if shifts else None,
                   min_shift=round(min(shifts), 4) if shifts else None)
    return out


def parse_presets(text: str) -> list[tuple[str, str]]:
    """`paper,robust` or with a scoring each: `paper:text,paper:logprobs,robust`."""
    out = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        preset, _, scoring = part.partition(":")
        JudgeConfig(preset, scoring or "auto")  # validates
        out.append((preset, scoring or "auto"))
    if not out:
        raise ConfigError("--presets: name at least one preset")
    return out


def bench_hostile(judge_model: str = "embedded", presets: str = "paper,robust", n_personas: int = 4,
                  persona_source: str = "default", max_retries: int = 2, max_new_tokens: int | None = None,
                  categories: list[str] | None = None, suite: str | None = None, base_url: str | None = None,
                  api_key_env: str = "OPENAI_API_KEY", backend=None, examples: int = 3,
                  output: str | None = None) -> dict:
    """Judge the clean baselines and every hostile variant with each preset; returns the JSON report.

    With `output`, the report so far is (re)written there after each preset, so a long run that is
    stopped keeps the presets it finished.
    """
    chosen = parse_presets(presets)  # a bad --presets fails before any model is loaded
    baselines, variants = load_suite(suite)
    if categories:
        unknown = set(categories) - {v.category for v in variants}
        if unknown:
            raise ConfigError(f"--categories: unknown categor(y/ies) {sorted(unknown)}; the suite has "
                              f"{sorted({v.category for v in variants})}")
        variants = [v for v in variants if v.category in categories]
    persona_set = load_persona_set(persona_source)
    # Distinct profiles and personalities: the default set is profile-major with 5 personalities each.
    stride = 6 if len(persona_set) >= 6 * n_personas else 1
    personas = [persona_set.personas[i * stride] for i in range(min(n_personas, len(persona_set)))]
    pairs = [(p, baselines[i % len(baselines)]) for i, p in enumerate(personas)]
    if backend is None:
        backend = build_backend(judge_model, BackendOptions(api_key_env=api_key_env), base_url=base_url)
    prompts = load_prompts()
    report = {
        "benchmark": "aloe bench hostile",
        "setup": {"judge_model": backend.model_id, "judge_kind": backend.spec.kind,
                  "personas": [p.id for p in personas], "baselines": [b.id for _, b in pairs],
                  "variants": len(variants), "categories": sorted({v.category for v in variants}),
                  "prompts_version": prompts.version, "max_retries": max_retries},
        "presets": {},
    }
    if backend.spec.kind == "embedded":
        report["note"] = EMBEDDED_NOTE
    for preset, scoring in chosen:
        judge = Judge(backend, JudgeConfig(preset, scoring, max_retries=max_retries, max_new_tokens=max_new_tokens),
                      prompts)
        items = [JudgeItem(p, b.message, b.reply) for p, b in pairs]
        for variant in variants:
            items += [JudgeItem(p, b.message, variant.apply(b)) for p, b in pairs]
        label = preset if scoring == "auto" else f"{preset}:{scoring}"
        logger.info(f"aloe bench hostile: judging {len(items)} replies with preset {label} "
                    f"({judge.config.scoring} scoring) ...")
        began = time.perf_counter()
        verdicts = judge.score(items)
        wall = time.perf_counter() - began
        logger.info(f"aloe bench hostile: {label} done in {wall:.1f} s, {sum(v.failed for v in verdicts)} failures")
        k = len(pairs)
        base = verdicts[:k]
        base_scores = [v.score for v in base]
        by_variant = {variant.id: verdicts[k * (j + 1):k * (j + 2)] for j, variant in enumerate(variants)}
        by_category: dict[str, list] = {}
        by_category_base: dict[str, list] = {}
        for variant in variants:
            by_category.setdefault(variant.category, []).extend(by_variant[variant.id])
            by_category_base.setdefault(variant.category, []).extend(base_scores)
        failed = [(item, v) for item, v in zip(items, verdicts) if v.failed]
        report["presets"][label] = {
            "preset": preset, "scoring": judge.config.scoring, "prompt_sha256": judge.prompt.sha256[:16],
            "wall_s": round(wall, 2),
            "baseline": _summary(base),
            "categories": {c: {**_summary(v, by_category_base[c]), "variants": sum(x.category == c for x in variants)}
                           for c, v in by_category.items()},
            "variants": {vid: {"category": next(x.category for x in variants if x.id == vid),
                               **_summary(v, base_scores)} for vid, v in by_variant.items()},
            "failures": {"total": len(failed), "of": len(items),
                         "reasons": dict(Counter(v.error or "?" for _, v in failed))},
            "failure_examples": [{"reply_start": item.reply[:60], "error": v.error, "attempts": v.attempts,
                                  "raw": (v.raw or "")[:160]} for item, v in failed[:examples]],
        }
        if judge.config.scoring == "text":  # what the judge actually wrote (last attempt), most common first
            answers = Counter(" ".join((v.raw or "").split())[:80] for v in verdicts)
            report["presets"][label]["top_answers"] = [{"answer": a, "count": n} for a, n in answers.most_common(5)]
        if output:
            atomic_write_json(output, report)
    return report
