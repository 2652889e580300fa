"""A latency server: an OpenAI-compatible endpoint on 127.0.0.1 that answers after a seeded log-normal delay.

It is a measuring instrument for schedules (`aloe bench schedule`), not a stand-in for any role: every answer is
the same ~60-word text, so all that differs between two runs is when requests are sent. Each request is
attributed to a conversation, a role and a turn, and its delay is a deterministic draw from those (and the
seed), so two schedules of the same evaluation wait the same latencies, request for request:

- the role is the request's `model` (the benchmark names its roles' models, e.g. `aloe-user`);
- the conversation is a key minted from the first message of the role-play user's first request (the persona
  prompt); every answer ends with a reference `ref KEY-<role letter><turn>: 4`, so the evaluated model's and
  the judge's requests, which quote the user's messages, carry the key of their conversation;
- the turn is one more than the latest user turn quoted for the role-play user's requests, and the latest
  quoted user turn for the others.

The answer ends with a digit so that a judge reading text answers parses a score (the reference before it
differs per role and turn, so the score is never a copy of the reply being judged).

Endpoints: `POST /v1/chat/completions` (streaming too), `GET /records` (one record per request), `POST /reset`,
`GET /health`. Run alone: `python -m aloe_bench.bench.latency_server --port 8009 --seed 0`.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import re
import sys
import time
import urllib.request
from collections import Counter
from statistics import NormalDist

from aloe_bench.testing.local_server import ChildServer, free_port

REPLY = ("That sounds like a good plan, and I like that you are keeping it realistic. When I tried something "
         "similar, the hard part was sticking with it once the week got busy, so I set aside two fixed evenings "
         "and treated them like appointments. It helped more than I expected. What has been the trickiest part "
         "for you so far, and how are you fitting it in around everything else?")
REF = re.compile(r"ref ([0-9a-f]{8})-([a-z])(\d+)")


def conversation_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]


def draw_latency(seed: int, key: str, role: str, turn: int, attempt: int, median_s: float, sigma: float) -> float:
    """A log-normal delay (median `median_s`, log-space sd `sigma`), a pure function of the request's identity."""
    digest = hashlib.sha256(f"{seed}|{key}|{role}|{turn}|{attempt}".encode()).digest()
    u = (int.from_bytes(digest[:8], "big") + 0.5) / 2.0 ** 64
    return median_s * math.exp(sigma * NormalDist().inv_cdf(u))


def attribute(role: str, messages: list[dict], user_role: str) -> tuple[str, int]:
    """(conversation key, turn) of a request, from the references its messages quote."""
    text = "\n".join(str(m.get("content", "")) for m in messages)
    refs = REF.findall(text)
    user_turns = [int(turn) for _, letter, turn in refs if letter == "u"]
    if role == user_role:
        return conversation_key(str(messages[0].get("content", ""))), max(user_turns, default=0) + 1
    if refs:
        return refs[0][0], max(user_turns, default=0)
    return conversation_key(text), 0  # a request from no conversation the server has seen


class LatencyApp:
    """The aiohttp application (in whatever process runs it)."""

    def __init__(self, seed: int = 0, median_s: float = 0.5, sigma: float = 0.8, user_role: str = "aloe-user"):
        self.seed, self.median_s, self.sigma, self.user_role = seed, median_s, sigma, user_role
        self.records: list[dict] = []
        self._attempts: Counter = Counter()
        self._began = time.monotonic()

    def app(self):
        from aiohttp import web

        app = web.Application(client_max_size=64 * 1024 ** 2)
        app.router.add_post("/v1/chat/completions", self.completions)
        app.router.add_get("/records", self.get_records)
        app.router.add_post("/reset", self.reset)
        app.router.add_get("/health", lambda _: web.json_response({"ok": True}))
        return app

    async def reset(self, _request):
        from aiohttp import web

        self.records, self._attempts, self._began = [], Counter(), time.monotonic()
        return web.json_response({"ok": True})

    async def get_records(self, _request):
        from aiohttp import web

        return web.json_response({"records": self.records, "settings": {
            "seed": self.seed, "median_s": self.median_s, "sigma": self.sigma, "reply_words": len(REPLY.split())}})

    async def completions(self, request):
        from aiohttp import web

        arrived = time.monotonic()
        body = await request.json()
        role = str(body.get("model", ""))
        key, turn = attribute(role, body.get("messages") or [{}], self.user_role)
        attempt = self._attempts[(key, role, turn)]
        self._attempts[(key, role, turn)] += 1
        latency = draw_latency(self.seed, key, role, turn, attempt, self.median_s, self.sigma)
        await asyncio.sleep(latency)
        letter = (role.rsplit("-", 1)[-1][:1] or "x").lower()
        content = f"{REPLY} ref {key}-{letter}{turn}: 4"
        self.records.append({"conversation": key, "role": role, "turn": turn, "attempt": attempt,
                             "latency_s": round(latency, 6), "start_s": round(arrived - self._began, 6),
                             "end_s": round(time.monotonic() - self._began, 6)})
        created, tokens = int(time.time()), len(content.split())
        if body.get("stream"):
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            for delta, finish in (({"role": "assistant", "content": content}, None), ({}, "stop")):
                chunk = {"id": f"chatcmpl-{len(self.records)}", "object": "chat.completion.chunk", "created": created,
                         "model": role, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
                await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
            return response
        return web.json_response({
            "id": f"chatcmpl-{len(self.records)}", "object": "chat.completion", "created": created, "model": role,
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 0, "completion_tokens": tokens, "total_tokens": tokens}})


class LatencyServer(ChildServer):
    """Runs the server in its own process (so its work never shares a GIL with the client being measured)."""

    name = "latency server"

    def __init__(self, seed: int = 0, median_s: float = 0.5, sigma: float = 0.8, user_role: str = "aloe-user",
                 port: int | None = None, startup_timeout_s: float = 30.0):
        self.seed, self.median_s, self.sigma, self.user_role = seed, median_s, sigma, user_role
        port = port or free_port()
        super().__init__([sys.executable, "-m", "aloe_bench.bench.latency_server", "--port", str(port), "--seed",
                          str(seed), "--median-s", str(median_s), "--sigma", str(sigma), "--user-role", user_role],
                         port, startup_timeout_s, poll_s=0.1, stop_timeout_s=10)

    def _get(self, path: str, data: bytes | None = None) -> dict:
        with urllib.request.urlopen(urllib.request.Request(self.url + path, data=data), timeout=30) as response:
            return json.loads(response.read())

    def records(self) -> list[dict]:
        return self._get("/records")["records"]

    def reset(self) -> None:
        self._get("/reset", data=b"")


def main(argv: list[str] | None = None) -> int:
    from aiohttp import web

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8009)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--median-s", type=float, default=0.5)
    parser.add_argument("--sigma", type=float, default=0.8)
    parser.add_argument("--user-role", default="aloe-user", help="The `model` name of the role-play user's requests.")
    args = parser.parse_args(argv)
    app = LatencyApp(args.seed, args.median_s, args.sigma, args.user_role)
    web.run_app(app.app(), host="127.0.0.1", port=args.port, print=None, access_log=None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
