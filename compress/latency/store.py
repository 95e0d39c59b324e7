"""Where latency tables live: a per-user cache (``--tables DIR`` or ``COMPRESS_TABLES`` to choose).

Layout: ``<tables>/<device>/<runtime>__<precision>__b<batch>__<space>.json``. Tables are never
written inside the installed package. This module does not import torch.
"""

from __future__ import annotations

import os
from pathlib import Path


def default_tables_dir() -> Path:
    env = os.environ.get("COMPRESS_TABLES")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "compress" / "latency_tables"


def tables_dir(path: str | Path | None = None) -> Path:
    return Path(path).expanduser() if path else default_tables_dir()


def table_path(device: str, runtime: str, precision: str, batch: int, space: str,
               *, tables: str | Path | None = None) -> Path:
    return tables_dir(tables) / device / f"{runtime}__{precision}__b{batch}__{space}.json"


def list_tables(device: str, *, tables: str | Path | None = None) -> list[Path]:
    d = tables_dir(tables) / device
    return sorted(d.glob("*__*__b*__*.json")) if d.is_dir() else []


def measured_runtimes(device: str, *, tables_dir: str | Path | None = None,
                      profile_tables: list[str] | None = None) -> list[str]:
    """Runtimes for which a measured table exists for ``device`` (cache or the profile's list)."""
    found = {p.name.split("__")[0] for p in list_tables(device, tables=tables_dir)}
    for t in profile_tables or []:
        name = Path(t).name
        if "__" in name and Path(t).expanduser().is_file():
            found.add(name.split("__")[0])
    return sorted(found)
