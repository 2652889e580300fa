"""The Space's one error type: what a visitor asked for cannot be done, worded for the page."""

from __future__ import annotations

from aloe_bench.core.errors import AloeError

from .redact import redact


class SpaceError(AloeError, ValueError):
    """Something the person asked for cannot be done; the message is shown in the UI as is (secrets redacted)."""

    def __init__(self, message: str):
        super().__init__(redact(message))
