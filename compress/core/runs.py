"""Run directories, manifests and atomic writes.

Every artefact is written to a temporary file in the destination directory and
renamed into place, so a killed process never leaves a half-written file.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

# the atomic writers live one level down (locks.py uses them too); re-exported here
from compress.core.atomic import (
    atomic_path as atomic_path,
    atomic_write_bytes as atomic_write_bytes,
    atomic_write_json as atomic_write_json,
    atomic_write_text as atomic_write_text,
    dumps as dumps,
    now_iso as now_iso,
    to_jsonable as to_jsonable,
)
from compress.core.errors import UsageError
from compress.core.storage import check_writable, mark_user_path, storage_errors

TRACKED_PACKAGES = (
    "compress",
    "torch",
    "torchvision",
    "timm",
    "onnx",
    "onnxruntime",
    "onnxscript",
    "onnxslim",
    "openvino",
    "numpy",
    "safetensors",
    "pydantic",
    "typer",
    "tensorrt",
)


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield an empty temp directory beside ``path``; when the block succeeds it becomes ``path``, as a unit.

    For artefacts of several files (an OpenVINO ``.xml`` + ``.bin``, a TensorRT bundle): a reader
    sees the old set or the new one, never half of each. The swap is :func:`swap_dir`: one atomic
    exchange where the kernel and file system offer it, else two renames. The whole directory is
    replaced: callers make sure it holds only the artefact.
    """
    path = Path(path)
    tmp = new_temp_dir(path)
    try:
        with storage_errors(path):
            yield tmp
            swap_dir(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def new_temp_dir(path: str | Path) -> Path:
    """An empty directory ``.NAME.XXXXXXXX.tmpdir`` beside ``path``, to fill and then :func:`swap_dir` in.

    A killed run leaves it under a temp name, which :func:`clean_stale_temps` removes.
    """
    path = Path(path)
    with storage_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmpdir", dir=path.parent))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the artefact directory is not
    return tmp


def _exchange(a: Path, b: Path) -> bool:
    """Exchange two existing paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2  # glibc >= 2.28, musl >= 1.2.3
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # kernel < 3.15, or a file system without it
        return False
    raise OSError(err, os.strerror(err), str(b))


def swap_dir(tmp: str | Path, path: str | Path) -> None:
    """Make the complete directory ``tmp`` (beside ``path``) become ``path``, as a unit; the old one is deleted.

    Where ``renameat2(RENAME_EXCHANGE)`` works (Linux >= 3.15 on ext4, xfs, btrfs, tmpfs, ...) the two
    directories trade places in one step: a reader finds the old set or the new one at ``path``,
    never neither. Elsewhere ``path`` is renamed aside (``.NAME.XXXXXXXX.old``) and ``tmp`` renamed
    in: for that moment a reader can find no ``path`` (never half of each), and a crash in between
    leaves a complete ``.old``, which :func:`clean_stale_temps` puts back. A file or symlink at
    ``path`` is replaced too.
    """
    tmp, path = Path(tmp), Path(path)
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        path.unlink()
    if not path.exists():
        os.replace(tmp, path)
        return
    if _exchange(tmp, path):
        shutil.rmtree(tmp, ignore_errors=True)  # it holds the old set now
        return
    old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
    os.replace(path, old)  # onto the empty directory just made
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)


# The toolkit's own temp names (and nothing else): atomic_path's files, atomic_dir's directories,
# write probes, the old OpenVINO temp dir and StageStore's trash directories.
_TEMP_FILE = re.compile(
    r"^\..+\.[a-z0-9_]{8}(\.[A-Za-z0-9]+)?\.tmp$|^\.write-test-\d+$|^\.compress-probe-[a-z0-9_]{8}$"
)
_TEMP_DIR = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmpdir$|^\.openvino-[a-z0-9_]{8}$|^\..+\.old-\d+$")
_OLD_DIR = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}\.old$")


def _rand8() -> str:
    import secrets

    return "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz0123456789_") for _ in range(8))


def _replace_with_link(path: Path, target: str) -> None:
    """Make ``path`` a symlink to ``target`` with one rename; a real directory there is moved aside first."""
    while True:
        tmp = path.parent / f".{path.name}.{_rand8()}.link.tmp"
        try:
            os.symlink(target, tmp)
            break
        except FileExistsError:
            continue
    try:
        if path.is_dir() and not path.is_symlink():
            # a directory cannot be renamed over (a run written by an older version, or a copy that
            # resolved the links): moved aside first; a crash in between leaves ``.NAME.X.old``, which
            # clean_stale_temps puts back, so the reader still finds the old set
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def link_aliases(path: str | Path, names: list[str]) -> None:
    """Make each ``NAME`` beside ``path`` a symlink to ``<path.name>/NAME`` (the familiar top-level names).

    The links never change once made (they resolve through ``path``), so they are made only where
    missing or different; a file or directory of that name (an older layout) is replaced.
    """
    path = Path(path)
    with storage_errors(path):
        for name in names:
            alias, target = path.parent / name, f"{path.name}/{name}"
            if alias.is_symlink() and os.readlink(alias) == target:
                continue
            _replace_with_link(alias, target)


def is_temp_name(name: str) -> bool:
    """True for a file or directory name the toolkit uses for its temp files (and nothing else)."""
    return bool(_TEMP_FILE.match(name) or _TEMP_DIR.match(name) or _OLD_DIR.match(name))


def clean_stale_temps(root: str | Path, *, recursive: bool = True) -> list[Path]:
    """Remove the toolkit's temp files and directories a killed run left under ``root``; returns them.

    Call it only while holding ``root``'s lock (no other writer is inside). Only names matching the
    toolkit's temp patterns go; a sub-directory locked by a live process is skipped. A ``.old``
    directory whose target is missing (a crash inside :func:`atomic_dir`) is renamed back.
    """
    from compress.core.locks import DIR_LOCK, holder, holder_gone

    root = Path(root)
    removed: list[Path] = []
    if not root.is_dir():
        return removed
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        if d != root:
            info = holder(d / DIR_LOCK)
            if info is not None and info.get("pid") != os.getpid() and not holder_gone(info):
                dirnames[:] = []
                continue
        for name in filenames:
            if _TEMP_FILE.match(name):
                with contextlib.suppress(OSError):
                    (d / name).unlink()
                    removed.append(d / name)
        keep = []
        for name in dirnames:
            if (d / name).is_symlink():  # a link to a directory: never followed; a temp link is removed
                if _TEMP_FILE.match(name):
                    with contextlib.suppress(OSError):
                        (d / name).unlink()
                        removed.append(d / name)
                continue
            m = _OLD_DIR.match(name)
            if m and not os.path.lexists(d / m["name"]):
                with contextlib.suppress(OSError):
                    os.replace(d / name, d / m["name"])
                    keep.append(m["name"])
                continue
            if _TEMP_DIR.match(name) or m:
                shutil.rmtree(d / name, ignore_errors=True)
                removed.append(d / name)
            else:
                keep.append(name)
        dirnames[:] = keep if recursive else []
    return removed


def clean_stale_temp_dirs(prefix: str, *, base: str | Path | None = None) -> list[Path]:
    """Remove ``<TMPDIR>/<prefix><pid>-*`` directories whose process (on this host) is gone."""
    from compress.core.locks import pid_alive

    base = Path(base or tempfile.gettempdir())
    pat = re.compile(rf"^{re.escape(prefix)}(\d+)-[a-z0-9_]{{8}}$")
    removed = []
    with contextlib.suppress(OSError):
        for p in base.iterdir():
            m = pat.match(p.name)
            if m and int(m[1]) != os.getpid() and not pid_alive(int(m[1])) and p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p)
    return removed


def temp_workdir(prefix: str) -> tempfile.TemporaryDirectory[str]:
    """A ``TemporaryDirectory`` named ``<prefix><pid>-XXXXXXXX``, after removing those of dead processes.

    A SIGKILLed run cannot delete its temp directory; the pid in the name lets the next run with
    the same prefix remove it safely (never one of a live process). A full or read-only temp
    directory fails here with a one-line error (exit 1) naming TMPDIR.
    """
    clean_stale_temp_dirs(prefix)
    with storage_errors(tempfile.gettempdir(), what="temp directory", user=False):
        return tempfile.TemporaryDirectory(prefix=f"{prefix}{os.getpid()}-")


def atomic_write_png(fig: Any, path: str | Path, *, dpi: int | None = None) -> Path:
    """Write a matplotlib figure as PNG atomically, then close it (frees its memory)."""
    import matplotlib.pyplot as plt

    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", **({"dpi": dpi} if dpi else {}))
    plt.close(fig)
    return path


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
        res = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd or Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() or None if res.returncode == 0 else None


def claim_run_dir(path: str | Path, *, command: str, what: str = "--out", for_children: bool = False) -> bool:
    """Lock the run directory ``path`` for this process before anything is written; returns True if newly taken.

    Creates ``path``, proves it writable (a read-only or full location fails here, exit 2, not after
    an hour of work), takes its exclusive lock (a second writer is refused at once, exit 2, naming
    the holder) and removes the temp files a killed earlier run left there. The lock is held until
    :func:`release_run_dir` or the end of the process. Claiming a directory this process already
    holds does nothing and returns False (then the caller must not release it). ``for_children``:
    the processes this one starts (a launcher's workers) write under the same lock.
    """
    from compress.core.locks import acquire, delegate, dir_lock_path, held

    path = Path(path).expanduser()
    mark_user_path(path)
    if held(dir_lock_path(path)):
        return False
    if not path.exists():
        _CREATED.add(path)
    check_writable(path, what=what, user=True)
    if not acquire(dir_lock_path(path), what=f"run directory {path}", command=command):
        return False  # our launcher holds it for us: its job, its temp files
    clean_stale_temps(path)
    if for_children:
        delegate(dir_lock_path(path))
    return True


_CREATED: set[Path] = set()


def _remove_unused_created() -> None:
    """At exit: a run directory claimed but never written (a usage error came first) is removed again."""
    from compress.core.locks import DIR_LOCK, info_path

    for path in _CREATED:
        with contextlib.suppress(OSError):
            if {p.name for p in path.iterdir()} <= {DIR_LOCK, info_path(DIR_LOCK).name}:
                for p in path.iterdir():
                    p.unlink()
                path.rmdir()


atexit.register(_remove_unused_created)  # registered before the locks' handler, so it runs after it


def release_run_dir(path: str | Path) -> None:
    from compress.core.locks import dir_lock_path, release

    release(dir_lock_path(Path(path).expanduser()))


@contextlib.contextmanager
def run_dir_lock(path: str | Path, *, command: str, what: str = "--out") -> Iterator[Path]:
    """``with run_dir_lock(out, command=...)``: :func:`claim_run_dir` for the block.

    A directory that this call created and that holds nothing but the lock when the block ends
    (a usage error before any output) is removed again, so a bad input leaves nothing behind.
    """
    from compress.core.locks import DIR_LOCK

    path = Path(path).expanduser()
    existed = path.exists()
    took = claim_run_dir(path, command=command, what=what)
    try:
        yield path
    finally:
        if took:
            release_run_dir(path)
        if took and not existed:
            with contextlib.suppress(OSError):
                if {p.name for p in path.iterdir()} <= {DIR_LOCK}:
                    (path / DIR_LOCK).unlink()
                    path.rmdir()


class RunDir:
    """A run's output directory with its ``manifest.json``.

    The manifest records the command line, library versions, git revision, seeds and
    the sha256 of every input and output registered through :meth:`add_input` /
    :meth:`add_output` (or written with :meth:`write_json`).
    """

    def __init__(self, path: str | Path, *, command: str, seeds: dict[str, int] | None = None) -> None:
        self.path = Path(path)
        # locked (and proven writable) until save_manifest(); free when the command already claimed it
        self._locked = claim_run_dir(self.path, command=command)
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
        p = atomic_write_json(self.path / "manifest.json", self.manifest)
        if self._locked:
            self._locked = False
            release_run_dir(self.path)
        return p
