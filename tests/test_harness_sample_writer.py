"""The samples log's writer thread: rows reach the file whole, in the order written, and an append error is
raised to the caller (on the next write and on close) instead of being lost."""

import json
import threading

import pytest

from aloe_bench.harness.results import RunFiles, SampleWriter


def test_rows_arrive_in_order_and_close_waits_for_all(tmp_path):
    files = RunFiles(tmp_path, "f" * 16, "m")
    written = []
    writer = SampleWriter(files, on_written=written.extend)
    rows = [{"persona_id": f"p{i % 7}", "turn": i // 7 + 1, "text": "x" * (i % 50)} for i in range(300)]
    for i in range(0, len(rows), 3):
        writer.write(rows[i:i + 3])
    writer.close()
    assert files.load_samples() == rows
    assert written == rows
    lines = files.samples_path.read_text().splitlines()
    assert [json.loads(line) for line in lines] == rows


def test_appends_run_off_the_calling_thread(tmp_path, monkeypatch):
    files = RunFiles(tmp_path, "f" * 16, "m")
    threads = []
    original = files.append_samples
    monkeypatch.setattr(files, "append_samples", lambda rows: (threads.append(threading.current_thread()),
                                                               original(rows)))
    writer = SampleWriter(files)
    writer.write([{"persona_id": "a", "turn": 1}])
    writer.close()
    assert threads and all(t is not threading.current_thread() for t in threads)


def test_an_append_error_reaches_the_caller(tmp_path, monkeypatch):
    files = RunFiles(tmp_path, "f" * 16, "m")

    def full(rows):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files, "append_samples", full)
    writer = SampleWriter(files)
    writer.write([{"persona_id": "a", "turn": 1}])
    with pytest.raises(OSError, match="No space"):
        writer.close()
    with pytest.raises(OSError, match="No space"):
        writer.write([{"persona_id": "a", "turn": 2}])
