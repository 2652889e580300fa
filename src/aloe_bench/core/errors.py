"""The errors a user can act on, and how the `aloe` command reports them.

Every user-facing error derives from `AloeError`: a bad flag, recipe field, input file or line, a model that
cannot be loaded, an upload the Hub refused. Its message names what to fix (the flag, field, `file:line`).
`aloe` prints it on one line (`aloe: error: ...`) and exits with the class's `exit_code`; a traceback is
shown only with `aloe --debug` (or `ALOE_DEBUG=1`). Anything else that escapes is a bug and keeps its traceback.

The specific classes (`PersonaFileError`, `RunFileError`, ...) live next to the code that raises them and
keep their `ValueError` / `RuntimeError` bases, so callers that catch those still do.
"""

from __future__ import annotations


class AloeError(Exception):
    """Base of every error whose message is meant for the user; `aloe` prints it and exits `exit_code`."""

    exit_code = 2  # bad input: usage, config, files

    def one_line(self) -> str:
        """The message on one line (a multi-line message, e.g. a tool's stderr, is joined with ' | ')."""
        lines = [line.strip() for line in str(self).splitlines() if line.strip()]
        return " | ".join(lines) or type(self).__name__


class ConfigError(AloeError, ValueError):
    """A setting is invalid: a flag or argument, a recipe file or field, an environment variable; the message
    names it."""


class MissingFileError(ConfigError, FileNotFoundError):
    """A file or folder the user named is missing or lacks what it must hold (a model folder without config.json);
    also a `FileNotFoundError` for callers that catch that."""


class DependencyError(AloeError, RuntimeError):
    """A package or wheel the command needs is not installed; the message says what to install."""


class HubUploadError(AloeError, RuntimeError):
    """An upload to the Hub failed (offline, auth, HTTP); nothing was half-uploaded. Exit code 1: the input was
    fine, the operation failed."""

    exit_code = 1
