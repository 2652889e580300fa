"""A jury: several judges (and/or one judge asked several times) scoring the same reply, one verdict out.

Each member is a `Judge` with its own backend and preset; with `samples` N > 1 each member is asked N times,
sample k with the seed `seed + SAMPLE_SEED_STEP * k` (sample 0 is the request a lone judge sends, so its cache
entry is shared). Every answer becomes one record of the row's `judges` list (member, sample, seed, score,
criteria, error, raw answer, attempts), kept whether it parsed or not. The row's score:

- a member's score is the mean of its samples that parsed (None when none did);
- the jury's score is the mean (or median, `aggregate`) of the members' scores that are not None;
- when no member has a score the row is a judge failure (score None, the members' errors joined), never a number.

With criteria judges in the jury, each criterion's score is the mean over the records that scored it, so
`AL_style` / `AL_content` / `AL_human` stay defined for a mixed jury (the criteria members' view).
"""

from __future__ import annotations

import asyncio
import statistics
from dataclasses import dataclass, replace

from .errors import ConfigError
from .judge import CRITERIA, Judge, JudgeItem, Verdict

AGGREGATES = ("mean", "median")
#: seed offset between two samples of a member (a prime far from the re-ask step `reask.RESEED_STEP`, 7919)
SAMPLE_SEED_STEP = 104729


def sample_seed(seed: int, sample: int) -> int:
    return seed + SAMPLE_SEED_STEP * sample


def check_samples(samples: int, config, who: str) -> None:
    """Refuse `samples` > 1 where every sample would be the same answer: a judge read from probabilities (one
    distribution per prompt) or a greedy one (temperature 0). `config` is a resolved `JudgeConfig`."""
    if samples < 1:
        raise ConfigError(f"judge_samples must be >= 1, got {samples}")
    if samples == 1:
        return
    if config.scoring == "logprobs":
        raise ConfigError(f"judge_samples {samples}: {who} scores from probabilities (logprobs), which gives the same "
                          f"distribution every time; use judge_samples 1, or judge_scoring text with a temperature > 0")
    if config.temperature is not None and config.temperature <= 0:
        raise ConfigError(f"judge_samples {samples}: {who} is greedy (judge_temperature 0) and would repeat one answer; "
                          f"set judge_temperature > 0")


def aggregate(values: list[float], how: str) -> float | None:
    if not values:
        return None
    return round(float(statistics.median(values) if how == "median" else statistics.fmean(values)), 6)


@dataclass(frozen=True)
class Member:
    """One judge of a jury: its 1-based place, the spec it was named by, and the judge itself."""

    index: int
    spec: str
    judge: Judge

    @property
    def label(self) -> str:
        return self.judge.label


