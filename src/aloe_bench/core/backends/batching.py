"""Dynamic batching for in-process models: one worker thread owns the model and serves requests as they come.

Single requests (`submit`) that arrive while a batch runs wait in a queue; when the worker is free it takes the
oldest one, every other pending request with the same key (identical generation settings, or the same score
options), sorts them by prompt length and runs up to `max_batch` of similar length as one padded call. So
conversations at different turns share a batch, and nobody waits for a whole lockstep phase. Whole jobs
(`call`: a caller's own list of prompts, a stream) run on the same thread, one at a time, in arrival order.

Arrivals are debounced: a burst of requests (many conversation tasks resuming at once, each tokenising its
prompt first) is gathered before the batch starts, up to `max_wait_s` after the first of them.

Small batches are held open for callers known to be on their way. A caller that keeps sending requests of
one kind (a conversation: reply, then a message from a remote role-play user, then the next reply) runs inside
`expecting(kind)`; while it has no request in this worker it is "out" and will be back. When a batch would be
smaller than `max_batch`, some of these callers are out, and no other work is queued, the worker waits for them
up to `hold_fraction` of the recent run time of that kind of batch (before one has run: `first_hold_factor` x the
longest time a caller that came back was out, so a straggler of the first cohort is waited for in proportion to the
latencies seen, at most `first_hold_s`). A decode costs about the same wall time for 1 sequence as for 16 on a CPU,
so running the first arrival alone makes everyone who arrives a moment later wait a whole batch. With nobody out,
nothing is held.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import threading
import time
from collections import Counter
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable


def length_buckets(lengths: list[int], max_batch: int, max_padding: float | None = None) -> list[list[int]]:
    """Indices of `lengths` grouped into batches of similar length (shortest first), each at most `max_batch`.

    With `max_padding`, a batch is also closed before the padding it would compute (max length x size minus
    the real tokens) exceeds that fraction of its real tokens: a forward pass over padding is pure waste
    when batching buys little (a prompt-only pass on a CPU).
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    buckets: list[list[int]] = []
    current: list[int] = []
    real = 0
    for index in order:
        size = lengths[index]
        if current:
            padded = size * (len(current) + 1)  # sorted: the new item is the longest
            too_padded = max_padding is not None and padded - (real + size) > max_padding * (real + size)
            if len(current) >= max_batch or too_padded:
                buckets.append(current)
                current, real = [], 0
        current.append(index)
        real += size
    if current:
        buckets.append(current)
    return buckets


@dataclass
class _Item:
    seq: int
    future: Future
    key: Hashable = None
    length: int = 0
    payload: Any = None
    job: Callable[[], Any] | None = None
    submitted: float = field(default_factory=time.perf_counter)
    client: int | None = None  # the `expecting()` caller that sent it, if any


# (worker id, client id) of every `expecting()` the current task or thread is inside (tasks it starts inherit
# them): a request it sends that worker shows the caller is in, not out.
_CLIENTS: contextvars.ContextVar[tuple] = contextvars.ContextVar("aloe_batching_clients", default=())


@dataclass
class BatchStats:
    """What the worker did: batches run for single requests, their sizes, and whole jobs."""

    batches: int = 0
    requests: int = 0
    jobs: int = 0
    sizes: Counter = field(default_factory=Counter)
    split_after_error: int = 0  # batches that failed as a whole and were re-run one request at a time
    held: int = 0  # batches held open for expected callers
    held_s: float = 0.0  # total time those holds took

    def to_dict(self) -> dict:
        return {"batches": self.batches, "requests": self.requests, "jobs": self.jobs,
                "largest": max(self.sizes, default=0), "sizes": dict(sorted(self.sizes.items())),
                "split_after_error": self.split_after_error, "held": self.held, "held_s": round(self.held_s, 3)}


