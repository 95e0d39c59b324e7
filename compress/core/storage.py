"""Storage faults (read-only file system, permission denied, disk full, quota) as one-line errors.

Writers map an ``OSError`` once, where the file is written (:func:`compress.core.runs.atomic_path`
and the run-directory helpers use :func:`storage_errors`), into a :class:`StorageError` that says
what happened, where, and what to do: never "this is a bug". The exit code is 2 when the path is
one the user chose (``--out``, ``--tables``; see :func:`mark_user_path`) and 1 otherwise (the
per-user cache, the temp directory). A disk-full message names the directory, its free space and,
when the writer knows it, the size it needed.

Some libraries hide the errno: OpenVINO's serializer says ``basic_ios::clear: iostream error``
when a write fails. :func:`map_stream_error` turns that into the disk-full (or read-only,
permission) message when the target file system says so, so the user learns the cause.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from compress.core.errors import CompressError

STORAGE_ERRNOS = {errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT}

# Directories the user named on the command line (or in a YAML): faults under them are theirs to fix
# by choosing another path (exit 2); anything else (cache, temp dir) exits 1.
_USER_ROOTS: set[Path] = set()
# Per-user caches (the default latency-table directory): faults there name the variable that moves them.
_CACHE_ROOTS: set[Path] = set()


class StorageError(CompressError, OSError):
    """A file could not be written because of the storage (not the inputs, not a bug).

    Also an ``OSError`` (with the original ``errno``), so code that already tolerates a failed
    write (an optional cache) keeps doing so.
    """

    def __init__(self, message: str, *, exit_code: int = 1, errno_: int | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.errno = errno_

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def mark_user_path(path: str | Path) -> None:
    """Record ``path`` as chosen by the user: storage faults under it exit 2 (a usage error)."""
    _USER_ROOTS.add(_abs(path))


def mark_cache_path(path: str | Path) -> None:
    """Record ``path`` as a per-user cache (not chosen on the command line)."""
    _CACHE_ROOTS.add(_abs(path))


def _abs(path: str | Path) -> Path:
    return Path(os.path.abspath(Path(path).expanduser()))


def is_user_path(path: str | Path) -> bool:
    p = _abs(path)
    return any(p == r or p.is_relative_to(r) for r in _USER_ROOTS)


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def _existing_dir(path: Path) -> Path:
    """The nearest existing directory at or above ``path`` (for free-space and mount queries)."""
    p = _abs(path)
    while not p.is_dir() and p != p.parent:
        p = p.parent
    return p


def free_bytes(path: str | Path) -> int | None:
    try:
        return shutil.disk_usage(_existing_dir(Path(path))).free
    except OSError:
        return None


def _fix(what: str, user: bool) -> str | None:
    """The alternative to offer ("choose another --out"), or None when there is none to name."""
    if user:
        return f"choose another {what}" if what.startswith("--") else f"choose another location for the {what}"
    if what == "cache":
        return "point COMPRESS_TABLES (or XDG_CACHE_HOME) at a writable directory, or pass --tables"
    if what == "temp directory":
        return "set TMPDIR to a writable directory"
    return None


def describe(
    err: OSError,
    *,
    path: str | Path | None = None,
    what: str | None = None,
    user: bool | None = None,
    needed: int | None = None,
) -> StorageError | None:
    """The :class:`StorageError` for a storage ``OSError`` (None for other errors, e.g. file not found).

    ``path``: the file or directory being written (default: the error's filename); ``what``: how the
    user knows it ("--out", "--tables", "cache"); ``user``: whether the user chose it (default: under a
    path recorded by :func:`mark_user_path`); ``needed``: bytes the write needed, when known.
    """
    if not isinstance(err, OSError) or err.errno not in STORAGE_ERRNOS:
        return None
    target = Path(path if path is not None else (err.filename or "."))
    if user is None:
        user = is_user_path(target)
    where = _existing_dir(target) if not target.is_dir() else target
    if what is None and not user and any(_abs(target).is_relative_to(r) for r in _CACHE_ROOTS):
        what = "cache"
    label = what or ("--out" if user else "output location")
    alt = _fix(label, user)
    code = 2 if user else 1
    if err.errno == errno.EROFS:
        msg = f"cannot write {target}: {where} is on a read-only file system; {alt or 'remount it read-write'}"
    elif err.errno in (errno.EACCES, errno.EPERM):
        msg = f"cannot write {target}: permission denied in {where}; {alt or 'fix its permissions'}"
    elif err.errno == errno.EDQUOT:
        msg = f"cannot write {target}: disk quota exceeded in {where}; free space in your quota" + (
            f" or {alt}" if alt else ""
        )
    else:
        free = free_bytes(where)
        need = f", needs about {human_bytes(needed)}" if needed else ""
        have = f" ({human_bytes(free)} free{need})" if free is not None else (f" ({need[2:]})" if need else "")
        msg = f"no space left on device writing {target}: {where}{have}; free space" + (f" or {alt}" if alt else "")
    return StorageError(msg, exit_code=code, errno_=err.errno)


@contextlib.contextmanager
def storage_errors(
    path: str | Path | None = None, *, what: str | None = None, user: bool | None = None, needed: int | None = None
) -> Iterator[None]:
    """Re-raise a storage ``OSError`` raised inside the block as a :class:`StorageError`.

    C++ writers (``torch.save``, OpenVINO's serializer) raise ``RuntimeError("basic_ios::clear:
    iostream error")`` instead; with a ``path`` those are mapped too when the file system shows the
    cause (see :func:`map_stream_error`).
    """
    try:
        yield
    except StorageError:
        raise
    except OSError as err:
        mapped = describe(err, path=path, what=what, user=user, needed=needed)
        if mapped is None:
            raise
        raise mapped from None
    except RuntimeError as err:
        stream = map_stream_error(err, path=path, what=what, needed=needed) if path is not None else None
        if stream is None:
            raise
        raise stream from None


def map_stream_error(
    err: BaseException, *, path: str | Path, what: str | None = None, needed: int | None = None
) -> StorageError | None:
    """Map a C++ stream failure (OpenVINO's ``basic_ios::clear: iostream error``) to its storage cause.

    The library gives no errno, so the cause is read off the target: a read-only mount, a
    directory we may not write to, or a file system with less free space than ``needed`` (or
    nearly none). Returns None when none of these holds (then the error is not a storage fault).
    """
    text = str(err)
    if not any(
        k in text
        for k in (
            "iostream error",
            "basic_ios",
            "Can't open",
            "No space left",
            "Read-only file",
            "Permission denied",
            "quota",
        )
    ):
        return None
    d = _existing_dir(Path(path))
    probe_err: OSError | None = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=".compress-probe-", dir=d)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        probe_err = e
    if probe_err is not None and probe_err.errno in STORAGE_ERRNOS:
        return describe(probe_err, path=path, what=what, needed=needed)
    free = free_bytes(d)
    if free is not None and (free < (needed or 0) or free < 1 << 20):
        return describe(
            OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)), path=path, what=what, needed=needed
        )
    return None


def check_writable(
    path: str | Path, *, what: str = "--out", user: bool | None = None, needed: int | None = None
) -> Path:
    """Create ``path`` (a directory) if needed and prove a file can be written there, before long work.

    Raises :class:`StorageError` naming the directory and the fix; with ``needed`` (bytes) also
    when the file system has less free space than that.
    """
    d = Path(path).expanduser()
    try:
        with storage_errors(d, what=what, user=user):
            d.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".compress-probe-", dir=d)
            try:
                os.write(fd, b"\0")
            finally:
                os.close(fd)
                os.unlink(tmp)
    except StorageError:
        raise
    except OSError as err:  # not a storage fault: e.g. a path below a regular file
        from compress.core.errors import UsageError

        alt = _fix(what, True if user is None else user) or "choose another location"
        raise UsageError(f"cannot write to output directory {d}: {err.strerror or err}; {alt}") from None
    if needed:
        free = free_bytes(d)
        if free is not None and free < needed:
            full = describe(
                OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(d)), path=d, what=what, user=user, needed=needed
            )
            if full is not None:  # always: ENOSPC is a storage fault
                raise full
    return d


def check_temp_dir() -> Path:
    """The temp directory (``TMPDIR``), proven writable; a read-only or full one fails here, not mid-run."""
    return check_writable(tempfile.gettempdir(), what="temp directory", user=False)
