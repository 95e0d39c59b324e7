"""Atomic writes (temp file beside the target + rename) and the JSON conventions of run files.

The lowest writer of ``compress.core``: :mod:`compress.core.runs` (run directories, manifests) and
:mod:`compress.core.locks` (the lock holder file) both build on it, so neither imports the other
for it. ``compress.core.runs`` re-exports every name.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from compress.core.storage import storage_errors


@contextlib.contextmanager
def atomic_path(path: str | Path, *, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` if the block succeeds.

    Use it for writers that want a file name (``onnx.save``, ``safetensors.save_file``)::

        with atomic_path(out / "model.onnx") as tmp:
            onnx.save(model, tmp)

    A storage fault (read-only, permission, disk full, quota) inside the block becomes a one-line
    :class:`~compress.core.storage.StorageError`. The temp name (``.NAME.XXXXXXXX<sfx>.tmp``) is one
    of the patterns :func:`clean_stale_temps` removes after a killed run.
    """
    path = Path(path)
    sfx = suffix if suffix is not None else path.suffix
    with storage_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f"{sfx}.tmp", dir=path.parent)
        os.close(fd)
    tmp_path = Path(tmp)
    try:
        with storage_errors(path):
            yield tmp_path
            os.replace(tmp_path, path)
    finally:
        with contextlib.suppress(OSError):
            if tmp_path.exists():
                tmp_path.unlink()


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def to_jsonable(obj: Any) -> Any:
    """Convert dataclasses, pydantic models, paths and numpy scalars for ``json.dumps``."""
    if hasattr(obj, "model_dump"):
        return to_jsonable(obj.model_dump(mode="json"))
    if hasattr(obj, "__dataclass_fields__"):
        import dataclasses

        return to_jsonable(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 0) == 0:
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return obj


def dumps(obj: Any) -> str:
    return json.dumps(to_jsonable(obj), indent=2, sort_keys=False) + "\n"


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, dumps(obj))


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
