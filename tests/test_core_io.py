"""core/io.py against real files and real processes: torn tails, file:line errors, atomic replacement, crash safety;
and the one re-ask rule (core/reask.py) every role uses."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import warnings

import pytest

from aloe_bench.core.backends import GenerationConfig
from aloe_bench.core.io import (
    DataFileError,
    RepairWarning,
    append_jsonl,
    atomic_write_json,
    atomic_write_text,
    read_json,
    read_jsonl,
    read_log,
    repair_tail,
)
from aloe_bench.core.io import PersonaFileError
from aloe_bench.core.reask import RESEED_STEP, Reasker, Unparsable, attempt_config
from fakes import ScriptedBackend


def _resume(path, n):
    """A resumable job as the project runs one: cut a torn tail, skip the rows on disk, do the rest."""
    repair_tail(path)
    done = {row["i"] for row in read_log(path)} if path.exists() else set()
    redone = [i for i in range(n) if i not in done]
    for i in redone:
        append_jsonl(path, [{"i": i, "text": f"row {i}"}])
    return redone


def test_a_torn_tail_is_cut_and_its_row_done_again(tmp_path):
    path = tmp_path / "log.jsonl"
    assert _resume(path, 3) == [0, 1, 2]
    with open(path, "ab") as fh:  # a kill halfway through the append of row 3
        fh.write(json.dumps({"i": 3, "text": "row 3"}).encode()[:11])
    assert [r["i"] for r in read_log(path)] == [0, 1, 2]  # a reader leaves the torn line out
    with pytest.warns(RepairWarning, match=r"log.jsonl: dropped a torn last line \(11 bytes\)"):
        assert _resume(path, 5) == [3, 4]
    assert [json.loads(line)["i"] for line in path.read_text().splitlines()] == [0, 1, 2, 3, 4]


def test_a_row_is_never_glued_onto_a_torn_line(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text('{"i": 0}\n{"i": 1')  # complete JSON, but its newline never made it: the append did not finish
    with pytest.warns(RepairWarning):
        append_jsonl(path, [{"i": 2}])
    assert path.read_text() == '{"i": 0}\n{"i": 2}\n'
    path.write_text('{"i": 0}\n{"i": 1}')  # a hand-edited file the caller read whole: kept and ended
    append_jsonl(path, [{"i": 2}], keep_unterminated=True)
    assert path.read_text() == '{"i": 0}\n{"i": 1}\n{"i": 2}\n'


@pytest.mark.parametrize("text, log, needle", [
    ('{"a": 1}\n{"a": \n{"a": 3}\n', False, "x.jsonl:2: malformed JSON at column"),
    ('{"a": 1}\n\n{"a": 3}\n', False, "x.jsonl:2: empty line"),
    ('{"a": 1}\n{"a": "\\ud800"}\n', False, "x.jsonl:2: invalid \\u escape"),
    ('{"a": 1}\n{"a": 2}\n\xff\n', False, "x.jsonl:3: not UTF-8"),
    ('{"a": 1}\n{broken\n{"a": 3}\n', True, "x.jsonl:2: invalid JSON"),
    ('{"a": 1}\n{"a": 2}{"a": 3}\n', True, "x.jsonl:2: invalid JSON"),  # glued values in a log: an error
    ('{"a": 1}\n[1, 2]\n', True, "x.jsonl:2: a row must be a JSON object"),
])
def test_a_bad_line_is_named_file_and_line(tmp_path, text, log, needle):
    path = tmp_path / "x.jsonl"
    path.write_bytes(text.encode("utf-8", "surrogatepass").replace(b"\xc3\xbf", b"\xff"))
    with pytest.raises(DataFileError) as info:
        read_log(path) if log else read_jsonl(path)
    assert needle in str(info.value) and str(path) in str(info.value)


def test_data_files_and_logs_differ_only_where_documented(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('\ufeff{"a": 1}\r\n{"a": 2}{"a": 3}\n')
    with pytest.warns(RepairWarning, match="x.jsonl:2: split 2"):
        assert read_jsonl(path) == [(1, {"a": 1}), (2, {"a": 2}), (2, {"a": 3})]
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert read_log(empty) == []
    with pytest.raises(DataFileError, match="empty.jsonl: file has no entries"):
        read_jsonl(empty)
    with pytest.raises(PersonaFileError, match="missing.jsonl: no such file"):  # persona readers keep their type
        from aloe_bench.core.personas import read_jsonl as read_persona_jsonl
        read_persona_jsonl(tmp_path / "missing.jsonl")
    bad = tmp_path / "meta.json"
    bad.write_text('{\n  "a": 1,\n  "b": \n}')
    with pytest.raises(DataFileError, match=r"meta.json: line 4: invalid JSON"):
        read_json(bad)


_FAIL_MIDWAY = textwrap.dedent("""
    import resource, signal, sys
    from aloe_bench.core.io import atomic_write_text
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit a write fails with EFBIG instead of a kill
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
    try:
        atomic_write_text(sys.argv[1], "new line\\n" * 100_000)
    except OSError as exc:
        print("failed", exc.errno)
