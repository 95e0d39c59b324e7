"""One progress convention for library code: narrative lines and counted tasks, shown by the caller.

Library functions never print and never import the CLI. A function with long work takes
``progress: Progress | None = None`` and reports through it:

>>> from compress.core.progress import progress_or_log, tracked
>>> def work(items, *, progress=None):
...     p = progress_or_log(progress)           # None: lines go to logging ("compress" logger)
...     p.note(f"scoring {len(items)} items")   # a line of narrative (plain text, no markup)
...     with tracked(p, "items", total=len(items)) as step:
...         for i, _ in enumerate(items):
...             step(i + 1)                    # absolute count done (robust to skipped items)
>>> work([1, 2, 3])

The CLI renders it with rich (``compress.cli.progress.RichProgress``: bars plus lines on its stderr
console); a notebook gets the lines through :mod:`logging` (``logging.basicConfig(level="INFO")``)
or passes its own object. Anything with the four methods below is a ``Progress``; subclass
:class:`ProgressBase` to implement only some of them.

Why one protocol: the code had five conventions (a console object, a bool-or-callable that fell back
to printing, bare ``print``, a ``(phase, done, total)`` callback and a bool plus a rich bar), so a
caller could not silence, redirect or test progress in one way.

This module is stdlib only (the remote benchmark agent ships it without the rest of ``compress``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol, runtime_checkable

LOGGER = logging.getLogger("compress")


@runtime_checkable
class Progress(Protocol):
    """Where long-running library code reports what it does.

    ``task`` names a counted piece of work ("subnets", "blocks", a phase of a profile run); its
    ``done`` / ``total`` are absolute counts (``total`` ``None`` while unknown). ``note`` is one
    plain-text line (no rich markup: the renderer decides the styling).
    """

    def note(self, message: str) -> None: ...

    def start(self, task: str, total: int | None = None) -> None: ...

    def update(self, task: str, done: int, total: int | None = None) -> None: ...

    def finish(self, task: str) -> None: ...


class ProgressBase:
    """A :class:`Progress` that ignores everything; override the methods you need."""

    def note(self, message: str) -> None:
        pass

    def start(self, task: str, total: int | None = None) -> None:
        pass

    def update(self, task: str, done: int, total: int | None = None) -> None:
        pass

    def finish(self, task: str) -> None:
        pass


class NullProgress(ProgressBase):
    """Silence: for callers that want no output at all (tests, scripts with ``--json``)."""


class LogProgress(ProgressBase):
    """Notes at INFO and task boundaries at DEBUG on a :mod:`logging` logger (the library default)."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or LOGGER

    def note(self, message: str) -> None:
        self.logger.info(message)

    def start(self, task: str, total: int | None = None) -> None:
        self.logger.debug("%s: started (total %s)", task, total)

    def finish(self, task: str) -> None:
        self.logger.debug("%s: finished", task)


class ListProgress(ProgressBase):
    """Records every call (``events``: tuples such as ``("update", task, done, total)``): for tests."""

    def __init__(self) -> None:
        self.events: list[tuple[object, ...]] = []

    def note(self, message: str) -> None:
        self.events.append(("note", message))

    def start(self, task: str, total: int | None = None) -> None:
        self.events.append(("start", task, total))

    def update(self, task: str, done: int, total: int | None = None) -> None:
        self.events.append(("update", task, done, total))

    def finish(self, task: str) -> None:
        self.events.append(("finish", task))

    @property
    def notes(self) -> list[str]:
        return [str(e[1]) for e in self.events if e[0] == "note"]


class Prefixed(ProgressBase):
    """Forwards to ``inner`` with ``"<prefix>: "`` before every task name and note (e.g. the pipeline's
    ``profile jetson: blocks``)."""

    def __init__(self, inner: Progress, prefix: str) -> None:
        self.inner, self.prefix = inner, prefix

    def note(self, message: str) -> None:
        self.inner.note(f"{self.prefix}: {message}")

    def start(self, task: str, total: int | None = None) -> None:
        self.inner.start(f"{self.prefix}: {task}", total)

    def update(self, task: str, done: int, total: int | None = None) -> None:
        self.inner.update(f"{self.prefix}: {task}", done, total)

    def finish(self, task: str) -> None:
        self.inner.finish(f"{self.prefix}: {task}")


def progress_or_log(progress: Progress | None) -> Progress:
    """``progress`` itself, or the logging default when the caller gave none."""
    return progress if progress is not None else LogProgress()


def progress_or_null(progress: Progress | None) -> Progress:
    """``progress`` itself, or silence (for helpers whose caller already narrates)."""
    return progress if progress is not None else NullProgress()


class Phases:
    """``(phase, done, total)`` calls onto a :class:`Progress`: one task per phase, the previous one
    finished when the next starts (for loops that report phases, e.g. profile's measure/calibrate).
    Call :meth:`close` (or use as a context manager) to finish the last one."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.current: str | None = None

    def __call__(self, phase: str, done: int, total: int | None = None) -> None:
        if phase != self.current:
            self.close()
            self.progress.start(phase, total)
            self.current = phase
        self.progress.update(phase, done, total)

    def close(self) -> None:
        if self.current is not None:
            self.progress.finish(self.current)
            self.current = None

    def __enter__(self) -> Phases:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def tracked(progress: Progress, task: str, total: int | None = None) -> Iterator[Callable[..., None]]:
    """``start`` ``task``, yield ``step(done, total=None)`` that reports counts, ``finish`` even on error."""
    progress.start(task, total)

    def step(done: int, total_now: int | None = None) -> None:
        progress.update(task, done, total_now if total_now is not None else total)

    try:
        yield step
    finally:
        progress.finish(task)
