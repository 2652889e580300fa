"""The composition layer: the `aloe` command (`main.py`) and one module per top-level command, named after it.

It is the top of the house: these modules import the areas (harness, training, space) and the core, and nothing
imports them. Only `bench.py` may name the benchmarks (aloe_bench.bench), inside its handlers.
"""
