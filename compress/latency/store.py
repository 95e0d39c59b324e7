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
    if path:
        return Path(path).expanduser()
    from compress.core.storage import mark_cache_path

    d = default_tables_dir()
    mark_cache_path(d)  # a read-only or full cache names COMPRESS_TABLES in its error
    return d


def table_path(
    device: str, runtime: str, precision: str, batch: int, space: str, *, tables: str | Path | None = None
) -> Path:
    return tables_dir(tables) / device / f"{runtime}__{precision}__b{batch}__{space}.json"


def list_tables(device: str, *, tables: str | Path | None = None) -> list[Path]:
    d = tables_dir(tables) / device
    return sorted(d.glob("*__*__b*__*.json")) if d.is_dir() else []


def measured_runtimes(
    device: str, *, tables_dir: str | Path | None = None, profile_tables: list[str] | None = None
) -> list[str]:
    """Runtimes for which a measured table exists for ``device`` (cache or the profile's list)."""
    found = {p.name.split("__")[0] for p in list_tables(device, tables=tables_dir)}
    for t in profile_tables or []:
        name = Path(t).name
        if "__" in name and Path(t).expanduser().is_file():
            found.add(name.split("__")[0])
    return sorted(found)


# ---- one writer per table ------------------------------------------------------------------------

_TAKEN: list[Path] = []


def lock_table(
    path: str | Path, *, tables: str | Path | None, wait: float = 0.0, command: str = "compress profile"
) -> bool:
    """Take the exclusive lock of the table file ``path`` before measuring into it; True if newly taken.

    The table's directory is proven writable first (``--tables``: exit 2; the per-user cache: exit 1,
    naming COMPRESS_TABLES). A table another process is measuring is waited for up to ``wait``
    seconds (then refused, exit 2, naming the holder): the caller reloads the table after the wait,
    so what the other run measured is kept and only the rest is measured (no last-writer-wins).
    Temp files of a killed writer of this table are removed. Released by :func:`release_tables`.
    """
    import sys

    from compress.core.locks import acquire, describe_holder, file_lock_path
    from compress.core.storage import check_writable, mark_user_path

    p = Path(path)
    if tables is not None:
        mark_user_path(tables_dir(tables))
    check_writable(p.parent, what="--tables" if tables is not None else "cache", user=tables is not None)

    def waiting(info: dict | None) -> None:
        sys.stderr.write(f"waiting up to {wait:.0f} s for {describe_holder(info)}, which is measuring {p.name}\n")
        sys.stderr.flush()

    took = acquire(
        file_lock_path(p),
        what=f"latency table {p}",
        command=command,
        wait=wait,
        on_wait=waiting,
        fix="wait for it to finish (--lock-wait SECONDS) or use another --tables directory",
    )
    if took:
        import re

        # atomic-write temp files of the table and of its lock's holder record
        pat = re.compile(rf"^\.\.?{re.escape(p.name)}(\.lock\.holder)?\.[a-z0-9_]{{8}}(\.[A-Za-z0-9]+)?\.tmp$")
        for f in p.parent.iterdir():
            if pat.match(f.name):
                f.unlink(missing_ok=True)
        from compress.core.runs import clean_stale_temp_dirs

        clean_stale_temp_dirs("compress-latency-")  # a killed profile's block-timer work directory
        _TAKEN.append(p)
    return took


def release_tables() -> None:
    """Release every table lock :func:`lock_table` took in this process."""
    from compress.core.locks import file_lock_path, release

    while _TAKEN:
        release(file_lock_path(_TAKEN.pop()))
