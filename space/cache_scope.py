"""Each Space visitor session reads and leaves prompt-prefix cache entries in a scope of its own.

A shared in-process model keeps the key/value tensors of recent prompts (`aloe_bench.core.backends.prefix_cache`);
if two visitors shared a scope, the timing of one's reply could reveal whether another had sent the same text
(vLLM's `cache_salt` exists for the same reason). `session_scoped` runs a session function (or every step of a
session generator) in its session's scope; `release_session` drops the scope's entries on every loaded backend
when the session is reset or expires, and gives the session a fresh scope.
"""

from __future__ import annotations

import functools
import inspect

from aloe_bench.core.backends import release_everywhere
from aloe_bench.core.backends.prefix_cache import new_scope, scoped_context

SCOPE_LABEL = "space-session"


def fresh_scope() -> str:
    return new_scope(SCOPE_LABEL)


def release_session(session) -> int:
    """Drop what the backends keep for `session`'s conversation and start it a new scope."""
    scope, session.cache_scope = session.cache_scope, fresh_scope()
    return release_everywhere(scope)


def session_scoped(fn):
    """`fn(session, ...)` (a function or a generator function) with its requests in the session's scope."""
    if not inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def call(session, *args, **kwargs):
            return scoped_context(session.cache_scope).run(fn, session, *args, **kwargs)
        return call

    @functools.wraps(fn)
    def steps(session, *args, **kwargs):
        # Each step runs in the scope's context: gradio may run a generator's steps on different threads.
        context = scoped_context(session.cache_scope)
        inner = context.run(fn, session, *args, **kwargs)
        try:
            while True:
                try:
                    item = context.run(next, inner)
                except StopIteration as stop:
                    return stop.value
                yield item
        finally:
            context.run(inner.close)  # a closed stream (Stop, a dropped connection) closes the inner one too

    return steps


__all__ = ["fresh_scope", "release_session", "session_scoped"]
