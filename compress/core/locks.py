"""One exclusive writer per run directory and per latency table (``filelock``, an ``flock`` on a file).

Two processes writing one directory break each other (each deletes or renames the other's
files), so every command that writes takes the output's lock before writing anything:

* a run directory ``D`` is locked through ``D/.compress.lock``; a latency table ``T.json``
  through ``.T.json.lock`` beside it;
* beside each lock, ``<lock>.holder`` (JSON) names the holder (pid, host, command, start time). A second
  writer is refused at once (exit 2) with that information;
* the kernel drops an ``flock`` when its process dies, so a SIGKILLed holder never blocks the
  next run: the next writer gets the lock, finds the dead holder's record and takes over with a
  warning (that run did not finish: its temp files are cleaned by the caller);
* locks are re-entrant within a process (a pipeline locks its run directory and then calls
  library functions that lock the same directory again) and released when the last holder
  leaves, or when the process exits.

Lock files stay after release (deleting an ``flock``-ed file races with the next writer); the
holder record is removed on a clean release.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compress.core.errors import UsageError

DIR_LOCK = ".compress.lock"
# "<abs lock path>=<pid>" entries (os.pathsep-separated): locks a launcher holds for the workers it
# starts (`compress train --nproc K`): they write under it instead of being refused as a second writer
DELEGATE_ENV = "COMPRESS_LOCKS_DELEGATED"
STALE_GRACE_S = 2.0  # a dead holder's forked children (data loaders) may hold the flock a moment longer


class LockHeld(UsageError):
    """Another process writes the same output (exit 2)."""


@dataclass
class _Held:
    lock: Any
    info: Path
    count: int


_HELD: dict[str, _Held] = {}
_GUARD = threading.RLock()


def dir_lock_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / DIR_LOCK


def file_lock_path(path: str | Path) -> Path:
    p = Path(path)
    return p.with_name(f".{p.name}.lock")


def info_path(lock: str | Path) -> Path:
    return Path(f"{lock}.holder")  # JSON, named so that no "*.json" glob (table listings) picks it up


def _key(lock: Path) -> str:
    return os.path.abspath(lock)


def holder(lock: str | Path) -> dict[str, Any] | None:
    """The holder record written beside ``lock`` (None when absent or unreadable)."""
    try:
        data = json.loads(info_path(lock).read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def holder_gone(info: dict[str, Any] | None) -> bool:
    """True when ``info`` names a process on this host that no longer exists."""
    if not info or info.get("host") != socket.gethostname():
        return False
    try:
        return not pid_alive(int(info["pid"]))
    except (KeyError, TypeError, ValueError):
        return False


def describe_holder(info: dict[str, Any] | None) -> str:
    if not info:
        return "another process (no holder record)"
    return (
        f"pid {info.get('pid')} on {info.get('host')} (`{info.get('command', '?')}`, "
        f"started {info.get('started', '?')})"
    )


def _warn(msg: str) -> None:
    sys.stderr.write(f"warning: {msg}\n")
    sys.stderr.flush()


def delegate(lock: str | Path) -> None:
    """Let the processes this one starts from now on write under ``lock``, which it holds.

    For a launcher and its workers (one job, one writer): a worker's :func:`acquire` of ``lock``
    succeeds without locking while the launcher (the recorded holder) is alive. Other processes,
    and children of other processes, are still refused.
    """
    key = _key(Path(lock))
    items = [i for i in os.environ.get(DELEGATE_ENV, "").split(os.pathsep) if i and not i.startswith(f"{key}=")]
    os.environ[DELEGATE_ENV] = os.pathsep.join([*items, f"{key}={os.getpid()}"])


def _delegated(lock: Path) -> bool:
    key = _key(lock)
    for item in os.environ.get(DELEGATE_ENV, "").split(os.pathsep):
        k, _, pid = item.rpartition("=")
        if k == key and pid.isdigit():
            info = holder(lock)
            return bool(info) and info.get("pid") == int(pid) and pid_alive(int(pid))  # type: ignore[union-attr]
    return False


def acquire(
    lock: str | Path,
    *,
    what: str,
    command: str,
    wait: float = 0.0,
    on_wait: Callable[[dict[str, Any] | None], None] | None = None,
    fix: str = "wait for it to finish or choose another --out",
) -> bool:
    """Take the exclusive lock ``lock`` for ``what`` (e.g. "run directory runs/x"), within ``wait`` seconds.

    Returns True when this call took the lock, False when this process already held it (re-entry)
    or its launcher holds it for it (:func:`delegate`).
    Raises :class:`LockHeld` (exit 2) naming the holder, or a storage error when the lock file
    cannot be created (read-only, full, no permission).
    """
    from filelock import FileLock, Timeout

    from compress.core.atomic import atomic_write_json, now_iso
    from compress.core.storage import storage_errors

    lock = Path(lock)
    key = _key(lock)
    with _GUARD:
        if key in _HELD:
            _HELD[key].count += 1
            return False
    if _delegated(lock):  # our launcher holds it for us (see delegate)
        return False
    with storage_errors(lock.parent):
        lock.parent.mkdir(parents=True, exist_ok=True)
    fl = FileLock(str(lock), thread_local=False, fallback_to_soft=False)
    deadline = time.monotonic() + max(0.0, wait)
    told = False
    while True:
        try:
            with storage_errors(lock.parent):
                fl.acquire(timeout=0)
            break
        except Timeout:
            info = holder(lock)
            remaining = deadline - time.monotonic()
            if remaining <= 0 and holder_gone(info) and remaining > -STALE_GRACE_S:
                time.sleep(0.1)  # the recorded holder is dead: its children release the flock shortly
                continue
            if remaining <= 0:
                gone = " (that process is gone; a child of it may still be running)" if holder_gone(info) else ""
                raise LockHeld(f"{what} is in use by {describe_holder(info)}{gone}; {fix}") from None
            if on_wait is not None and not told:
                on_wait(info)
                told = True
            time.sleep(min(0.2, max(0.01, remaining)))
        except OSError as err:  # after Timeout, which is an OSError too
            if err.errno in (errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP):
                raise UsageError(
                    f"{what}: its file system does not support file locks (flock: {err.strerror}); "
                    "choose a directory on a local disk"
                ) from None
            raise
    prev = holder(lock)
    if prev and prev.get("pid") != os.getpid():
        state = "which is gone" if holder_gone(prev) else "which did not release it"
        _warn(f"taking over the stale lock on {what} from {describe_holder(prev)}, {state}")
    info = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": command,
        "started": now_iso(),
        "argv": list(sys.argv),
    }
    try:
        with storage_errors(lock.parent):
            atomic_write_json(info_path(lock), info)
    except BaseException:
        fl.release()
        raise
    with _GUARD:
        _HELD[key] = _Held(fl, info_path(lock), 1)
    return True


def release(lock: str | Path) -> None:
    """Leave ``lock`` once; the last leave removes the holder record and drops the flock."""
    key = _key(Path(lock))
    with _GUARD:
        h = _HELD.get(key)
        if h is None:
            return
        h.count -= 1
        if h.count > 0:
            return
        del _HELD[key]
    with contextlib.suppress(OSError):
        h.info.unlink()
    with contextlib.suppress(Exception):
        h.lock.release(force=True)


def held(lock: str | Path) -> bool:
    with _GUARD:
        return _key(Path(lock)) in _HELD


@contextlib.contextmanager
def locked(
    lock: str | Path,
    *,
    what: str,
    command: str,
    wait: float = 0.0,
    on_wait: Callable[[dict[str, Any] | None], None] | None = None,
    fix: str = "wait for it to finish or choose another --out",
) -> Iterator[None]:
    """``with locked(...)``: :func:`acquire` on entry, :func:`release` on exit."""
    acquire(lock, what=what, command=command, wait=wait, on_wait=on_wait, fix=fix)
    try:
        yield
    finally:
        release(lock)


def release_all() -> None:
    """Release every lock this process holds (the end of a CLI command, or of the process)."""
    with _GUARD:
        keys = list(_HELD)
    for k in keys:
        with _GUARD:
            if k in _HELD:
                _HELD[k].count = 1
        release(k)


def _after_fork() -> None:
    # A forked child (a data-loader worker) shares the parent's flocks but must not release them.
    with _GUARD:
        _HELD.clear()


atexit.register(release_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
