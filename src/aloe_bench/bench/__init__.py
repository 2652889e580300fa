"""Benchmarks: what every `aloe bench ...` command runs (commands/bench.py registers them), with the measuring
instruments they use (the latency server of `aloe bench schedule`) and their data (the hostile-reply suite).

Only the `aloe bench` command imports this package, inside its handlers; the rest of the product never does. Its
third-party packages come with the `bench` extra (`pip install 'aloe-bench[bench]'`).
"""

from __future__ import annotations

#: third-party packages each benchmark imports beyond the core dependencies (see `aloe_bench.testing.EXTRA_OF`)
NEEDS = {
    "faults": ("aiohttp",),  # the fault proxy
    "schedule": ("aiohttp",),  # the latency server
    "space": ("gradio", "gradio_client", "psutil"),  # the Space, its clients, the RSS sampler
}


def require_packages(name: str) -> None:
    """Raise `MissingExtra` (one line naming the extra to install) when benchmark `name` lacks a package it needs."""
    from aloe_bench.testing import require

    require(*NEEDS.get(name, ()), who=f"aloe bench {name}")
