"""Training checkpoints, written atomically and read without unpickling.

- :class:`Checkpointer` (supernet training, :mod:`compress.train.core`): model, optimizer, teacher,
  loop position and RNG states. Layout: ``DIR/checkpoints/step-000123.pt`` (``torch.save`` of
  tensors, numbers and strings only, read back with ``torch.load(weights_only=True)``) and
  ``DIR/checkpoints/latest.json`` naming the newest one; older files beyond ``keep`` are removed
  after the pointer moves.
- :class:`EpochCheckpoint` (trainers that resume after the last finished epoch, such as UPDP's
  progressive training): ``ckpt.safetensors`` (the model), ``ckpt_opt.pt`` (optimiser and
  scheduler states) and ``ckpt.json`` (position, history and the run's settings; a checkpoint
  made with other settings is refused).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np

from compress.core.errors import UsageError
from compress.core.runs import atomic_path, atomic_write_json, read_json

LATEST = "latest.json"


def rng_state() -> dict[str, Any]:
    import torch

    py = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": json.dumps(np.random.get_state()[1].tolist()),
        "numpy_pos": int(np.random.get_state()[2]),
        "python": json.dumps([py[0], list(py[1]), py[2]]),
    }


def set_rng_state(s: dict[str, Any]) -> None:
    import torch

    torch.set_rng_state(s["torch"])
    st = np.random.get_state()
    np.random.set_state((st[0], np.array(json.loads(s["numpy"]), dtype=np.uint32), int(s["numpy_pos"]), 0, 0.0))
    v, state, gauss = json.loads(s["python"])
    random.setstate((v, tuple(state), gauss))


class Checkpointer:
    def __init__(self, run_dir: str | Path, *, keep: int = 2) -> None:
        self.dir = Path(run_dir) / "checkpoints"
        self.keep = keep

    def latest(self) -> Path | None:
        ptr = self.dir / LATEST
        if not ptr.is_file():
            return None
        try:
            name = json.loads(ptr.read_text())["file"]
        except (json.JSONDecodeError, KeyError, OSError):
            raise UsageError(f"{ptr} is corrupted; delete it to start over or restore a backup") from None
        p = self.dir / name
        return p if p.is_file() else None

    def save(self, state: dict[str, Any], step: int) -> Path:
        import torch

        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / f"step-{step:08d}.pt"
        with atomic_path(path) as tmp:
            torch.save(state, tmp)
        atomic_write_json(self.dir / LATEST, {"file": path.name, "step": step})
        files = sorted(self.dir.glob("step-*.pt"))
        for old in files[: -self.keep]:
            if old != path:
                old.unlink(missing_ok=True)
        return path

    def load(self, path: str | Path | None = None) -> dict[str, Any] | None:
        import torch

        p = Path(path) if path is not None else self.latest()
        if p is None:
            return None
        try:
            return torch.load(p, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - torch raises many types for bad files
            raise UsageError(f"cannot read checkpoint {p}: {err}; it may be truncated") from None


class EpochCheckpoint:
    """One resumable checkpoint per directory, rewritten after each epoch (see the module docstring)."""

    def __init__(self, directory: str | Path, *, settings: dict[str, Any]) -> None:
        self.dir = Path(directory)
        self.settings = settings

    def exists(self) -> bool:
        return (self.dir / "ckpt.json").is_file()

    def save(self, model: Any, states: dict[str, Any], record: dict[str, Any]) -> None:
        """``model``'s weights, the optimiser/scheduler ``states`` and ``record`` (plus the settings)."""
        import torch
        from safetensors.torch import save_file

        self.dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.dir / "ckpt.safetensors") as tmp:
            save_file({k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}, str(tmp))
        with atomic_path(self.dir / "ckpt_opt.pt") as tmp:
            torch.save(states, tmp)
        atomic_write_json(self.dir / "ckpt.json", {**record, "config": self.settings})

    def load(self, model: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """Load the weights into ``model``; returns ``(record, states)``. Refuses other settings."""
        import torch
        from safetensors.torch import load_file

        rec = read_json(self.dir / "ckpt.json", what="training checkpoint")
        if rec.get("config") != self.settings:
            raise UsageError(
                f"{self.dir}: a checkpoint from a run with other settings is there; use another --out or delete it"
            )
        model.load_state_dict(load_file(str(self.dir / "ckpt.safetensors")))
        return rec, torch.load(self.dir / "ckpt_opt.pt", weights_only=True)
