"""Win rate of a round's policy over the previous round's, on the conversation states of this round's eval run.

The previous policy answers every state the round's eval run reached (the same history and user message the new
policy answered, greedy, the eval's reply length); the pair judge of `aloe generate` (`pair_judge`) sees the two
replies in both orders. Two verdicts naming the same reply are a win or a loss; verdicts that disagree (a judge that
prefers a position) are ties; a failed verdict is counted as a failure and left out, never scored. The rate is
(wins + ties / 2) / judged, with the counts beside it.
"""

from __future__ import annotations

from pathlib import Path

from aloe_bench.core.io import atomic_write_json, read_json, read_jsonl

WIN_RATE_FILE = "win_rate.json"


def eval_states(results: dict, eval_folder: str | Path) -> list[dict]:
    """Every answered turn of an eval run: persona id, turn, the history before it, the user message and the reply."""
    samples = Path(eval_folder) / results["files"]["samples"]
    rows = sorted((value for _, value in read_jsonl(samples, log=True)), key=lambda r: (r["persona_id"], r["turn"]))
    states, history = [], {}
    for row in rows:
        if row.get("user_message") is None or row.get("reply") is None:
            continue
        before = history.setdefault(row["persona_id"], [])
        states.append({"persona_id": row["persona_id"], "turn": row["turn"], "history": list(before),
                       "user_message": row["user_message"], "reply": row["reply"]})
        before += [{"role": "user", "content": row["user_message"]}, {"role": "assistant", "content": row["reply"]}]
    return states


def pair_verdicts(judge_backend, persona_of: dict, states: list[dict], previous: list[str | None],
                  max_new_tokens: int = 128, seed: int = 0) -> list[dict]:
    """The pair judge's verdict on each state's (current, previous) replies, asked in both orders.

    Each verdict is {"winner": "current" | "previous" | None, "order_tie": bool, "error": str | None}; a judge that
    writes its letter gets `max_new_tokens` (as `aloe generate`'s judge_max_new_tokens) to think first.
    """
    from aloe_bench.core.backends import GenerationConfig
    from aloe_bench.core.judge import auto_scoring
    from aloe_bench.core.prompts import load_prompts
    from aloe_bench.core.reask import Answer, Reasker

    from .pair_judge import (LETTERS, letter_parser, pair_judge_messages, two_order_verdict, verdict_from_letter,
                             verdict_from_scores)

    scoring = auto_scoring(judge_backend.spec.kind)
    prompt = load_prompts()["pair_judge_direct" if scoring == "logprobs" else "pair_judge"]
    asks, where = [], []
    for n, (state, old) in enumerate(zip(states, previous)):
        if old is None:
            continue
        persona = persona_of[state["persona_id"]]
        for swapped in (False, True):
            first, second = ("previous", "current") if swapped else ("current", "previous")
            replies = {"current": state["reply"], "previous": old}
            messages = pair_judge_messages(prompt, persona, state["user_message"], replies[first], replies[second])
            asks.append((messages, {"A": first, "B": second}))
            where.append(n)
    if scoring == "logprobs":
        scores = judge_backend.score_options([m for m, _ in asks], LETTERS)
        answers = [verdict_from_scores(reply_of, s) for (_, reply_of), s in zip(asks, scores)]
    else:
        raw = Reasker().ask(judge_backend, [m for m, _ in asks],
                            GenerationConfig(max_new_tokens, 0.0, seed=seed), letter_parser(prompt))
        answers = [verdict_from_letter(reply_of, a) for (_, reply_of), a in zip(asks, raw)]
    out = [{"winner": None, "order_tie": False, "error": "the previous policy gave no reply"} for _ in states]
    for i in range(0, len(answers), 2):
        fields = two_order_verdict(answers[i], answers[i + 1])
        out[where[i]] = {"winner": fields["judge_choice"], "order_tie": fields["order_tie"], "error": fields["error"]}
    return out


def count_wins(verdicts: list[dict]) -> dict:
    """Wins, losses, ties (order disagreements) and failures; the rate (wins + ties / 2) / judged, None if none."""
    wins = sum(v["winner"] == "current" for v in verdicts)
    losses = sum(v["winner"] == "previous" for v in verdicts)
    ties = sum(v["order_tie"] for v in verdicts)
    judged = wins + losses + ties
    return {"wins": wins, "losses": losses, "ties": ties, "failures": len(verdicts) - judged, "judged": judged,
            "win_rate": (wins + ties / 2) / judged if judged else None}


def win_rate_over_previous(folder: Path, results: dict, eval_folder: Path, previous_backend, judge_backend,
                           personas, max_new_tokens: int, seed: int) -> dict:
    """Compute (or read back) the round's win rate over the previous policy; the verdicts go to `win_rate.json`."""
    from aloe_bench.core.backends import GenerationConfig

    path = Path(folder) / WIN_RATE_FILE
    if path.exists():
        return read_json(path)["summary"]
    states = eval_states(results, eval_folder)
    replies = previous_backend.generate([s["history"] + [{"role": "user", "content": s["user_message"]}]
                                         for s in states], GenerationConfig(max_new_tokens, 0.0, seed=seed))
    previous = [c.text if c.ok else None for c in replies]
    verdicts = pair_verdicts(judge_backend, {p.id: p for p in personas}, states, previous, seed=seed)
    summary = count_wins(verdicts)
    atomic_write_json(path, {"summary": summary, "states": [
        {**s, "previous_reply": old, **v} for s, old, v in zip(states, previous, verdicts)]})
    return summary
