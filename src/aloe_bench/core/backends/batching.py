"""Dynamic batching for in-process models: one worker thread owns the model and serves requests as they come.

Single requests (`submit`) that arrive while a batch runs wait in a queue; when the worker is free it takes the
oldest one, every other pending request with the same key (identical generation settings, or the same score
options), sorts them by prompt length and runs up to `max_batch` of similar length as one padded call. So
conversations at different turns share a batch, and nobody waits for a whole lockstep phase. Whole jobs
(`call`: a caller's own list of prompts, a stream) run on the same thread, one at a time, in arrival order.

Arrivals are debounced: a burst of requests (many conversation tasks resuming at once, each tokenising its
prompt first) is gathered before the batch starts, up to `max_wait_s` after the first of them.
"""

from __future__ import annotations

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


@dataclass
class BatchStats:
    """What the worker did: batches run for single requests, their sizes, and whole jobs."""

    batches: int = 0
    requests: int = 0
    jobs: int = 0
    sizes: Counter = field(default_factory=Counter)
    split_after_error: int = 0  # batches that failed as a whole and were re-run one request at a time

    def to_dict(self) -> dict:
        return {"batches": self.batches, "requests": self.requests, "jobs": self.jobs,
                "largest": max(self.sizes, default=0), "sizes": dict(sorted(self.sizes.items())),
                "split_after_error": self.split_after_error}


class ModelWorker:
    """The thread that owns a model.

    `run_batch(key, payloads) -> results` runs one padded call; `on_error(key, payload, exc) -> result` turns an
    exception into that request's failed result. A batch that raises is re-run one request at a time, so one
    bad request fails alone. `plan(key, lengths) -> list of index lists` may split a key's pending requests
    into batches (default: windows of `max_batch` by length).
    """

    def __init__(self, run_batch, on_error, max_batch: int, plan=None, debounce_s: float = 0.02,
                 max_wait_s: float = 0.25, name: str = "aloe-model-worker"):
        self._run_batch = run_batch
        self._on_error = on_error
        self._plan = plan
        self.max_batch = max(1, int(max_batch))
        self.debounce_s = debounce_s
        self.max_wait_s = max_wait_s
        self.name = name
        self.stats = BatchStats()
        self._cond = threading.Condition()
        self._queue: list[_Item] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._last_arrival = 0.0
        self._closed = False

    # -- client side ----------------------------------------------------------------------------------
    def submit(self, key: Hashable, length: int, payload: Any) -> Future:
        """Queue one request; the future gets its result (never an exception unless the worker is closed)."""
        return self._put(_Item(next(self._seq), Future(), key=key, length=length, payload=payload))

    def submit_job(self, fn: Callable[[], Any]) -> Future:
        """Queue a whole job (runs alone on the worker thread)."""
        return self._put(_Item(next(self._seq), Future(), job=fn))

    def call(self, fn: Callable[[], Any]):
        """Run `fn` on the worker thread and return its result (re-raising its exception)."""
        if threading.current_thread() is self._thread:
            return fn()
        return self.submit_job(fn).result()

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
                    chosen = self._choose(head)
                else:
                    chosen = [head]
                for item in chosen:
                    self._queue.remove(item)
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
        for item, result in zip(items, results):
            if hasattr(result, "latency_s"):
                result.latency_s = done - item.submitted  # what this request waited, queueing included
            item.future.set_result(result)


__all__ = ["BatchStats", "ModelWorker", "length_buckets"]
