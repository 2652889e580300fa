"""Benchmarks: every `aloe bench ...` command (`cli.py` registers them), with the measuring instruments they run
(the latency server of `aloe bench schedule`) and their data (the hostile-reply suite).

The product (core, harness, training, space, deploy, reproduce) never imports this package; its third-party
packages come with the `bench` extra (`pip install 'aloe-bench[bench]'`).
"""
