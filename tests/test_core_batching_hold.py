"""The batcher's hold policy, on a fake model (no weights): a small batch waits for callers that said they are on
their way (`expecting()`), never when nobody is out or other work waits, and never longer than its bound."""

import threading
import time

from aloe_bench.core.backends.batching import ModelWorker


class FakeModel:
    """`run_batch` that records each batch's payloads and takes `run_s` of wall time."""

    def __init__(self, run_s: float = 0.0):
        self.run_s = run_s
        self.batches: list[list] = []

    def run_batch(self, key, payloads):
        self.batches.append(list(payloads))
        time.sleep(self.run_s)
        return [f"{key}:{p}" for p in payloads]


def make_worker(model: FakeModel, **options) -> ModelWorker:
    defaults = dict(max_batch=8, debounce_s=0.01, max_wait_s=0.05, first_hold_s=10.0)
    return ModelWorker(model.run_batch, lambda key, payload, exc: f"error:{exc}", **(defaults | options))


class Caller(threading.Thread):
    """A conversation inside `expecting()`: out until `go` is set (its other role answered), then one request."""

    def __init__(self, worker: ModelWorker, name: str):
        super().__init__(daemon=True)
        self.worker, self.name_, self.result = worker, name, None
        self.inside, self.go = threading.Event(), threading.Event()

    def run(self):
        with self.worker.expecting("gen"):
            self.inside.set()
            self.go.wait(5)
            self.result = self.worker.submit("gen", 1, self.name_).result(5)


def test_staggered_arrivals_within_the_hold_share_one_batch():
    model = FakeModel()
    worker = make_worker(model)
    callers = [Caller(worker, f"c{i}") for i in range(3)]
    for c in callers:
        c.start()
        c.inside.wait(5)
    began = time.monotonic()
    first = worker.submit("gen", 1, "first")  # arrives alone while three callers are out
    for c in callers:  # they come back one by one, each well after the debounce
        time.sleep(0.1)
        assert not model.batches  # still held
        c.go.set()
    assert first.result(5) == "gen:first"
    for c in callers:
        c.join(5)
    took = time.monotonic() - began
    assert model.batches == [["first", "c0", "c1", "c2"]]  # one batch, not 1 + 3
    assert [c.result for c in callers] == ["gen:c0", "gen:c1", "gen:c2"]
    assert took < 2.0  # released when the last one came in, not at the 10 s bound
    assert worker.stats.held == 1


def test_nobody_out_means_no_hold():
    model = FakeModel()
    worker = make_worker(model)
    began = time.monotonic()
    assert worker.submit("gen", 1, "alone").result(5) == "gen:alone"
    assert time.monotonic() - began < 1.0  # the 10 s bound was not waited
    assert worker.stats.held == 0


def test_a_caller_whose_request_is_in_this_worker_is_not_out():
    """All roles local: a conversation waits on its user message from the same worker; holding for it would only
    delay the batch that has to run before it can come back."""
    model = FakeModel()
    worker = make_worker(model)
    results = []

    def conversation():
        with worker.expecting("gen"):  # its "user message" is a request to this very worker
            results.append(worker.submit("user", 1, "u").result(5))

    thread = threading.Thread(target=conversation, daemon=True)
    began = time.monotonic()
    thread.start()
    thread.join(5)
    assert results == ["user:u"] and time.monotonic() - began < 1.0
    assert worker.stats.held == 0


def test_a_client_between_two_of_its_requests_is_out():
    """The reply is back, the conversation is at its (remote) user: its next request is on its way."""
    model = FakeModel(run_s=2.0)  # the hold bound is half of that: 1 s
    worker = make_worker(model)
    answered, go = threading.Event(), threading.Event()
    results = []

    def conversation():
        with worker.expecting("gen"):
            results.append(worker.submit("gen", 1, "turn1").result(5))
            answered.set()
            go.wait(5)
            results.append(worker.submit("gen", 1, "turn2").result(5))

    thread = threading.Thread(target=conversation, daemon=True)
    thread.start()
    answered.wait(5)
    other = worker.submit("gen", 1, "other")  # arrives while the conversation is out
    time.sleep(0.2)
    assert model.batches == [["turn1"]]  # held for it
    go.set()
    assert other.result(5) == "gen:other"
    thread.join(5)
    assert results == ["gen:turn1", "gen:turn2"]
    assert model.batches == [["turn1"], ["other", "turn2"]]


