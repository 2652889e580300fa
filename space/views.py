"""What the page shows of a session: chats with score badges, the score curve with its trend, a summary line.

Derived from a `Lane` each time, never stored; the running IR is the ALOE metric of this single conversation.
"""

from __future__ import annotations

from aloe_bench.core.metrics import aloe_metrics

from .session import Lane, Turn


def running_metrics(scores: list[float | None]) -> dict | None:
    """ALOE metrics of this single conversation's curve; None until every turn so far has a score (>= 2)."""
    if len(scores) < 2 or any(s is None for s in scores):
        return None
    return aloe_metrics(scores)


def trend_line(scores: list[float | None]) -> list[float] | None:
    """The least-squares line behind IR at turns 1..K (flat at the score for one turn); None with gaps."""
    if not scores or any(s is None for s in scores):
        return None
    if len(scores) == 1:
        return [float(scores[0])]
    metrics = aloe_metrics(scores)
    mean_turn = (len(scores) + 1) / 2
    return [metrics["AL_avg"] + metrics["IR"] * (k - mean_turn) for k in range(1, len(scores) + 1)]


def score_badge(turn: Turn) -> str:
    if turn.judge == "scored":
        return f"judge {turn.score:.2f} / 5"
    if turn.judge == "failed":
        return f"judge failed: {turn.judge_error}"
    return "judge: scoring..."


def chat_messages(lane: Lane) -> list[dict]:
    """Chatbot messages: each reply carries its score (or that it is pending) beside it."""
    messages = []
    for turn in lane.turns:
        messages.append({"role": "user", "content": turn.user})
        if turn.reply:
            messages.append({"role": "assistant", "content": f"{turn.reply}\n\n`{score_badge(turn)}`"})
    return messages


def curve_rows(lane: Lane) -> list[dict]:
    """Plot rows (turn, value, series): the scores and their trend line, both present from turn 1 on."""
    scores = lane.scores()
    scored = [(k, s) for k, s in enumerate(scores, 1) if s is not None]
    rows = [{"turn": k, "value": s, "series": "score"} for k, s in scored]
    trend = trend_line(scores)
    if trend is not None:
        rows += [{"turn": k, "value": v, "series": "trend"} for k, v in enumerate(trend, 1)]
    return rows


def lane_summary(lane: Lane) -> str:
    """One line per lane: the scores so far and the running IR of this conversation."""
    scores = lane.scores()
    shown = ", ".join("…" if t.judge == "pending" else ("×" if t.score is None else f"{t.score:.2f}")
                      for t in lane.turns) or "none yet"
    metrics = running_metrics(scores)
    if metrics is None:
        why = "needs 2 scored turns" if all(s is not None for s in scores) else "a turn has no score"
        ir = f"running IR: — ({why})"
    else:
        n_ir = "—" if metrics["N_IR"] is None else f"{metrics['N_IR']:+.3f}"
        ir = f"running IR: {metrics['IR']:+.3f} · N-IR: {n_ir} · AL avg: {metrics['AL_avg']:.2f}"
    return f"**{lane.model}** · scores by turn: {shown} · {ir}"

