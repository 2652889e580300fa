"""Test-only helpers. The fake backends moved to `aloe_bench.testing.backends` (the benchmarks use them too);
`ScriptedBackend` is re-exported so tests that import it from here keep working."""

import asyncio
import threading
from contextlib import contextmanager

from aloe_bench.testing.backends import ScriptedBackend

__all__ = ["ScriptedBackend", "assert_append_only", "chat_server_thread"]


@contextmanager
def chat_server_thread(handler):
    """Serve `handler` (an aiohttp handler) at POST /v1/chat/completions on 127.0.0.1, in a thread of its own;
    yields the server's root URL (`http://127.0.0.1:PORT`)."""
    from aiohttp import web

    ready, state = threading.Event(), {}

    async def main():
        app = web.Application()
        app.router.add_post("/v1/chat/completions", handler)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        state.update(url=f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}",
                     stop=asyncio.Event(), loop=asyncio.get_running_loop())
        ready.set()
        await state["stop"].wait()
        await runner.cleanup()

    thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
    thread.start()
    assert ready.wait(10), "the chat server did not start"
    try:
        yield state["url"]
    finally:
        state["loop"].call_soon_threadsafe(state["stop"].set)
        thread.join(10)


def assert_append_only(chain: list[list[dict]], role: str, tokenizer=None) -> None:
    """Each request of `chain` (one conversation's requests of one role, turn by turn) starts with the one before:
    as a message list (what an endpoint is sent) and, with `tokenizer`, as the chat-template text and token ids
    a local model is given (generation prompt included), so a prefix cache reuses the whole earlier request."""
    for before, after in zip(chain, chain[1:]):
        assert len(after) > len(before) and after[:len(before)] == before, role
        if tokenizer is not None:
            texts = [tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True)
                     for m in (before, after)]
            assert texts[1].startswith(texts[0]), role
            ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
            assert ids[1][:len(ids[0])] == ids[0], role
