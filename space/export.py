"""The Export button's file: one session's conversation with its scores, as JSON, secrets scrubbed."""

from __future__ import annotations

import time

from .redact import scrub
from .roles import SpaceRoles
from .session import ChatSession
from .views import running_metrics


def export(session: ChatSession, roles: SpaceRoles | None = None) -> dict:
    """The conversation with scores, as a JSON-ready dict (what the Export button saves); secrets scrubbed."""
    with session.lock:
        return scrub({
            "format": "aloe-bench-space-conversation/1",
            "exported": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "persona": None if session.persona is None else session.persona.to_dict(),
            "judge": None if roles is None else {"model": roles.config.judge_model, "preset": roles.config.judge_preset},
            "revealed": {"text": session.revealed, "after_turns": session.revealed_turns},
            "lanes": [{
                "model": lane.model,
                "turns": [{"turn": k, "user": t.user, "reply": t.reply, "score": t.score, "judge": t.judge,
                           "judge_error": t.judge_error, "distribution": t.distribution, "latency_s": t.latency_s}
                          for k, t in enumerate(lane.turns, 1)],
                "running": running_metrics(lane.scores()),
            } for lane in session.lanes],
        })
