"""Redaction at the Space's boundary: no secret from the environment ever reaches a page, an export or a log.

The Space reads its keys (OPENAI_API_KEY, HF_TOKEN, ...) only from the environment, but text that comes back
from a backend can still carry one: an OpenAI-compatible proxy whose error body echoes the request headers,
an exception that prints its arguments. Every message built from a failure, every export and every handler
output goes through `redact` (exact values of secret-like variables) or `scrub` (the same, through nested
lists, tuples and dicts) before it leaves the process.
"""

from __future__ import annotations

import os
import re

# Variables whose values are secrets: anything named like a key, token, secret, password or credential.
SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH)", re.IGNORECASE)
# The variables the project itself reads, always treated as secrets whatever their value looks like.
KNOWN_SECRETS = ("OPENAI_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HUGGINGFACE_HUB_TOKEN")
# Values shorter than this are not secrets (flags such as "1" or "false" would otherwise be rewritten everywhere).
MIN_SECRET_CHARS = 8
# Credentials that look like credentials, wherever they come from (an echoed header, a pasted key).
TOKEN_PATTERNS = (
    re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"\bsk-[A-Za-z0-9_-]{16,}"),
    re.compile(r"\bhf_[A-Za-z0-9]{20,}"),
)
MASK = "[redacted]"


def secret_values(environ=None) -> list[str]:
    """Values of the environment's secret-like variables, longest first (read at call time: keys may rotate)."""
    environ = os.environ if environ is None else environ
    values = {value.strip() for name, value in environ.items()
              if (name in KNOWN_SECRETS or SECRET_NAME.search(name)) and len(value.strip()) >= MIN_SECRET_CHARS}
    return sorted(values, key=len, reverse=True)


def redact(text, environ=None):
    """`text` with every secret value and every credential-shaped token replaced by [redacted]; non-str as is."""
    if not isinstance(text, str) or not text:
        return text
    for value in secret_values(environ):
        if value in text:
            text = text.replace(value, MASK)
    for pattern in TOKEN_PATTERNS:
        text = pattern.sub(lambda m: f"{m.group(1)} {MASK}" if m.lastindex else MASK, text)
    return text


def scrub(value, secrets: list[str] | None = None):
    """Exact secret values removed from every string inside lists, tuples and dicts (other objects as they are).

    Cheap enough for every streamed update: one substring test per secret and string. Patterns are not applied
    here, so a user's own message is never rewritten unless it holds the Space's own secret.
    """
    secrets = secret_values() if secrets is None else secrets
    if not secrets:
        return value
    if isinstance(value, str):
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, MASK)
        return value
    if isinstance(value, tuple):
        return tuple(scrub(v, secrets) for v in value)
    if isinstance(value, list):
        return [scrub(v, secrets) for v in value]
    if isinstance(value, dict):
        return {k: scrub(v, secrets) for k, v in value.items()}
    return value
