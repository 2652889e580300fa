"""On-disk request cache: a repeated request (same model, revision, template, messages, settings) is free.

Only successful answers are stored, so failures are retried on the next run. Writes are committed
after every batch, so a crash loses at most the batch in flight.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path

from .base import ChatBackend, Completion, GenerationConfig, Messages, OptionScores


class RequestCache:
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


class CachedBackend(ChatBackend):
    """Wraps a backend; looks every request up in a `RequestCache` before sending the misses as one batch."""

    def __init__(self, inner: ChatBackend, cache: RequestCache):
        super().__init__(inner.spec)
        self.inner = inner
        self.cache = cache
        self.is_remote = inner.is_remote

    model_id = property(lambda self: self.inner.model_id)
    resolved_revision = property(lambda self: self.inner.resolved_revision)
    chat_template = property(lambda self: self.inner.chat_template)

    def describe(self) -> dict:
        return self.inner.describe()

    def stream(self, messages, config):
        return self.inner.stream(messages, config)

    def _identity(self) -> dict:
        return {"model": self.inner.model_id, "revision": self.inner.resolved_revision,
                "template": self.inner.chat_template_hash}

    def _cached(self, kind, conversations, extra, compute, encode, decode):
        keys = [self.cache.key({"kind": kind, **self._identity(), "messages": m, **extra}) for m in conversations]
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
        def decode(value):
            return Completion(text=value["text"], tokens=value["tokens"], latency_s=0.0, cached=True)

        return self._cached("generate", conversations, {"config": config.to_dict()},
                            lambda batch: self.inner.generate(batch, config),
                            lambda c: {"text": c.text, "tokens": c.tokens}, decode)

    def _score_options_batch(self, conversations: list[Messages], options: list[str]) -> list[OptionScores]:
        def decode(value):
            return OptionScores(probs=value["probs"], mass=value["mass"], cached=True)

        return self._cached("options", conversations, {"options": options},
                            lambda batch: self.inner.score_options(batch, options),
                            lambda s: {"probs": s.probs, "mass": s.mass}, decode)


__all__ = ["RequestCache", "CachedBackend"]
