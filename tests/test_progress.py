"""The one progress convention (compress.core.progress) and its CLI renderer."""

from __future__ import annotations

import io
import logging

import pytest
from rich.console import Console

from compress.cli.progress import RichProgress
from compress.core.progress import (
    ListProgress,
    LogProgress,
    NullProgress,
    Phases,
    Prefixed,
    Progress,
    progress_or_log,
    tracked,
)


def test_tracked_reports_counts_and_finishes_on_error():
    p = ListProgress()
    with pytest.raises(RuntimeError):
        with tracked(p, "items", total=3) as step:
            step(1)
            step(2)
            raise RuntimeError("boom")
    assert p.events == [
        ("start", "items", 3),
        ("update", "items", 1, 3),
        ("update", "items", 2, 3),
        ("finish", "items"),
    ]


def test_phases_finish_the_previous_phase():
    p = ListProgress()
    with Phases(p) as ph:
        ph("measure", 1, 2)
        ph("measure", 2, 2)
        ph("calibrate", 1, 1)
    kinds = [(e[0], e[1]) for e in p.events]
    assert kinds == [
        ("start", "measure"),
        ("update", "measure"),
        ("update", "measure"),
        ("finish", "measure"),
        ("start", "calibrate"),
        ("update", "calibrate"),
        ("finish", "calibrate"),
    ]


def test_default_is_logging_not_print(caplog, capsys):
    with caplog.at_level(logging.INFO, logger="compress"):
        progress_or_log(None).note("hello from the library")
    assert "hello from the library" in caplog.text
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


def test_every_implementation_satisfies_the_protocol():
    for p in (NullProgress(), LogProgress(), ListProgress(), RichProgress(console=Console(file=io.StringIO()))):
        assert isinstance(p, Progress)


def test_rich_renderer_prints_notes_plainly_and_removes_finished_bars():
    buf = io.StringIO()
    con = Console(file=buf, width=200, force_terminal=False)
    with RichProgress(label="x", console=con) as p:
        p.note("[not markup] kept as text")
        assert not p._live  # nothing holds the console before a task starts
        with tracked(Prefixed(p, "profile cpu"), "blocks", total=2) as step:
            step(1)
            assert "profile cpu: blocks" in p._tasks and p._live
        assert p._tasks == {} and not p._live  # the live display ends with the last task
    assert "[not markup] kept as text" in buf.getvalue()
