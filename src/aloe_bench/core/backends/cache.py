"""On-disk request cache: a repeated request (same model, revision, template, messages, settings) is free.

Only successful answers are stored, so failures are retried on the next run. Writes are committed
after every batch (or single request), so a crash loses at most what was in flight.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path

from .base import Completion, GenerationConfig, Messages, OptionScores
from .delegating import DelegatingBackend


class RequestCache:
    """A SQLite file of answers keyed by the sha256 of their request; shared by threads and counting hits and misses.

    One file serves every backend of a run (`CachedBackend` puts the model, revision and template in each key), and
    it stays in the output folder so a re-run of the same command answers from it.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS requests (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self._db.commit()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(payload: dict) -> str:
        return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()

    def get_many(self, keys: list[str]) -> dict[str, dict]:
        found: dict[str, dict] = {}
        with self._lock:
            for start in range(0, len(keys), 500):
                part = keys[start:start + 500]
                marks = ",".join("?" * len(part))
                for key, value in self._db.execute(f"SELECT key, value FROM requests WHERE key IN ({marks})", part):
                    found[key] = json.loads(value)
        return found

    def put_many(self, items: dict[str, dict]) -> None:
        if not items:
            return
        with self._lock:
            self._db.executemany(
                "INSERT OR REPLACE INTO requests (key, value) VALUES (?, ?)",
                [(k, json.dumps(v, ensure_ascii=False)) for k, v in items.items()],
            )
            self._db.commit()

    def close(self) -> None:
        with self._lock:
            self._db.close()


class CachedBackend(DelegatingBackend):
    """Wraps a backend; looks every request up in a `RequestCache` first and sends only the misses.

    A batch's misses go to the wrapped backend as one batch; a single awaitable request that hits answers at
    once, without a request, and a miss goes through the wrapped backend's own async path.
    """

    def __init__(self, inner, cache: RequestCache):
        super().__init__(inner)
        self.cache = cache

    def _identity(self) -> dict:
        return {"model": self.inner.model_id, "revision": self.inner.resolved_revision,
                "template": self.inner.chat_template_hash}

    def _key(self, kind: str, messages: Messages, extra: dict) -> str:
        return self.cache.key({"kind": kind, **self._identity(), "messages": messages, **extra})

    def _cached(self, kind, conversations, extra, compute, encode, decode):
        keys = [self._key(kind, m, extra) for m in conversations]
        found = self.cache.get_many(keys)
        self.cache.hits += len(found)
        missing = [i for i, k in enumerate(keys) if k not in found]
        self.cache.misses += len(missing)
        fresh = compute([conversations[i] for i in missing]) if missing else []
        results = [None] * len(conversations)
        store = {}
        for i, value in zip(missing, fresh):
            results[i] = value
            if value.error is None:
                store[keys[i]] = encode(value)
        self.cache.put_many(store)
        for i, key in enumerate(keys):
            if results[i] is None:
                results[i] = decode(found[key])
        return results

    def _generate_batch(self, conversations: list[Messages], config: GenerationConfig) -> list[Completion]:
        return self._cached("generate", conversations, {"config": config.to_dict()},
                            lambda batch: self.inner.generate(batch, config),
                            lambda c: {"text": c.text, "tokens": c.tokens}, _decode_completion)

    def _score_options_batch(self, conversations: list[Messages], options: list[str]) -> list[OptionScores]:
        return self._cached("options", conversations, {"options": options},
                            lambda batch: self.inner.score_options(batch, options),
                            lambda s: {"probs": s.probs, "mass": s.mass}, _decode_scores)

    async def _acached(self, kind, messages, extra, compute, encode, decode):
        key = self._key(kind, messages, extra)
        found = self.cache.get_many([key])
        if key in found:
            self.cache.hits += 1
            return decode(found[key])
        self.cache.misses += 1
        value = await compute()
        if value.error is None:
            self.cache.put_many({key: encode(value)})
        return value

    async def agenerate(self, messages: Messages, config: GenerationConfig) -> Completion:
        return await self._acached("generate", messages, {"config": config.to_dict()},
                                   lambda: self.inner.agenerate(messages, config),
                                   lambda c: {"text": c.text, "tokens": c.tokens}, _decode_completion)

    async def ascore_options(self, messages: Messages, options: list[str]) -> OptionScores:
        return await self._acached("options", messages, {"options": options},
                                   lambda: self.inner.ascore_options(messages, options),
                                   lambda s: {"probs": s.probs, "mass": s.mass}, _decode_scores)


def _decode_completion(value: dict) -> Completion:
    return Completion(text=value["text"], tokens=value["tokens"], latency_s=0.0, cached=True)


def _decode_scores(value: dict) -> OptionScores:
    return OptionScores(probs=value["probs"], mass=value["mass"], cached=True)


__all__ = ["RequestCache", "CachedBackend"]
