"""A datasheet number with its source: the lowest type of the hardware profile schema.

Below both :mod:`compress.hardware.profile` (the schema, which re-exports it) and
:mod:`compress.hardware.modes` (which builds per-mode figures), so neither imports the other for it.
"""

from __future__ import annotations

from pydantic import Field

from compress.core.config import StrictModel


class Figure(StrictModel):
    """A datasheet number with where it came from."""

    value: float = Field(gt=0)
    unit: str
    source: str = Field(min_length=3)
    unconfirmed: bool = False
    note: str | None = None
