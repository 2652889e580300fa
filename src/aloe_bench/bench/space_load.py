"""`aloe bench space`: a bounded load test of the Space over loopback.

The app is launched in this process on 127.0.0.1 (prevent_thread_lock) and driven by N concurrent
`gradio_client` clients, each its own gradio session, in several waves of fresh sessions. Every session picks
its own persona and sends a few messages carrying a unique marker token (`mk<wave id>s<index>`); then it
scores, asks the induction model, and exports. Checked:

- leakage: every output a session receives (each streamed update of /chat, /score, /induce, /export and the
  exported file itself) holds no other session's marker, and the shared page config (/config, /info, the
  HTML page) holds none at all;
- correctness: the export holds exactly this session's persona and messages; with the echo backend also the
  expected replies, scores (the echo judge's score is a function of the one marker it sees) and induction;
- secrets: no value of a secret-like environment variable (OPENAI_API_KEY, HF_TOKEN, ...) in any output, any
  HTTP response read, any log record emitted during the run, or the result itself;
- memory: RSS of this process (server and clients) sampled throughout, and after each wave the sessions
  gradio holds and the ChatSession objects alive, which the Space bounds by `max_sessions` and `session_ttl_s`.

The default `echo` backend (`aloe_bench.testing.backends.EchoBackend`) answers instantly (streaming word by word
with a small pause), so the figures are those of the Space machinery; `--backend embedded` puts SmolLM2-135M in
every role.
"""

from __future__ import annotations

import gc
import json
import logging
import random
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aloe_bench.core.errors import ConfigError
from aloe_bench.space import session as S
from aloe_bench.space.persona_picker import persona_label
from aloe_bench.space.space_config import SpaceConfig
from aloe_bench.space.redact import redact, secret_values
from aloe_bench.testing.backends import ECHO_SPECS, MARKER, echo_loader, marker_score
from aloe_bench.testing.serve import free_port


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return round(ordered[rank - 1], 4)


class _RSSSampler(threading.Thread):
    """Samples this process's RSS every `interval` seconds; `peak` is the highest seen."""

    def __init__(self, interval: float = 0.05):
        super().__init__(daemon=True)
        import psutil

        self.process = psutil.Process()
        self.interval = interval
        self.peak = self.now()
        self._halt = threading.Event()

    def now(self) -> int:
        return self.process.memory_info().rss

    def run(self):
        while not self._halt.wait(self.interval):
            self.peak = max(self.peak, self.now())

    def stop(self):
        self._halt.set()
        self.join()
        self.peak = max(self.peak, self.now())