class Jury:
    """Several `Member`s (or one asked `samples` times) behind the `Judge` interface the eval loop calls."""

    def __init__(self, members: list[Member], aggregate: str = "mean", samples: int = 1):
        if aggregate not in AGGREGATES:
            raise ConfigError(f"jury_aggregate {aggregate!r}: choose one of {', '.join(AGGREGATES)}")
        if not members:
            raise ConfigError("a jury needs at least one judge")
        for member in members:
            check_samples(samples, member.judge.config, f"judge {member.index} ({member.label})")
        self.members = list(members)
        self.aggregate = aggregate
        self.samples = samples
        # (member, sample, seed, judge asked with that seed)
        self._askers = [(m, k, sample_seed(m.judge.config.seed, k),
                         m.judge if k == 0 else Judge(m.judge.backend, replace(m.judge.config,
                                                                               seed=sample_seed(m.judge.config.seed, k)),
                                                      m.judge.prompts))
                        for m in self.members for k in range(samples)]

    # -- what the loop and the results read of a judge --------------------------------------------------------
    @property
    def backend(self):
        """The first member's backend (what a reader expecting one judge sees); `backends()` lists them all."""
        return self.members[0].judge.backend

    @property
    def config(self):
        return self.members[0].judge.config

    @property
    def prompts(self):
        return self.members[0].judge.prompts

    def backends(self) -> list:
        return list({id(m.judge.backend): m.judge.backend for m in self.members}.values())

    @property
    def prompt_names(self) -> list[str]:
        return list(dict.fromkeys(m.judge.config.prompt_name for m in self.members))

    @property
    def label(self) -> str:
        names = "; ".join(m.label for m in self.members)
        repeat = f" x{self.samples}" if self.samples > 1 else ""
        return f"jury {self.aggregate} of {len(self.members)}{repeat}: {names}"

    @property
    def is_embedded(self) -> bool:
        return any(m.judge.backend.spec.kind == "embedded" for m in self.members)

    def describe(self) -> dict:
        return {"aggregate": self.aggregate, "samples": self.samples,
                "members": [{"spec": m.spec, **m.judge.describe()} for m in self.members]}

    def with_backends(self, wrap) -> "Jury":
        """The same jury with every member's backend wrapped (`wrap(backend)`, e.g. the request cache); a backend
        shared by two members stays shared."""
        wrapped: dict[int, object] = {}
        members = []
        for m in self.members:
            backend = wrapped.setdefault(id(m.judge.backend), wrap(m.judge.backend))
            members.append(replace(m, judge=Judge(backend, m.judge.config, m.judge.prompts)))
        return Jury(members, self.aggregate, self.samples)

    # -- scoring ------------------------------------------------------------------------------------------------
    def score(self, items: list[JudgeItem]) -> list[Verdict]:
        if not items:
            return []
        per_asker = [judge.score(items) for _, _, _, judge in self._askers]
        return [self.verdict([verdicts[i] for verdicts in per_asker]) for i in range(len(items))]

    async def ascore(self, item: JudgeItem) -> Verdict:
        verdicts = await asyncio.gather(*(judge.ascore(item) for _, _, _, judge in self._askers))
        return self.verdict(list(verdicts))

    def verdict(self, verdicts: list[Verdict]) -> Verdict:
        """One verdict from the askers' verdicts (in `_askers` order)."""
        records = [record(m.index, m.label, m.spec, m.judge.config, k, seed, v)
                   for (m, k, seed, _), v in zip(self._askers, verdicts)]
        return jury_verdict(records, self.aggregate, latency_s=max(v.latency_s for v in verdicts),
                            tokens=sum(v.tokens for v in verdicts))


def record(index: int, name: str, spec: str, config, sample: int, seed: int, verdict: Verdict) -> dict:
    """One judge's answer as a row's `judges` record (the results dataset types every key)."""
    return {"judge": index, "name": name, "spec": spec, "preset": config.preset, "scoring": config.scoring,
            "sample": sample, "seed": seed, "score": verdict.score,
            "criteria": None if verdict.criteria is None else {c: verdict.criteria.get(c) for c in CRITERIA},
            "error": verdict.error, "raw": verdict.raw, "distribution": verdict.distribution,
            "attempts": verdict.attempts}


def member_scores(records: list[dict]) -> dict[int, float | None]:
    """Each member's score in `records`: the mean of its samples that parsed (None when none did)."""
    out: dict[int, list[float]] = {}
    for r in records:
        out.setdefault(r["judge"], [])
        if r.get("score") is not None:
            out[r["judge"]].append(float(r["score"]))
    return {j: (round(statistics.fmean(v), 6) if v else None) for j, v in out.items()}


def jury_verdict(records: list[dict], how: str, latency_s: float = 0.0, tokens: int = 0) -> Verdict:
    """The row's verdict from its `judges` records (see the module's rule); errors are recorded, never scored."""
    scores = [s for s in member_scores(records).values() if s is not None]
    overall = aggregate(scores, how)
    error = None
    if overall is None:
        error = "all judges failed: " + "; ".join(f"judge {r['judge']}" + (f" sample {r['sample']}" if r["sample"] else "")
                                                  + f": {r.get('error') or 'no score'}" for r in records)
    criteria = criteria_errors = None
    with_criteria = [r["criteria"] for r in records if r.get("criteria") is not None]
    if with_criteria:
        criteria, criteria_errors = {}, {}
        for name in CRITERIA:
            values = [float(c[name]) for c in with_criteria if c.get(name) is not None]
            criteria[name] = round(statistics.fmean(values), 6) if values else None
            criteria_errors[name] = None if values else f"{name}: no judge scored it"
    return Verdict(overall, attempts=sum(int(r.get("attempts") or 0) for r in records), error=error,
                   latency_s=latency_s, tokens=tokens, criteria=criteria, criteria_errors=criteria_errors,
                   judges=records)
