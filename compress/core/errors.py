"""User-facing error types.

The CLI turns a :class:`CompressError` into one line ``error: ...`` on stderr and
exits with its ``exit_code`` (2 for usage errors, 1 for failures). Library code
raises these instead of ``assert`` so that notebooks get the same messages.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class CompressError(Exception):
    """Base class of errors that are the user's to fix; shown without traceback."""

    exit_code = 1


class UsageError(CompressError):
    """Bad input: an unknown name, a malformed file, a value out of range."""

    exit_code = 2


class Failure(CompressError):
    """The inputs were fine but the work failed (a runtime refused a model, parity failed...)."""

    exit_code = 1


class MissingDependency(Failure):
    """An optional backend (TensorRT, a runtime) is not installed."""


def suggest(name: str, choices: Iterable[str], *, n: int = 3) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest matches of ``name``, or ``""``."""
    choices = sorted(set(choices))
    matches = difflib.get_close_matches(name, choices, n=n, cutoff=0.5)
    if not matches:
        lowered = [c for c in choices if name.lower() in c.lower() or c.lower() in name.lower()]
        matches = lowered[:n]
    if not matches:
        return ""
    quoted = ", ".join(f"'{m}'" for m in matches)
    return f" (did you mean {quoted}?)"


def unknown(kind: str, name: str, choices: Iterable[str]) -> UsageError:
    """Build the standard "unknown X" error with suggestions and the list of valid names."""
    choices = sorted(set(choices))
    hint = suggest(name, choices)
    listing = ", ".join(choices) if len(choices) <= 20 else ", ".join(choices[:20]) + ", ..."
    return UsageError(f"unknown {kind} '{name}'{hint}; choose one of: {listing}")