class _LogCapture(logging.Handler):
    """Keeps every log record's formatted text (levels are left as they are) for the secret scan."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record):
        try:
            self.lines.append(self.format(record))
        except Exception:  # a broken record must not break the run
            pass


def _mb(n: int) -> float:
    return round(n / 2**20, 1)


def _trimmed_rss(process) -> int | None:
    """RSS after a full collection and glibc's malloc_trim: what the process holds, not what the allocator keeps.

    Without the trim, RSS after a burst of threads stays near its high-water mark (freed memory is kept by the
    allocator's per-thread arenas), which hides whether anything is actually retained. None off glibc.
    """
    import ctypes
    import ctypes.util

    gc.collect()
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        return None
    return process.memory_info().rss


def _text(value) -> str:
    return json.dumps(value, default=str, ensure_ascii=False)


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read().decode("utf-8", "replace")


def run_session(url: str, marker: str, set_name: str, label: str, persona_id: str, messages: int, echo: bool,
                download_dir: str) -> dict:
    """One client session: pick a persona, chat, score, induce, export; returns what it saw and any problems."""
    from gradio_client import Client

    seen: list[str] = []  # JSON text of every output this session received
    problems: list[str] = []
    chat_latency, score_latency = [], []
    client = None
    try:
        # token=False: the client never forwards the operator's HF token; a loaded machine needs a long timeout
        client = Client(url, verbose=False, download_files=download_dir, token=False, analytics_enabled=False,
                        httpx_kwargs={"timeout": 120})
        out = client.predict(set_name, label, api_name="/pick_persona")
        seen.append(_text(out))
        sent = [f"I am {marker}, message {t}: what should I cook tonight?" for t in range(messages)]
        for text in sent:
            started = time.perf_counter()
            job = client.submit(text, api_name="/chat")
            final = job.result(timeout=600)
            chat_latency.append(time.perf_counter() - started)
            seen.extend(_text(o) for o in job.outputs())
            seen.append(_text(final))
            if str(final[3]).startswith("⚠️"):
                problems.append(f"error: /chat status {final[3]!r}")
            started = time.perf_counter()
            out = client.predict(api_name="/score")
            score_latency.append(time.perf_counter() - started)
            seen.append(_text(out))
            if str(out[-1]).startswith("⚠️"):
                problems.append(f"error: /score status {out[-1]!r}")
        revealed = client.predict(api_name="/induce")
        seen.append(_text(revealed))
        path, data = client.predict(api_name="/export")
        seen.append(_text(data))
        exported = Path(path).read_text(encoding="utf-8")
        seen.append(exported)
        if json.loads(exported) != data:
            problems.append("mismatch: the exported file differs from the exported JSON")
    except Exception as exc:  # a failed call is an error of this session, not of the run
        problems.append(f"error: {type(exc).__name__}: {exc}")
        return {"marker": marker, "seen": seen, "problems": problems, "chat_latency": chat_latency,
                "score_latency": score_latency}
    finally:
        if client is not None:
            client.close()

    turns = data["lanes"][0]["turns"]
    if data["persona"] is None or data["persona"]["id"] != persona_id:
        problems.append(f"mismatch: persona {data['persona'] and data['persona']['id']!r}, chose {persona_id!r}")
    if [t["user"] for t in turns] != sent:
        problems.append(f"mismatch: {len(turns)} turns in the export, {len(sent)} sent (or other texts)")
    for t in turns:
        if not t["reply"]:
            problems.append(f"mismatch: turn {t['turn']} has no reply")
        if t["score"] is None:
            problems.append(f"mismatch: turn {t['turn']} has no score ({t['judge_error']})")
    if echo:
        if [t["reply"] for t in turns] != [f"echo {s}" for s in sent]:
            problems.append("mismatch: echo replies differ from the messages sent")
        if any(t["score"] != marker_score(marker) for t in turns):
            problems.append(f"mismatch: scores {[t['score'] for t in turns]}, expected {marker_score(marker)}")
        if not str(revealed).endswith(f"Revealed: {marker}"):
            problems.append(f"mismatch: induction read {str(revealed)[-80:]!r}")
    return {"marker": marker, "seen": seen, "problems": problems, "chat_latency": chat_latency,
            "score_latency": score_latency}


def run_wave(jobs: list[tuple]) -> list[dict]:
    """All sessions of one wave at once, one thread each (run in the client process)."""
    with ThreadPoolExecutor(len(jobs)) as pool:
        return list(pool.map(lambda job: run_session(*job), jobs))


def run_load_test(sessions: int = 20, messages: int | None = None, waves: int = 3, backend: str = "echo",
                  delay_ms: float = 5.0, reply_max_new_tokens: int = 16, secrets: list[str] | None = None,
                  settle_s: float = 1.0, clients_in_process: bool = False, **config_overrides) -> dict:
    """Run the load test; returns the JSON-ready report (no secret in it: only how many were checked).

    The Space runs in this process; the clients run in one spawned child process (threads, one per session),
    so the RSS and the log records measured are the Space's alone and the clients do not compete for its GIL.
    `clients_in_process=True` runs them as threads here instead (RSS then includes them).
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import gradio

    from aloe_bench.space.ui import SpaceUI, launch_options

    if not 1 <= sessions <= 999 or waves < 1:
        raise ConfigError("sessions must be 1..999 (markers carry a 3-digit index) and waves at least 1")
    echo = backend == "echo"
    if backend not in ("echo", "embedded"):
        raise ConfigError(f"backend {backend!r}: choose echo or embedded")
    messages = messages or (3 if echo else 1)
    secrets = secret_values() if secrets is None else [s for s in secrets if s]
    if echo:
        base = {"model": ECHO_SPECS["assistant"], "user_model": ECHO_SPECS["user"], "judge_model": ECHO_SPECS["judge"]}
        loader = echo_loader(delay_ms / 1000)
    else:
        from aloe_bench.core.backends import build_backend

        base = {"model": "embedded", "user_model": "embedded", "judge_model": "embedded",
                "reply_max_new_tokens": reply_max_new_tokens, "induction_max_new_tokens": reply_max_new_tokens}
        loader = build_backend
    # the queue must hold every session's event at once, or the load test measures refusals
    config = SpaceConfig(**{**base, "max_queue": max(2 * sessions, 32), "max_turns": max(messages, 20),
                            **config_overrides})

    capture = _LogCapture()
    root = logging.getLogger()
    root_level = root.level
    root.addHandler(capture)
    root.setLevel(min(root_level or logging.WARNING, logging.INFO))  # INFO records too (httpx logs each request)
    sampler = _RSSSampler()
    rss_start = sampler.now()
    sampler.start()
    ui = SpaceUI(config, loader)
    if not echo:  # load the model before timing anything
        loader(config.model)
    demo = ui.build()
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    report_waves, results, shared_pages = [], [], []
    started = time.perf_counter()
    personas = ui.sets[ui.default_set].personas
    clients = None if clients_in_process else ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    try:
        demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                    **launch_options(config))
        holder = demo.state_holder
        gc.collect()
        sessions_at_launch = S.live_sessions()  # the app's own (the State's initial value), before any client
        with tempfile.TemporaryDirectory(prefix="aloe-loadtest-") as download_dir:
            for wave in range(waves):
                wave_id = f"{random.getrandbits(24):06x}"
                jobs = []
                for i in range(sessions):
                    persona = personas[(wave * sessions + i) % len(personas)]
                    jobs.append((url, f"mk{wave_id}s{i:03d}", ui.default_set, persona_label(persona), persona.id,
                                 messages, echo, download_dir))
                wave_started = time.perf_counter()
                if clients is None:
                    wave_results = run_wave(jobs)
                else:
                    wave_results = clients.submit(run_wave, jobs).result()
                wave_seconds = time.perf_counter() - wave_started
                results.extend(wave_results)
                for page in ("config", "gradio_api/info", "gradio_api/info?all_endpoints=true", ""):
                    shared_pages.append((page, _get(url + page)))
                time.sleep(settle_s)  # closed clients' heartbeats end; gradio marks their sessions closed
                gc.collect()
                rss = sampler.now()
                trimmed = _trimmed_rss(sampler.process)
                report_waves.append({
                    "wave": wave + 1, "seconds": round(wave_seconds, 2),
                    "rss_mb": _mb(rss), "rss_trimmed_mb": None if trimmed is None else _mb(trimmed),
                    "sessions_held": len(holder.session_data),
                    "chat_sessions_alive": S.live_sessions(),
                    "chat_sessions_with_turns": _sessions_with_turns(),
                    # gradio 6.31's queue keeps an (empty) entry per session hash it has served: not bounded by
                    # max_sessions, a few hundred bytes each (see docs/hardening.md)
                    "gradio_queue_session_entries": len(getattr(demo._queue, "pending_event_ids_session", ())),
                })
        # what one held session costs: drop every session gradio holds and see what the process gives back
        held, before = len(holder.session_data), _trimmed_rss(sampler.process)
        holder.session_data.clear()
        after = _trimmed_rss(sampler.process)
        per_session_kb = None if before is None or not held else round((before - after) / held / 1024, 1)
    finally:
        if clients is not None:
            clients.shutdown()
        demo.close()
        sampler.stop()
        root.removeHandler(capture)
        root.setLevel(root_level)
    gc.collect()
    rss_end = sampler.now()

    leaks, problems, secret_hits = 0, [], 0
    for result in results:
        own = result["marker"]
        foreign = {m for text in result["seen"] for m in MARKER.findall(text)} - {own}
        if foreign:
            leaks += len(foreign)
            problems.append(f"leak: session {own} saw {sorted(foreign)[:5]}")
        problems.extend(f"{own}: {p}" for p in result["problems"])
        secret_hits += sum(secret in text for text in result["seen"] for secret in secrets)
    for page, text in shared_pages:
        found = set(MARKER.findall(text))
        if found:
            leaks += len(found)
            problems.append(f"leak: the shared page /{page} holds session markers {sorted(found)[:5]}")
        secret_hits += sum(secret in text for secret in secrets)
    secret_hits += sum(secret in line for line in capture.lines for secret in secrets)

    chat = [x for r in results for x in r["chat_latency"]]
    score = [x for r in results for x in r["score_latency"]]
    report = {
        "backend": backend if not echo else f"echo ({delay_ms:g} ms per streamed word)",
        "concurrent_sessions": sessions,
        "waves": waves,
        "sessions": len(results),
        "messages_per_session": messages,
        "messages": len(chat),
        "errors": sum(p.startswith("error") for r in results for p in r["problems"]),
        "leaks": leaks,
        "mismatches": sum(p.startswith("mismatch") for r in results for p in r["problems"]),
        "secret_leaks": secret_hits,
        "secrets_checked": len(secrets),
        "log_records_scanned": len(capture.lines),
        "problems": [redact(p) for p in problems[:20]],  # diagnostics only: the counts above are the verdict
        "latency_s": {"chat_p50": percentile(chat, 50), "chat_p95": percentile(chat, 95),
                      "score_p50": percentile(score, 50), "score_p95": percentile(score, 95)},
        "wall_s": round(time.perf_counter() - started, 2),
        "rss_mb": {"start": _mb(rss_start), "peak": _mb(sampler.peak), "end": _mb(rss_end),
                   "growth_after_first_wave": round(report_waves[-1]["rss_mb"] - report_waves[0]["rss_mb"], 1),
                   "trimmed_growth_after_first_wave": None if report_waves[0]["rss_trimmed_mb"] is None else
                   round(report_waves[-1]["rss_trimmed_mb"] - report_waves[0]["rss_trimmed_mb"], 1),
                   "per_held_session_kb": per_session_kb},
        "per_wave": report_waves,
        "chat_sessions_at_launch": sessions_at_launch,
        "space": {"max_sessions": config.max_sessions, "session_ttl_s": config.session_ttl_s,
                  "concurrency_limit": config.concurrency_limit, "max_queue": config.max_queue},
        "versions": {"gradio": gradio.__version__},
    }
    return report


def _sessions_with_turns() -> int:
    return sum(1 for s in list(S._LIVE) if s.n_turns)
