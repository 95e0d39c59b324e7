"""Test seams: named moments of long jobs where a test can run its own code. Empty by default.

The fault-injection tests must stop a job at an exact moment: inside a pipeline stage after it
wrote part of its work, before a given training step of a given rank, between the steps that
publish a pipeline's report set. The library only *names* those moments and calls :func:`fire`
there; it never decides to fail, reads no environment variable for it and never kills itself.
With no callback installed (every real run), :func:`fire` is one dictionary lookup.

A test installs a callback for the duration of a block::

    with hooks.installed("pipeline.stage", lambda stage, work, **_: ...):
        run_pipeline(...)

and a test that runs the CLI in a subprocess (``torchrun`` workers included) puts the test-only
seam ``tests/seams/`` first on ``PYTHONPATH``: its ``sitecustomize`` installs the callback the test
describes. The points and the keyword arguments their callbacks get:

===================  ====================================================================
``pipeline.stage``   ``stage`` (name), ``work`` (its work directory): the stage has written
                     part of its work and not yet returned.
``pipeline.report``  ``step`` (``"staged"``: the new report set is complete in its
                     directory; ``"swapped"``: ``report`` points at it; ``"linked"``: the
                     top-level names point into it), ``run_dir``.
``train.step``       ``step``, ``rank``, ``restart`` (torchrun's restart count): before the
                     step runs.
===================  ====================================================================

Callbacks take ``**kwargs`` so that a point can gain arguments without breaking them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

POINTS = ("pipeline.stage", "pipeline.report", "train.step")

_HOOKS: dict[str, list[Callable[..., None]]] = {}


def add(point: str, fn: Callable[..., None]) -> Callable[[], None]:
    """Call ``fn(**info)`` whenever ``point`` fires; returns the function that removes it again."""
    if point not in POINTS:
        raise ValueError(f"unknown hook point {point!r}; known: {', '.join(POINTS)}")
    _HOOKS.setdefault(point, []).append(fn)

    def remove() -> None:
        with contextlib.suppress(ValueError):
            _HOOKS.get(point, []).remove(fn)

    return remove


@contextlib.contextmanager
def installed(point: str, fn: Callable[..., None]) -> Iterator[None]:
    """``add`` for the block, removed when it ends (also when it raises)."""
    remove = add(point, fn)
    try:
        yield
    finally:
        remove()


def fire(point: str, **info: Any) -> None:
    """Run the callbacks installed for ``point`` (none in a normal run); their exceptions propagate."""
    for fn in list(_HOOKS.get(point, ())):
        fn(**info)
