"""Prompt-prefix key/value caching for the in-process transformers backend.

A conversation's next turn re-sends its whole history, and every judge request for one persona starts with the
same instructions and persona text; most of a prompt was already read a turn earlier. `PrefixCache` keeps the
per-layer key/value tensors of recent prompts (and of the replies generated after them) and finds, for a new
prompt, the entry that shares the longest common token prefix with it, so only the rest is computed (as vLLM's
automatic prefix caching does). Entries live in scopes: a request matches only entries of its own scope (a
conversation, an evaluation run, a Space visitor's session), and `release(scope)` drops a scope's entries when
its conversation ends. Memory is bounded in bytes, evicting the least recently used entry first. The scope of
the calls a caller makes is a context variable (`prefix_scope`), so it follows asyncio tasks and worker threads
started with the caller's context. The algorithm and its numbers are in docs/prefix_cache.md.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass

import numpy as np

#: the scope of the requests the current task or thread sends (None: the process-wide default scope)
_SCOPE: contextvars.ContextVar[str | None] = contextvars.ContextVar("aloe_prefix_scope", default=None)
_SCOPE_IDS = itertools.count(1)
DEFAULT_SCOPE = ""


def current_scope() -> str:
    """The prefix-cache scope of requests sent from here."""
    scope = _SCOPE.get()
    return DEFAULT_SCOPE if scope is None else scope


def has_scope() -> bool:
    """Whether a caller up the stack chose the scope (a Space session, a lockstep run), rather than the default."""
    return _SCOPE.get() is not None


def scoped_context(scope: str) -> contextvars.Context:
    """A copy of the current context with `scope` set: for code run step by step (`context.run`), e.g. a
    generator whose steps may run on different threads."""
    context = contextvars.copy_context()
    context.run(_SCOPE.set, scope)
    return context


def new_scope(label: str = "conversation") -> str:
    """A scope name no other caller in this process uses."""
    return f"{label}-{next(_SCOPE_IDS)}"


@contextlib.contextmanager
def prefix_scope(scope: str):
    """Requests sent inside (and from tasks started inside) reuse and leave cache entries in `scope` only."""
    token = _SCOPE.set(scope)
    try:
        yield scope
    finally:
        _SCOPE.reset(token)


@contextlib.contextmanager
def conversation_scope(backends, label: str = "conversation"):
    """The prefix-cache scope of the requests sent inside: a new one, released on each of `backends` when the block
    ends however it ends (finished, stopped, cancelled), unless a caller already chose one (a Space session), which
    that caller releases."""
    if has_scope():
        yield current_scope()
        return
    with prefix_scope(new_scope(label)) as scope:
        try:
            yield scope
        finally:
            for backend in {id(b): b for b in backends}.values():
                backend.release_prefixes(scope)


def common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    """Length of the longest common prefix of two token arrays."""
    n = min(len(a), len(b))
    differ = np.flatnonzero(a[:n] != b[:n])
    return int(differ[0]) if len(differ) else n


@dataclass
class PrefixEntry:
    """The tokens of one prompt (plus its reply) and their key/value tensors, one (key, value) pair per layer,
    each shaped [1, heads, tokens, head_dim]."""

    scope: str
    tokens: np.ndarray
    layers: list
    nbytes: int


@dataclass
class PrefixCacheStats:
    """What the cache did: prompt tokens computed and reused, requests that found a prefix or none, memory."""

    computed_tokens: int = 0
    reused_tokens: int = 0
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    released: int = 0
    entries: int = 0
    bytes: int = 0
    peak_bytes: int = 0

    def to_dict(self) -> dict:
        out = asdict(self)
        out["peak_mb"] = round(self.peak_bytes / 2**20, 1)
        return out


class PrefixCache:
    """Key/value tensors of recent prompts, found by longest common token prefix within a scope; LRU-bounded."""

    def __init__(self, max_bytes: int):
        self.max_bytes = int(max_bytes)
        self.stats = PrefixCacheStats()
        self._entries: OrderedDict[int, PrefixEntry] = OrderedDict()  # least recently used first
        self._ids = itertools.count()
        self._released: set[str] = set()  # scopes whose conversation ended: a late answer adds nothing to them
        self._lock = threading.Lock()  # the model's worker thread adds and looks up; callers release

    def longest(self, scope: str, tokens: list[int], limit: int) -> tuple[PrefixEntry | None, int]:
        """`match`, counted at once (`record`)."""
        entry, length = self.match(scope, tokens, limit)
        self.record(len(tokens), length)
        return entry, length

    def match(self, scope: str, tokens: list[int], limit: int) -> tuple[PrefixEntry | None, int]:
        """The entry of `scope` sharing the longest prefix with `tokens` (now the most recently used) and how many
        of its tokens could be reused (at most `limit`); (None, 0) when none shares one. Counts nothing."""
        ids = np.asarray(tokens, dtype=np.int64)
        best, best_key, length = None, None, 0
        with self._lock:
            for key, entry in self._entries.items():
                if entry.scope != scope:
                    continue
                shared = common_prefix(entry.tokens, ids)
                if shared > length:
                    best, best_key, length = entry, key, shared
            length = min(length, limit)
            if best is None or length <= 0:
                return None, 0
            self._entries.move_to_end(best_key)
        return best, length

    def record(self, prompt_tokens: int, reused: int) -> None:
        """Count one request: a hit when it reused `reused` > 0 of its `prompt_tokens`, else a miss."""
        with self._lock:
            if reused > 0:
                self.stats.hits += 1
            else:
                self.stats.misses += 1
            self.stats.reused_tokens += reused
            self.stats.computed_tokens += prompt_tokens - reused

    def add(self, scope: str, tokens: list[int], layers: list) -> None:
        """Keep `layers` for `tokens` in `scope`; entries of the scope that are a prefix of it are dropped (it
        holds all they held), then least recently used entries until the bound holds."""
        ids = np.asarray(tokens, dtype=np.int64)
        nbytes = sum(k.element_size() * k.nelement() + v.element_size() * v.nelement() for k, v in layers)
        if nbytes > self.max_bytes or not len(ids):
            return
        with self._lock:
            if scope in self._released:
                return
            for key in [k for k, e in self._entries.items()
                        if e.scope == scope and len(e.tokens) <= len(ids) and common_prefix(e.tokens, ids) == len(e.tokens)]:
                self._drop(key)
            self._entries[next(self._ids)] = PrefixEntry(scope, ids, layers, nbytes)
            self.stats.bytes += nbytes
            self.stats.entries += 1
            while self.stats.bytes > self.max_bytes:
                self._drop(next(iter(self._entries)))
                self.stats.evictions += 1
            self.stats.peak_bytes = max(self.stats.peak_bytes, self.stats.bytes)

    def release(self, scope: str) -> int:
        """Drop every entry of `scope` (a scope other than the default stays closed: a request still in flight
        adds nothing to it); returns how many entries there were."""
        with self._lock:
            if scope != DEFAULT_SCOPE:
                self._released.add(scope)
            keys = [k for k, e in self._entries.items() if e.scope == scope]
            for key in keys:
                self._drop(key)
            self.stats.released += len(keys)
        return len(keys)

    def scope_entries(self, scope: str) -> int:
        with self._lock:
            return sum(1 for e in self._entries.values() if e.scope == scope)

    def clear(self) -> None:
        with self._lock:
            for key in list(self._entries):
                self._drop(key)

    def _drop(self, key: int) -> None:
        entry = self._entries.pop(key)
        self.stats.bytes -= entry.nbytes
        self.stats.entries -= 1


__all__ = ["DEFAULT_SCOPE", "PrefixCache", "PrefixCacheStats", "PrefixEntry", "common_prefix", "conversation_scope",
           "current_scope",
           "has_scope", "new_scope", "prefix_scope", "scoped_context"]
