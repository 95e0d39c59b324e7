"""Error types: the user's to fix (:class:`CompressError`) and ours (:class:`InternalError`).

The CLI turns a :class:`CompressError` into one line ``error: ...`` on stderr and
exits with its ``exit_code`` (2 for usage errors, 1 for failures). A broken internal invariant is an
:class:`InternalError`: the CLI reports it as a bug with the ``--debug`` traceback hint (exit 1).
Library code raises these instead of ``assert`` (which ``python -O`` removes) so that notebooks get
the same messages. :func:`exit_code_for` picks the exit code by exception type.

Stdlib only: the remote benchmark agent ships this module without the rest of ``compress``.
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


class InternalError(RuntimeError):
    """A broken internal invariant: a bug in compress, not something the user can fix.

    Deliberately not a :class:`CompressError`: the CLI reports it as a bug with the hint to rerun with
    ``--debug`` for the traceback, and exits 1. Raise it where an ``assert`` would otherwise stand.
    """

    exit_code = 1


def exit_code_for(err: BaseException) -> int:
    """The process exit code for an exception: 2 user error, 1 failure or bug, 130 interrupted."""
    if isinstance(err, KeyboardInterrupt):
        return 130
    code = getattr(err, "exit_code", None) if isinstance(err, (CompressError, InternalError)) else None
    return code if isinstance(code, int) else 1


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
