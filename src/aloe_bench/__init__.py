"""aloe_bench: personalised alignment through interaction (ALOE) — harness, data, training and Space."""

__version__ = "0.1.0"
