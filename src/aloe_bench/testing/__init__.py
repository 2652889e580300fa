"""Apparatus that the benchmarks and the tests share: a fault-injecting proxy (`fault_proxy`), a `transformers
serve` launcher (`serve`), what such local servers share (`local_server`) and fake chat backends (`backends`).

The product (core, harness, training, space, commands) never imports it. Its third-party packages come
with the `bench` extra; `aloe_bench.core.extras.require_extra` turns a missing one into a one-line error that
names the extra to install.
"""

from __future__ import annotations
