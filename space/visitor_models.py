"""Which models a Space's visitors may load, and with whose credentials: a bounded number, with their own token.

Every loaded backend stays in memory for the life of the process, so an open model box would let visitors
grow the process without bound, one spec at a time; and a model a visitor chose must never run on the
owner's secrets.
"""

from __future__ import annotations

import functools
import hashlib
import threading

from aloe_bench.core.backends import ChatBackend

from .errors import SpaceError
from .roles import Loader
from .space_config import SpaceConfig


class BoundedLoader:
    """The Space's model loader: the configured specs always load; visitors may add `max_extra_models` more.

    The configured specs are the owner's and load with the owner's credentials. On a public Space
    (`config.public`) any other spec is a visitor's and loads with `token=visitor_token or False`: a signed-in
    visitor's own Hub token or none, never HF_TOKEN, and an endpoint spec (which only has the owner's key) is
    refused by the backend; the `loader` must take that `token` keyword.
    """

    def __init__(self, loader: Loader, config: SpaceConfig):
        self.loader = loader
        self.configured = {s for s in (config.model, config.compare_model, config.user_model, config.judge_model,
                                       config.induction_model) if s}
        self.max_extra = config.max_extra_models
        self.public = config.public
        self.extra: set[tuple[str, str | None]] = set()
        self._lock = threading.Lock()

    def __call__(self, spec: str, visitor_token: str | None = None) -> ChatBackend:
        if spec in self.configured:
            return self.loader(spec)
        owner = not self.public  # e.g. `aloe space` on your own machine: who changes the models is the owner
        token = None if owner else (visitor_token or False)
        slot = (spec, hashlib.sha256(token.encode()).hexdigest() if isinstance(token, str) else None)
        reserved = False
        with self._lock:
            if slot not in self.extra:
                if len(self.extra) >= self.max_extra:
                    raise SpaceError(f"this Space already loaded its {self.max_extra} extra model(s); use one of "
                                     f"{sorted(self.configured | {s for s, _ in self.extra})}")
                self.extra.add(slot)
                reserved = True
        try:
            return self.loader(spec) if owner else self.loader(spec, token=token)
        except Exception:
            if reserved:  # a spec that failed to load does not use up the allowance
                with self._lock:
                    self.extra.discard(slot)
            raise

    def for_visitor(self, visitor_token: str | None) -> Loader:
        """The loader of one visitor's events: their own Hub token (None: not signed in) for the specs they chose."""
        return functools.partial(self, visitor_token=visitor_token)
