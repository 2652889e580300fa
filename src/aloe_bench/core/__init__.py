"""Shared core: persona sets, model specs and chat backends, prompts, judging, metrics, dataset schema.

`aloe_bench.harness`, `aloe_bench.training` and `aloe_bench.space` import from here and never from each other.
"""
