"""The CLI's renderer of :class:`compress.core.progress.Progress`: rich bars and lines on stderr.

>>> from compress.cli.progress import RichProgress                      # doctest: +SKIP
>>> with RichProgress(label="profile") as p:                            # doctest: +SKIP
...     profile_table(..., progress=p)

One transient bar per running task (its description is the task name, so a task per phase shows the
phase), removed when the task finishes; the live display runs only while some task does. Notes are
printed above the bars as plain text (library messages carry no markup). ``bars=False`` prints notes
only (e.g. while a remote agent runs).
This module registers no command.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress as _Bars,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from compress.cli.common import console as _console


class RichProgress:
    """Renders library progress on the CLI's stderr console (use as a context manager)."""

    def __init__(
        self,
        *,
        label: str | None = None,
        console: Console | None = None,
        bars: bool = True,
        elapsed: bool = False,
        remaining: bool = False,
        note_style: str | None = "dim",
    ) -> None:
        self.console = console or _console
        self.note_style = note_style
        columns: list[Any] = [TextColumn(f"[bold]{label}[/] {{task.description}}" if label else "{task.description}")]
        columns += [BarColumn(), MofNCompleteColumn()]
        if elapsed:
            columns.append(TimeElapsedColumn())
        if remaining:
            columns.append(TimeRemainingColumn())
        self._bars = _Bars(*columns, console=self.console, transient=True, disable=not bars)
        self._tasks: dict[str, TaskID] = {}
        self._live = False

    # The live display runs only while a task does: between tasks (and during work the library hands to
    # code with its own rich display, e.g. training inside the pipeline) nothing holds the console.
    def __enter__(self) -> RichProgress:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for task in list(self._tasks):
            self.finish(task)

    def note(self, message: str) -> None:
        self.console.print(message, style=self.note_style, markup=False, highlight=False)

    def start(self, task: str, total: int | None = None) -> None:
        if task in self._tasks:
            self._bars.reset(self._tasks[task], total=total)
            return
        if not self._live:
            self._bars.start()
            self._live = True
        self._tasks[task] = self._bars.add_task(task, total=total)

    def update(self, task: str, done: int, total: int | None = None) -> None:
        if task not in self._tasks:
            self.start(task, total)
        self._bars.update(self._tasks[task], completed=done, total=total)

    def finish(self, task: str) -> None:
        tid = self._tasks.pop(task, None)
        if tid is not None:
            self._bars.remove_task(tid)
        if not self._tasks and self._live:
            self._bars.stop()
            self._live = False