def test_other_queued_work_is_not_held():
    model = FakeModel(run_s=0.3)
    worker = make_worker(model)
    caller = Caller(worker, "late")
    caller.start()
    caller.inside.wait(5)
    began = time.monotonic()
    busy = worker.submit("gen", 1, "a")  # held: one caller is out ...
    time.sleep(0.1)
    other = worker.submit("score", 1, "b")  # ... until other work queues up behind it
    assert busy.result(5) == "gen:a" and other.result(5) == "score:b"
    assert time.monotonic() - began < 2.0
    caller.go.set()
    caller.join(5)
    assert model.batches[0] == ["a"]


def test_the_hold_is_bounded_by_a_fraction_of_the_measured_batch_time():
    model = FakeModel(run_s=0.4)
    worker = make_worker(model, hold_fraction=0.5, first_hold_s=0.2)
    assert worker.hold_bound("gen") == 0.2  # nothing measured yet
    worker.submit("gen", 1, "warm-up").result(5)
    assert 0.15 <= worker.hold_bound("gen") <= 0.5  # half of the ~0.4 s run
    caller = Caller(worker, "never")  # out, and does not come back during the test
    caller.start()
    caller.inside.wait(5)
    began = time.monotonic()
    assert worker.submit("gen", 1, "x").result(5) == "gen:x"
    waited = time.monotonic() - began - 0.4  # minus the batch's own run time
    assert 0.15 <= waited < 1.5
    assert worker.stats.held == 1
    caller.go.set()
    caller.join(5)


def test_a_caller_that_leaves_without_sending_ends_the_hold():
    model = FakeModel()
    worker = make_worker(model)
    gone = threading.Event()
    inside = threading.Event()

    def quitter():  # e.g. its user message failed, so the conversation stops before its next request
        with worker.expecting("gen"):
            inside.set()
            gone.wait(5)

    thread = threading.Thread(target=quitter, daemon=True)
    thread.start()
    inside.wait(5)
    began = time.monotonic()
    pending = worker.submit("gen", 1, "a")
    time.sleep(0.1)
    gone.set()
    assert pending.result(5) == "gen:a"
    assert time.monotonic() - began < 2.0
    thread.join(5)


def _cohort(worker: ModelWorker, n: int) -> list[Caller]:
    callers = [Caller(worker, f"c{i}") for i in range(n)]
    for c in callers:
        c.start()
        c.inside.wait(5)
    return callers


def test_first_hold_waits_for_a_straggler_in_proportion_to_the_latencies_seen():
    """No batch has run yet: a caller twice as slow as the others (within `first_hold_factor` = 3 x the longest
    latency seen) still makes the first batch, though it comes back long after the others went quiet."""
    model = FakeModel()
    worker = make_worker(model, first_hold_factor=3.0)
    callers = _cohort(worker, 4)
    began = time.monotonic()
    for c, at in zip(callers, (0.05, 0.1, 0.15)):  # three come back quickly ...
        time.sleep(at - (time.monotonic() - began))
        c.go.set()
    time.sleep(0.35 - (time.monotonic() - began))  # ... the fourth after a gap of 0.2 s (quiet 20x the debounce)
    assert not model.batches  # still held for it
    callers[3].go.set()
    for c in callers:
        c.join(5)
    assert model.batches == [["c0", "c1", "c2", "c3"]]
    assert time.monotonic() - began < 2.0  # released when the last one came in, not at the 10 s cap


def test_first_hold_gives_up_on_a_caller_far_slower_than_the_latencies_seen():
    """A caller that does not come back is waited for about `first_hold_factor` x the longest latency seen, not
    for the whole `first_hold_s` cap (10 s here)."""
    model = FakeModel()
    worker = make_worker(model, first_hold_factor=3.0)
    callers = _cohort(worker, 3)
    began = time.monotonic()
    for c, at in zip(callers[:2], (0.1, 0.2)):
        time.sleep(at - (time.monotonic() - began))
        c.go.set()
    for c in callers[:2]:
        c.join(5)
    took = time.monotonic() - began
    assert model.batches == [["c0", "c1"]]  # the third never came: run without it
    assert 0.5 <= took < 2.0  # about 3 x 0.2 s after the cohort went out
    assert worker.stats.held == 1
    callers[2].go.set()
    callers[2].join(5)
    assert model.batches[-1] == ["c2"]


def test_first_hold_is_capped():
    model = FakeModel()
    worker = make_worker(model, first_hold_factor=100.0, first_hold_s=0.5)
    callers = _cohort(worker, 2)
    began = time.monotonic()
    time.sleep(0.1)
    callers[0].go.set()
    callers[0].join(5)
    assert 0.55 <= time.monotonic() - began < 2.0  # 100 x its 0.1 s would be 10 s: the cap (0.5 s) ends the hold
    callers[1].go.set()
    callers[1].join(5)
    assert model.batches == [["c0"], ["c1"]]