""")


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
def test_an_atomic_write_that_fails_midway_leaves_the_old_file(tmp_path):
    path = tmp_path / "results.json"
    atomic_write_json(path, {"old": True})
    before = path.read_bytes()
    proc = subprocess.run([sys.executable, "-c", _FAIL_MIDWAY, str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("failed"), proc.stderr
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]  # the partial temp file is gone
    atomic_write_text(path, "replaced\n")
    assert path.read_text() == "replaced\n"


_APPENDER = textwrap.dedent("""
    import sys
    from aloe_bench.core.io import append_jsonl
    for i in range(100_000):
        append_jsonl(sys.argv[1], [{"i": i, "pad": "x" * 200}])
        print(i, flush=True)  # only after append_jsonl returned: this row is confirmed
""")


def test_confirmed_appends_survive_a_killed_writer(tmp_path):
    path = tmp_path / "samples.jsonl"
    proc = subprocess.Popen([sys.executable, "-c", _APPENDER, str(path)], stdout=subprocess.PIPE, text=True)
    confirmed = -1
    try:
        for line in proc.stdout:
            confirmed = int(line)
            if confirmed >= 30:
                break
    finally:
        proc.kill()  # SIGKILL: no atexit, no buffer flush
        proc.wait(timeout=30)
    assert confirmed >= 30
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RepairWarning)
        repair_tail(path)
    rows = read_log(path)
    assert [r["i"] for r in rows] == list(range(len(rows))) and len(rows) >= confirmed + 1


def test_appends_from_many_threads_never_interleave(tmp_path):
    path = tmp_path / "samples.jsonl"
    big = "y" * 20_000  # larger than one buffered write: an unlocked append could interleave

    def work(t):
        for i in range(25):
            append_jsonl(path, [{"t": t, "i": i, "big": big}, {"t": t, "i": i, "second": True}])

    threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    rows = read_log(path)
    assert len(rows) == 6 * 25 * 2
    for first, second in zip(rows[::2], rows[1::2]):  # each call's rows stay together
        assert (first["t"], first["i"]) == (second["t"], second["i"]) and second["second"]


# -------------------------------------------------------------------------------------------------
# The re-ask rule
# -------------------------------------------------------------------------------------------------
def test_reask_uses_one_seed_rule_and_records_every_attempt():
    backend = ScriptedBackend(["no", RuntimeError("boom"), "7"])
    parse = lambda text: int(text) if text.isdigit() else None  # noqa: E731
    (answer,) = Reasker(max_retries=2, retry_temperature=0.5).ask(backend, [[{"role": "user", "content": "?"}]],
                                                                  GenerationConfig(8, 0.0, seed=11), parse)
    assert answer.as_tuple() == (7, "7", 3, None) and answer.tokens == 2
    configs = [config for _, config in backend.calls]
    assert [c.seed for c in configs] == [11, 11 + RESEED_STEP, 11 + 2 * RESEED_STEP]
    assert [c.temperature for c in configs] == [0.0, 0.5, 0.5]
    assert attempt_config(GenerationConfig(8, 0.9, seed=1), 1, 0.5).temperature == 0.9  # never cooler than asked

    failing = ScriptedBackend(["no", RuntimeError("boom")])
    (answer,) = Reasker(max_retries=1).ask(failing, [[{"role": "user", "content": "?"}]], GenerationConfig(8), parse)
    assert answer.as_tuple() == (None, "no", 2, "backend: boom")  # raw keeps the last text the model wrote


def test_reask_takes_a_parsers_own_reason_and_the_async_path_matches():
    import asyncio

    def parse(text):
        if text == "echo":
            raise Unparsable("an echo, not an answer")
        return None

    request = [{"role": "user", "content": "?"}]
    (batched,) = Reasker(max_retries=1).ask(ScriptedBackend(["echo"]), [request], GenerationConfig(8), parse)
    alone = asyncio.run(Reasker(max_retries=1).aask(ScriptedBackend(["echo"]), request, GenerationConfig(8), parse))
    assert batched.as_tuple() == alone.as_tuple() == (None, "echo", 2, "an echo, not an answer")
