"""Optional extras: one check, one message, for every feature whose packages are not core dependencies.

A feature that needs such a package calls `require_extra` before it imports it, so a missing package is one line
naming what to install (`aloe` prints it), not an ImportError from deep inside the feature.
"""

from __future__ import annotations

import importlib.util
import sys

from .errors import DependencyError

#: the (package, extra) whose installation brings each optional module the project imports
INSTALLS = {
    "aiohttp": ("aloe-bench", "bench"), "psutil": ("aloe-bench", "bench"),
    "gradio": ("aloe-bench", "space"), "gradio_client": ("aloe-bench", "space"),
    "peft": ("aloe-bench", "train"), "vllm": ("aloe-bench", "vllm"),
    "authlib": ("gradio", "oauth"), "itsdangerous": ("gradio", "oauth"),
}


class MissingExtra(DependencyError):
    """A feature needs a package that is not installed; the message names the extra that installs it."""


def missing(*modules: str) -> list[str]:
    """The `modules` that cannot be imported here (checked without importing them; a module already imported, or
    set to None in `sys.modules` to hide it, answers as it is)."""
    def absent(name: str) -> bool:
        if name in sys.modules:
            return sys.modules[name] is None
        return importlib.util.find_spec(name) is None

    return [name for name in modules if absent(name)]


def require_extra(*modules: str, who: str = "this feature") -> None:
    """Raise `MissingExtra` naming the pip requirement(s) to install when any of `modules` is absent."""
    absent = missing(*modules)
    if absent:
        extras: dict[str, set[str]] = {}
        for name in absent:
            package, extra = INSTALLS.get(name, ("aloe-bench", "bench"))
            extras.setdefault(package, set()).add(extra)
        wanted = " ".join(f"'{package}[{','.join(sorted(names))}]'" for package, names in sorted(extras.items()))
        raise MissingExtra(f"{who} needs {', '.join(absent)}: pip install {wanted}")
