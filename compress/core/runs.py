"""Run directories, manifests and atomic writes.

Every artefact is written to a temporary file in the destination directory and
renamed into place, so a killed process never leaves a half-written file.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from compress.core.errors import UsageError

TRACKED_PACKAGES = (
    "compress", "torch", "torchvision", "timm", "onnx", "onnxruntime", "onnxscript",
    "onnxslim", "openvino", "numpy", "safetensors", "pydantic", "typer", "tensorrt",
)


@contextlib.contextmanager
def atomic_path(path: str | Path, *, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` if the block succeeds.

    Use it for writers that want a file name (``onnx.save``, ``safetensors.save_file``)::

        with atomic_path(out / "model.onnx") as tmp:
            onnx.save(model, tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sfx = suffix if suffix is not None else path.suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f"{sfx}.tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
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


def atomic_write_png(fig: Any, path: str | Path, *, dpi: int | None = None) -> Path:
    """Write a matplotlib figure as PNG atomically, then close it (frees its memory)."""
    import matplotlib.pyplot as plt

    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", **({"dpi": dpi} if dpi else {}))
    plt.close(fig)
    return path


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


def read_json(path: str | Path, *, what: str = "JSON file") -> Any:
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{what} not found: {p}")
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UsageError(f"{p}: not a valid {what} ({err}); the file may be truncated or corrupted") from None


def sha256_file(path: str | Path, *, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def sha256_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(to_jsonable(obj), sort_keys=True).encode()).hexdigest()


def package_versions(names: tuple[str, ...] = TRACKED_PACKAGES) -> dict[str, str]:
    out: dict[str, str] = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def git_revision(cwd: str | Path | None = None) -> str | None:
    try:
        res = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd or Path(__file__).parent,
                             capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() or None if res.returncode == 0 else None


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class RunDir:
    """A run's output directory with its ``manifest.json``.

    The manifest records the command line, library versions, git revision, seeds and
    the sha256 of every input and output registered through :meth:`add_input` /
    :meth:`add_output` (or written with :meth:`write_json`).
    """

    def __init__(self, path: str | Path, *, command: str, seeds: dict[str, int] | None = None) -> None:
        self.path = Path(path)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / f".write-test-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as err:
            raise UsageError(f"cannot write to output directory {self.path}: {err.strerror}; choose another --out") from None
        self.manifest: dict[str, Any] = {
            "schema": 1,
            "command": command,
            "argv": list(sys.argv),
            "created": now_iso(),
            "versions": package_versions(),
            "git_revision": git_revision(),
            "seeds": dict(seeds or {}),
            "inputs": {},
            "outputs": {},
        }
        old = self.path / "manifest.json"
        if old.is_file():
            with contextlib.suppress(Exception):
                prev = json.loads(old.read_text())
                self.manifest["inputs"] = prev.get("inputs", {}) | self.manifest["inputs"]
                self.manifest["outputs"] = prev.get("outputs", {})

    def file(self, name: str) -> Path:
        return self.path / name

    def add_input(self, name: str, path: str | Path | None = None, *, value: Any = None) -> None:
        entry: dict[str, Any] = {}
        if path is not None and Path(path).is_file():
            entry = {"path": str(path), "sha256": sha256_file(path)}
        elif path is not None:
            entry = {"path": str(path)}
        if value is not None:
            entry["value"] = to_jsonable(value)
        self.manifest["inputs"][name] = entry

    def add_output(self, path: str | Path, **extra: Any) -> None:
        p = Path(path)
        rel = str(p.relative_to(self.path)) if p.is_relative_to(self.path) else str(p)
        self.manifest["outputs"][rel] = {"sha256": sha256_file(p), "bytes": p.stat().st_size, **extra}

    def write_json(self, name: str, obj: Any) -> Path:
        p = atomic_write_json(self.path / name, obj)
        self.add_output(p)
        return p

    def write_text(self, name: str, text: str) -> Path:
        p = atomic_write_text(self.path / name, text)
        self.add_output(p)
        return p

    def set(self, key: str, value: Any) -> None:
        self.manifest[key] = to_jsonable(value)

    def save_manifest(self) -> Path:
        return atomic_write_json(self.path / "manifest.json", self.manifest)
