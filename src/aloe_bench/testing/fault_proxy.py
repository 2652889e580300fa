"""A fault-injecting reverse proxy for OpenAI-compatible servers, to test that clients survive a hostile network.

Put it in front of a real server (`transformers serve`, vLLM, ...) on 127.0.0.1 and point the client at it.
Each POST to `/v1/chat/completions` is a numbered request; whether it gets a fault, and which, is decided by
`FaultPlan.decide(index)`: a seeded draw per request index (so the same seed gives the same fault
sequence), optionally after a fixed `schedule` for the first requests; or a fixed kind for requests whose
body contains a poison marker (`FaultPlan.poisoned(body)`: a request that always fails, to check that failures
are recorded and not invented; poisoned requests do not use up request indices). Everything else is passed
through untouched.

Fault kinds:
- `timeout`: nothing is forwarded; the proxy holds the connection for `hang_s` (longer than the client's
  timeout), then answers 504;
- `rate_limit`: 429 with a `Retry-After` header;
- `server_error`: 500 with an OpenAI-style error body;
- `cut_stream`: the request is forwarded, and the real answer is cut off half way (mid-SSE for
  `stream: true`, mid-body otherwise) by closing the connection;
- `malformed_json`: 200 with a truncated JSON body (or a truncated SSE event);
- `empty_content`: 200 with a well-formed completion whose content is "".

Counters: `FaultProxy.stats()` in process, or `GET /faults/stats` over HTTP. A client that sends an
`X-Aloe-Request-Id` header (the project's OpenAI backend does, the same id on every retry of one logical
request) gets its faults listed per id, so "faults survived" can be counted exactly.

Run it alone with `python -m aloe_bench.testing.fault_proxy --upstream http://127.0.0.1:8000 --port 8001`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field

from .local_server import LocalServer

FAULT_KINDS = ("timeout", "rate_limit", "server_error", "cut_stream", "malformed_json", "empty_content")
REQUEST_ID_HEADER = "X-Aloe-Request-Id"
FAULT_PATHS = ("/v1/chat/completions",)
# Hop-by-hop headers (RFC 9110 7.6.1) and those aiohttp recomputes: never copied across the proxy.
_SKIP_HEADERS = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                 "transfer-encoding", "upgrade", "host", "content-length", "content-encoding"}


def parse_rates(text: str) -> dict[str, float]:
    """`"timeout=0.05,rate_limit=0.1"` -> {"timeout": 0.05, "rate_limit": 0.1}; `all=R` sets every kind."""
    rates: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        name = name.strip()
        if name == "all":
            rates.update({kind: float(value) for kind in FAULT_KINDS})
        elif name in FAULT_KINDS:
            rates[name] = float(value)
        else:
            raise ValueError(f"unknown fault kind {name!r}: choose from {', '.join(FAULT_KINDS)} or all")
    return rates


@dataclass(frozen=True)
class FaultPlan:
    """Which request gets which fault. Deterministic in (seed, request index, body)."""

    rates: dict[str, float] = field(default_factory=dict)  # kind -> probability per request
    seed: int = 0
    hang_s: float = 30.0  # a `timeout` holds the connection this long: set it above the client's timeout
    retry_after_s: int = 1
    poison: tuple[tuple[str, str], ...] = ()  # (marker, kind): a body containing marker always gets kind
    schedule: tuple[str | None, ...] = ()  # fixed faults (or None) for requests 0, 1, ...; then the draws

    def __post_init__(self):
        unknown = (set(self.rates) | {k for _, k in self.poison} | set(filter(None, self.schedule))) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}: choose from {FAULT_KINDS}")
        if any(r < 0 for r in self.rates.values()) or sum(self.rates.values()) > 1:
            raise ValueError(f"fault rates must be >= 0 and sum to at most 1, got {self.rates}")

    def poisoned(self, body: bytes) -> str | None:
        """The fixed fault of a request whose body holds a poison marker (None for any other request)."""
        for marker, kind in self.poison:
            if marker.encode() in body:
                return kind
        return None

    def decide(self, index: int) -> str | None:
        """The fault for request number `index` (0-based, poisoned requests not counted), or None."""
        if index < len(self.schedule):
            return self.schedule[index]
        draw = random.Random(f"{self.seed}:{index}").random()
        edge = 0.0
        for kind in FAULT_KINDS:
            edge += self.rates.get(kind, 0.0)
            if draw < edge:
                return kind
        return None

    def to_dict(self) -> dict:
        return asdict(self)


class FaultProxy(LocalServer):
    """The proxy, served by aiohttp on its own event loop in a background thread.

    >>> with FaultProxy("http://127.0.0.1:8000", FaultPlan({"rate_limit": 0.1}, seed=1)) as proxy:
    ...     ...  # point the client at proxy.base_url; proxy.stats() counts what was injected
    """

    def __init__(self, upstream: str, plan: FaultPlan, host: str = "127.0.0.1", port: int = 0):
        self.upstream = upstream.rstrip("/").removesuffix("/v1")
        self.plan = plan
        self.host = host
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.port = self._sock.getsockname()[1]
        self._lock = threading.Lock()
        self._next_index = 0
        self._events: list[dict] = []  # one per fault-eligible request: index, fault, request id, time
        self._passthrough = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._closing: asyncio.Event | None = None
        self._error: BaseException | None = None

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> "FaultProxy":
        from aloe_bench.core.extras import require_extra

        require_extra("aiohttp", who="the fault proxy")
        self._thread = threading.Thread(target=self._serve, name="fault-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(30) or self._error is not None:
            raise RuntimeError(f"fault proxy did not start: {self._error!r}")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._closing is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._closing.set)
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _serve(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to start(); the thread must not die silently
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        import aiohttp
        from aiohttp import web

        self._loop = asyncio.get_running_loop()
        self._closing = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/faults/stats", self._stats_handler)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=None)
        async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as session:
            self._session = session
            runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
            await runner.setup()
            await web.SockSite(runner, self._sock).start()
            self._ready.set()
            try:
                await self._closing.wait()
            finally:
                await runner.cleanup()

    # -- counters ---------------------------------------------------------------------------------
    def stats(self) -> dict:
        """Requests seen, faults injected per kind, and the faults each client request id met."""
        with self._lock:
            events = list(self._events)
            passthrough = self._passthrough
        faults = Counter(e["fault"] for e in events if e["fault"])
        attempts: dict[str, list[str | None]] = {}
        for e in events:
            if e["request_id"]:
                outcome = e["fault"] or ("client_gone" if e["client_gone"] else None)
                attempts.setdefault(e["request_id"], []).append(outcome)
        by_id = {rid: [f for f in seq if f] for rid, seq in attempts.items() if any(seq)}
        return {
            "requests": len(events),
            "distinct_request_ids": len(attempts),  # logical requests of clients that send REQUEST_ID_HEADER
            "repeated_attempts": sum(len(seq) - 1 for seq in attempts.values()),  # retries: the client's and ours
            "passed_through": len(events) - sum(faults.values()),
            "client_gone": sum(1 for e in events if e["client_gone"]),  # passed through, but nobody was waiting
            "other_requests": passthrough,  # /health, /v1/models, ...: never faulted
            "faults": {kind: faults.get(kind, 0) for kind in FAULT_KINDS},
            "faults_total": sum(faults.values()),
            "poisoned": sum(1 for e in events if e["poisoned"]),
            "faults_by_request_id": by_id,
            # per attempt, in order: the fault, or None (answered), or "client_gone" (passed through, but the
            # client had stopped waiting: its own timeout, with no fault injected)
            "attempts_by_request_id": attempts,
            "faults_without_request_id": sum(1 for e in events if e["fault"] and not e["request_id"]),
            "plan": self.plan.to_dict(),
        }

    async def _stats_handler(self, request):
        from aiohttp import web

        return web.json_response(self.stats())

    # -- the proxy --------------------------------------------------------------------------------
    async def _handle(self, request):
        body = await request.read()
        if request.method != "POST" or request.path not in FAULT_PATHS:
            with self._lock:
                self._passthrough += 1
            return await self._forward(request, body)
        fault = self.plan.poisoned(body)
        with self._lock:
            index = None
            if fault is None:  # poisoned requests do not use up the numbered (seeded, scheduled) decisions
                index = self._next_index
                self._next_index += 1
                fault = self.plan.decide(index)
            event = {"index": index, "fault": fault, "request_id": request.headers.get(REQUEST_ID_HEADER),
                     "poisoned": index is None, "client_gone": False, "time": time.time()}
            self._events.append(event)
        streaming = _wants_stream(body)
        if fault is None:
            try:
                return await self._forward(request, body)
            finally:  # the answer came, but the client had given up (its own timeout): no fault, still a loss
                transport = request.transport
                event["client_gone"] = transport is None or transport.is_closing()
        if fault == "timeout":
            return await self._hang()
        if fault == "rate_limit":
            return _error_response(429, "rate_limit_exceeded", "Rate limit reached (injected fault)",
                                   {"Retry-After": str(self.plan.retry_after_s)})
        if fault == "server_error":
            return _error_response(500, "server_error", "The server had an error (injected fault)")
        if fault == "cut_stream":
            return await self._forward(request, body, cut=True)
        model = _model_of(body)
        if fault == "malformed_json":
            return _malformed(streaming, model)
        return _empty(streaming, model)

    async def _hang(self):
        from aiohttp import web

        try:
            await asyncio.wait_for(self._closing.wait(), timeout=self.plan.hang_s)
        except asyncio.TimeoutError:
            pass
        return web.Response(status=504, text="gateway timeout (injected fault)")

    async def _forward(self, request, body: bytes, cut: bool = False):
        import aiohttp

        try:
            return await self._relay(request, body, cut)
        except aiohttp.ClientConnectionError as exc:  # the real server is down: say so, as a gateway would
            return _error_response(502, "bad_gateway", f"upstream {self.upstream} unreachable: {exc}")

    async def _relay(self, request, body: bytes, cut: bool):
        from aiohttp import web

        headers = {k: v for k, v in request.headers.items() if k.lower() not in _SKIP_HEADERS}
        async with self._session.request(request.method, self.upstream + request.path_qs, headers=headers,
                                         data=body or None) as upstream:
            out_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in _SKIP_HEADERS}
            if upstream.headers.get("Content-Type", "").startswith("text/event-stream"):
                response = web.StreamResponse(status=upstream.status, headers=out_headers)
                await response.prepare(request)
                if not cut:
                    async for chunk in upstream.content.iter_any():
                        await response.write(chunk)
                    await response.write_eof()
                    return response
                # Pass the first two events (the role chunk and the first piece of content), then cut.
                sent, pending = 0, b""
                async for chunk in upstream.content.iter_any():
                    pending += chunk
                    while sent < 2 and b"\n\n" in pending:
                        event, pending = pending.split(b"\n\n", 1)
                        await response.write(event + b"\n\n")
                        sent += 1
                    if sent >= 2:
                        break
                return _abort(request, response)
            data = await upstream.read()
        if not cut:
            return web.Response(status=upstream.status, body=data, headers=out_headers)
        response = web.StreamResponse(status=upstream.status, headers=out_headers)
        response.content_length = len(data)
        await response.prepare(request)
        await response.write(data[: len(data) // 2])
        return _abort(request, response)


def _abort(request, response):
    """Close the connection under a half-sent response: the client sees a truncated body or stream."""
    transport = request.transport
    if transport is not None:
        transport.close()
    response.force_close()
    return response


def _wants_stream(body: bytes) -> bool:
    try:
        return bool(json.loads(body).get("stream"))
    except (ValueError, AttributeError):
        return False


def _model_of(body: bytes) -> str:
    try:
        return str(json.loads(body).get("model") or "model")
    except (ValueError, AttributeError):
        return "model"


def _error_response(status: int, code: str, message: str, headers: dict | None = None):
    from aiohttp import web

    return web.json_response({"error": {"message": message, "type": code, "code": code}}, status=status,
                             headers=headers)


def _completion(model: str, content: str) -> dict:
    return {"id": "chatcmpl-injected", "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}}


def _chunk(model: str, delta: dict, finish_reason: str | None = None) -> str:
    chunk = {"id": "chatcmpl-injected", "object": "chat.completion.chunk", "created": int(time.time()),
             "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}
    return "data: " + json.dumps(chunk) + "\n\n"


def _malformed(streaming: bool, model: str):
    from aiohttp import web

    whole = json.dumps(_completion(model, "This answer never arrives whole."))
    if streaming:
        text = _chunk(model, {"role": "assistant"}) + _chunk(model, {"content": "This"})[:40] + "\n\ndata: [DONE]\n\n"
        return web.Response(status=200, text=text, content_type="text/event-stream")
    return web.Response(status=200, body=whole[: len(whole) // 2].encode(), content_type="application/json")


def _empty(streaming: bool, model: str):
    from aiohttp import web

    if streaming:
        text = _chunk(model, {"role": "assistant", "content": ""}) + _chunk(model, {}, "stop") + "data: [DONE]\n\n"
        return web.Response(status=200, text=text, content_type="text/event-stream")
    return web.json_response(_completion(model, ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aloe_bench.testing.fault_proxy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", required=True, help="The real server, e.g. http://127.0.0.1:8000")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--rates", default="all=0.05", help=f"kind=rate,... or all=R (kinds: {', '.join(FAULT_KINDS)})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hang-s", type=float, default=150.0, help="How long a timeout fault holds the connection.")
    parser.add_argument("--retry-after-s", type=int, default=1)
    args = parser.parse_args(argv)
    plan = FaultPlan(parse_rates(args.rates), seed=args.seed, hang_s=args.hang_s, retry_after_s=args.retry_after_s)
    with FaultProxy(args.upstream, plan, host=args.host, port=args.port) as proxy:
        print(f"fault proxy on {proxy.base_url} -> {proxy.upstream}; stats at {proxy.url}/faults/stats", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
