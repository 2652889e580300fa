"""Benchmarks: what every `aloe bench ...` command runs (commands/bench.py registers them), with the measuring
instruments they use (the latency server of `aloe bench schedule`) and their data (the hostile-reply suite).

Only the `aloe bench` command imports this package, inside its handlers; the rest of the product never does. Its
third-party packages come with the `bench` extra (`pip install 'aloe-bench[bench]'`).
"""
