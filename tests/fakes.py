"""Test-only helpers. The fake backends moved to `aloe_bench.testing.backends` (the benchmarks use them too);
`ScriptedBackend` is re-exported so tests that import it from here keep working."""

from aloe_bench.testing.backends import ScriptedBackend

__all__ = ["ScriptedBackend"]
