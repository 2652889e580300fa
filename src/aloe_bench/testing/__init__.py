"""Apparatus that the benchmarks and the tests share: a fault-injecting proxy (`fault_proxy`), a `transformers
serve` launcher (`serve`), what such local servers share (`local_server`) and fake chat backends (`backends`).

The product (core, harness, training, space, commands) never imports it. Its third-party packages come
with the `bench` extra; `require` turns a missing one into a one-line error that names the extra to install.
"""

from __future__ import annotations

import importlib.util

from aloe_bench.core.errors import DependencyError

#: the extra that installs each third-party package the benchmarks and this apparatus import
EXTRA_OF = {"aiohttp": "bench", "psutil": "bench", "gradio": "space", "gradio_client": "space"}


class MissingExtra(DependencyError):
    """A benchmark or test tool needs a package that is not installed; the message says which extra has it."""


def missing(*modules: str) -> list[str]:
    """The `modules` that cannot be imported here (checked without importing them)."""
    return [name for name in modules if importlib.util.find_spec(name) is None]


def require(*modules: str, who: str = "this tool") -> None:
    """Raise `MissingExtra` naming the extra(s) to install when any of `modules` is absent."""
    absent = missing(*modules)
    if absent:
        extras = sorted({EXTRA_OF.get(name, "bench") for name in absent})
        which = f"the {extras[0]!r} extra installs" if len(extras) == 1 else \
            f"the {' and '.join(map(repr, extras))} extras install"
        raise MissingExtra(f"{who} needs {', '.join(absent)}, which {which}: "
                           f"pip install 'aloe-bench[{','.join(extras)}]'")
