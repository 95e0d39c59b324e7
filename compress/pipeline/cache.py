"""Stage outputs cached by the hash of their inputs and config; nothing half-written survives a crash.

Layout inside a run directory::

    stages/<stage>/            committed outputs of a stage + stage.json (its key and file hashes)
    stages/<stage>.partial/    work in progress (key.json says for which key); never read as a result

A stage runs in ``<stage>.partial/``; when it returns, ``stage.json`` is written there and the
directory is renamed to ``<stage>/`` (the old one moved aside first and deleted after). A process
killed midway leaves only the ``.partial`` directory: the stage is redone. With ``resume=True`` a
partial directory of the *same* key is kept, so stages that checkpoint inside it (training, the
latency table, UPDP's progressive training) continue where they stopped; otherwise it is wiped.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from compress.core.runs import atomic_write_json, now_iso, sha256_file, sha256_json

STAGE_FILE = "stage.json"
KEY_FILE = "key.json"


def stage_key(name: str, version: int, config: Any, upstream: dict[str, str], inputs: dict[str, str]) -> str:
    """The cache key: stage name and version, the toolkit version, its config section, upstream keys,
    input file hashes. (Editing the toolkit's code without bumping its version is not detected.)"""
    from compress import __version__

    return sha256_json(
        {"stage": name, "v": version, "toolkit": __version__, "config": config, "upstream": upstream, "inputs": inputs}
    )[:20]


def _files(root: Path) -> dict[str, dict[str, Any]]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name not in (STAGE_FILE, KEY_FILE) and not p.name.startswith("."):
            out[str(p.relative_to(root))] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
    return out


class StageStore:
    """Committed and partial stage directories under ``<run>/stages``."""

    def __init__(self, run_dir: str | Path) -> None:
        self.root = Path(run_dir) / "stages"
        self.root.mkdir(parents=True, exist_ok=True)

    def final(self, name: str) -> Path:
        return self.root / name

    def partial(self, name: str) -> Path:
        return self.root / f"{name}.partial"

    def record(self, name: str) -> dict[str, Any] | None:
        p = self.final(name) / STAGE_FILE
        if not p.is_file():
            return None
        try:
            return json.loads(p.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None

    def lookup(self, name: str, key: str, *, verify: bool = True) -> dict[str, Any] | None:
        """The committed record of ``name`` if it was made with ``key`` and its files are intact."""
        self._recover(name)
        rec = self.record(name)
        if rec is None or rec.get("key") != key:
            return None
        if verify:
            d = self.final(name)
            for rel, meta in rec.get("files", {}).items():
                f = d / rel
                if not f.is_file() or f.stat().st_size != meta["bytes"] or sha256_file(f) != meta["sha256"]:
                    return None
        return rec

    def _recover(self, name: str) -> None:
        """A crash between the two renames of :meth:`commit` leaves a complete partial: promote it."""
        part = self.partial(name)
        if not self.final(name).exists() and (part / STAGE_FILE).is_file():
            os.replace(part, self.final(name))

    def begin(self, name: str, key: str, *, resume: bool) -> tuple[Path, bool]:
        """The empty (or, resuming the same key, kept) work directory; returns (dir, resumed)."""
        part = self.partial(name)
        kept = False
        if part.exists():
            same = False
            try:
                same = json.loads((part / KEY_FILE).read_text()).get("key") == key
            except (OSError, json.JSONDecodeError):
                pass
            if resume and same:
                kept = True
            else:
                shutil.rmtree(part)
        if not kept:
            part.mkdir(parents=True)
            atomic_write_json(part / KEY_FILE, {"key": key, "started": now_iso()})
        return part, kept

    def commit(self, name: str, key: str, result: dict[str, Any], *, inputs: dict[str, Any]) -> dict[str, Any]:
        """Seal the partial directory as the stage's output for ``key``."""
        part, final = self.partial(name), self.final(name)
        rec = {
            "stage": name,
            "key": key,
            "finished": now_iso(),
            "inputs": inputs,
            "result": result,
            "files": _files(part),
        }
        atomic_write_json(part / STAGE_FILE, rec)
        (part / KEY_FILE).unlink(missing_ok=True)
        trash = None
        if final.exists():
            trash = self.root / f".{name}.old-{os.getpid()}"
            if trash.exists():
                shutil.rmtree(trash)
            os.replace(final, trash)
        os.replace(part, final)
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
        return rec

    def discard_partials(self) -> list[str]:
        """Remove every partial directory (a fresh, non-resumed run); returns their stage names."""
        gone = []
        for p in sorted(self.root.glob("*.partial")):
            self._recover(p.name[: -len(".partial")])
            if not p.exists():
                continue
            shutil.rmtree(p, ignore_errors=True)
            gone.append(p.name[: -len(".partial")])
        for p in self.root.glob(".*.old-*"):
            shutil.rmtree(p, ignore_errors=True)
        return gone
