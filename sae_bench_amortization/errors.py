"""The package's own error for bad user input.

Anything raised as :class:`InputError` is reported by the CLI as one line on stderr with exit code 2;
any other exception is an internal error (exit code 1).
"""

from __future__ import annotations

import difflib


class InputError(ValueError):
    """Bad input from the user (a path, a flag, a file's content). The message is one line."""


def suggest(name: str, choices: list[str]) -> str:
    """' (did you mean: a, b?)' for the closest names in ``choices``, or ''."""
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    return f" (did you mean: {', '.join(close)}?)" if close else ""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when empty), at most 200 characters."""
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__