class ModelWorker:
    """The thread that owns a model.

    `run_batch(key, payloads) -> results` runs one padded call; `on_error(key, payload, exc) -> result` turns an
    exception into that request's failed result. A batch that raises is re-run one request at a time, so one
    bad request fails alone. `plan(key, lengths) -> list of index lists` may split a key's pending requests
    into batches (default: windows of `max_batch` by length).

    Holding: a small batch waits for callers inside `expecting(kind)`, where `kind_of(key)` is the batch's kind, up
    to `hold_fraction` x the moving average of that key's batch run times. Before one has run, it waits until every
    caller still out has been out `first_hold_factor` x as long as the longest any queued caller was out before it
    came back (its observed latency), and never more than `first_hold_s`; see the module docstring.
    """

    def __init__(self, run_batch, on_error, max_batch: int, plan=None, debounce_s: float = 0.02,
                 max_wait_s: float = 0.25, name: str = "aloe-model-worker", hold_fraction: float = 0.5,
                 first_hold_s: float = 10.0, first_hold_factor: float = 3.0, ema_weight: float = 0.3,
                 kind_of: Callable[[Hashable], Hashable] = None):
        self._run_batch = run_batch
        self._on_error = on_error
        self._plan = plan
        self.max_batch = max(1, int(max_batch))
        self.debounce_s = debounce_s
        self.max_wait_s = max_wait_s
        self.name = name
        self.hold_fraction = hold_fraction
        self.first_hold_s = first_hold_s
        self.first_hold_factor = first_hold_factor
        self.ema_weight = ema_weight
        self._kind_of = kind_of or (lambda key: key)
        self.stats = BatchStats()
        self._clients: dict[int, Hashable] = {}  # callers inside `expecting(kind)`: client id -> kind
        self._out_since: dict[int, float] = {}  # client id -> when it last had nothing in this worker (perf_counter)
        self._client_ids = itertools.count()
        self._running_clients: set[int] = set()  # clients with a request in the batch that runs now
        self._run_time: dict[Hashable, float] = {}  # per key, moving average of batch run times (s)
        self._cond = threading.Condition()
        self._queue: list[_Item] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._last_arrival = 0.0
        self._closed = False

    # -- client side ----------------------------------------------------------------------------------
    def submit(self, key: Hashable, length: int, payload: Any) -> Future:
        """Queue one request; the future gets its result (never an exception unless the worker is closed)."""
        mine = [client for worker, client in _CLIENTS.get() if worker == id(self)]
        return self._put(_Item(next(self._seq), Future(), key=key, length=length, payload=payload,
                               client=mine[-1] if mine else None))

    def submit_job(self, fn: Callable[[], Any]) -> Future:
        """Queue a whole job (runs alone on the worker thread)."""
        return self._put(_Item(next(self._seq), Future(), job=fn))

    def call(self, fn: Callable[[], Any]):
        """Run `fn` on the worker thread and return its result (re-raising its exception)."""
        if threading.current_thread() is self._thread:
            return fn()
        return self.submit_job(fn).result()

    @contextlib.contextmanager
    def expecting(self, kind: Hashable):
        """While inside, the caller is a client that sends requests of `kind`; with none in the worker, it is out."""
        with self._cond:
            client = next(self._client_ids)
            self._clients[client] = kind
            self._out_since[client] = time.perf_counter()
        token = _CLIENTS.set(_CLIENTS.get() + ((id(self), client),))
        try:
            yield
        finally:
            _CLIENTS.reset(token)
            with self._cond:
                del self._clients[client]
                self._out_since.pop(client, None)
                self._cond.notify_all()

    def hold_bound(self, key: Hashable) -> float:
        """How long a small batch of `key` may wait for expected callers: a fraction of its usual run time (at most
        `first_hold_s` before one has run; `_hold_left` shortens that from the latencies observed)."""
        if key in self._run_time:
            return self.hold_fraction * self._run_time[key]
        return self.first_hold_s

    def _hold_left(self, head: _Item, started: float) -> float:
        """Seconds the hold of `head`'s batch may still last (lock held; `started` is a `time.perf_counter()`).

        With no batch of this key run yet, there is no run time to weigh a hold against, but there are latencies:
        each queued caller was out for a while before it came back. The hold ends once every caller still out has
        been out `first_hold_factor` x the longest of those (a straggler that far behind is not waited for).
        """
        now = time.perf_counter()
        left = started + self.hold_bound(head.key) - now
        if head.key in self._run_time:
            return left
        back = [i.submitted - self._out_since[i.client] for i in self._queue
                if i.job is None and i.key == head.key and i.client in self._out_since]
        out = self._out_clients(self._kind_of(head.key))
        if not back or not out:
            return left
        latest_out = max(self._out_since[c] for c in out)
        return min(left, latest_out + self.first_hold_factor * max(back) - now)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _put(self, item: _Item) -> Future:
        with self._cond:
            if self._closed:
                raise RuntimeError(f"{self.name} is closed")
            self._queue.append(item)
            self._last_arrival = time.monotonic()
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                self._thread.start()
            self._cond.notify_all()
        return item.future

    # -- worker side ----------------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if self._closed and not self._queue:
                    return
                head = min(self._queue, key=lambda i: i.seq)
                if head.job is None:
                    self._gather(head)
                    self._hold(head)
                    chosen = self._choose(head)
                else:
                    chosen = [head]
                for item in chosen:
                    self._queue.remove(item)
                self._running_clients = {i.client for i in chosen if i.client is not None}
            live = [i for i in chosen if i.future.set_running_or_notify_cancel()]
            if not live:
                continue
            if live[0].job is not None:
                self._run_job(live[0])
            else:
                self._run_requests(live)

    def _gather(self, head: _Item) -> None:
        """Wait (lock held, via the condition) while a burst of same-key requests is still arriving."""
        started = time.monotonic()
        while not self._closed:
            now = time.monotonic()
            same = sum(1 for i in self._queue if i.job is None and i.key == head.key)
            quiet_for = now - self._last_arrival
            if same >= self.max_batch or quiet_for >= self.debounce_s or now - started >= self.max_wait_s:
                return
            self._cond.wait(min(self.debounce_s - quiet_for, self.max_wait_s - (now - started)))

    def _out_clients(self, kind: Hashable) -> list[int]:
        """Callers inside `expecting(kind)` with no request in this worker: requests that may come during a hold."""
        inside = {i.client for i in self._queue} | self._running_clients
        return [client for client, k in self._clients.items() if k == kind and client not in inside]

    def _out(self, kind: Hashable) -> int:
        return len(self._out_clients(kind))

    def _hold(self, head: _Item) -> None:
        """Hold a small batch (lock held) while expected callers are out and nothing else waits; bounded."""
        started = time.monotonic()
        started_pc = time.perf_counter()
        held = False
        while not self._closed:
            now = time.monotonic()
            same = sum(1 for i in self._queue if i.job is None and i.key == head.key)
            other = len(self._queue) - same
            out = self._out(self._kind_of(head.key))
            quiet_for = now - self._last_arrival
            left = self._hold_left(head, started_pc)
            if same >= self.max_batch or other or left <= 0:
                break
            if out == 0:  # everyone is in (once held, wait until arrivals have been quiet for `debounce_s`)
                if not held or quiet_for >= self.debounce_s:
                    break
                self._cond.wait(self.debounce_s - quiet_for)
                continue
            held = True
            self._cond.wait(left)
        if held:
            self.stats.held += 1
            self.stats.held_s += time.monotonic() - started

    def _choose(self, head: _Item) -> list[_Item]:
        group = sorted((i for i in self._queue if i.job is None and i.key == head.key), key=lambda i: i.length)
        if self._plan is not None:
            for batch in self._plan(head.key, [i.length for i in group]):
                chosen = [group[j] for j in batch]
                if head in chosen:
                    return chosen
        if len(group) <= self.max_batch:
            return group
        # The window of `max_batch` neighbours by length that holds the oldest request, with the least spread.
        where = group.index(head)
        lo, hi = max(0, where - self.max_batch + 1), min(where, len(group) - self.max_batch)
        start = min(range(lo, hi + 1), key=lambda s: group[s + self.max_batch - 1].length - group[s].length)
        return group[start:start + self.max_batch]

    def _run_job(self, item: _Item) -> None:
        self.stats.jobs += 1
        try:
            result = item.job()
        except BaseException as exc:  # the caller of `call` re-raises it
            item.future.set_exception(exc)
        else:
            item.future.set_result(result)

    def _run_requests(self, items: list[_Item]) -> None:
        key = items[0].key
        self.stats.batches += 1
        self.stats.requests += len(items)
        self.stats.sizes[len(items)] += 1
        began = time.perf_counter()
        try:
            results = self._run_batch(key, [i.payload for i in items])
            if len(results) != len(items):
                raise RuntimeError(f"batch returned {len(results)} results for {len(items)} requests")
        except Exception as exc:
            if len(items) == 1:
                results = [self._on_error(key, items[0].payload, exc)]
            else:  # find the request(s) that fail: each runs alone, so the others still get their answers
                self.stats.split_after_error += 1
                results = []
                for item in items:
                    try:
                        results.append(self._run_batch(key, [item.payload])[0])
                    except Exception as single:
                        results.append(self._on_error(key, item.payload, single))
        done = time.perf_counter()
        previous = self._run_time.get(key)
        took = done - began
        self._run_time[key] = took if previous is None else previous + self.ema_weight * (took - previous)
        with self._cond:
            self._running_clients = set()
            for item in items:  # back at their other roles: out from now
                if item.client in self._out_since:
                    self._out_since[item.client] = done
        for item, result in zip(items, results):
            if hasattr(result, "latency_s"):
                result.latency_s = done - item.submitted  # what this request waited, queueing included
            item.future.set_result(result)


__all__ = ["BatchStats", "ModelWorker", "length_buckets"]
