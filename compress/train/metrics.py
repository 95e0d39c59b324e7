"""Training metrics: one JSON object per line (``metrics.jsonl``) and a training-curve PNG."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from compress.core.runs import atomic_write_png, atomic_write_text, to_jsonable


class MetricsLog:
    """Append-only JSONL log. On resume, :meth:`truncate` drops records past the checkpoint step."""

    def __init__(self, path: str | Path, *, enabled: bool = True) -> None:
        self.path = Path(path)
        self.enabled = enabled

    def truncate(self, step: int) -> None:
        if not self.enabled or not self.path.is_file():
            return
        keep = [ln for ln in self.path.read_text().splitlines() if ln.strip() and _step(ln) <= step]
        atomic_write_text(self.path, "".join(ln + "\n" for ln in keep))

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(to_jsonable(record), sort_keys=True) + "\n")

    def records(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        return [json.loads(ln) for ln in self.path.read_text().splitlines() if ln.strip()]


def _step(line: str) -> int:
    try:
        return int(json.loads(line).get("step", 0))
    except (json.JSONDecodeError, TypeError, ValueError):
        return 1 << 62


def plot_curves(records: list[dict[str, Any]], path: str | Path, *, title: str = "") -> Path | None:
    """Loss / LR / β against step, and eval top-1 per subnet against step (matplotlib Agg)."""
    train = [r for r in records if r.get("kind") == "train"]
    evals = [r for r in records if r.get("kind") == "eval"]
    if not train and not evals:
        return None
    from compress.core.extras import pyplot

    plt = pyplot("training curves (curves.png)")
    if plt is None:
        return None

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    if train:
        s = [r["step"] for r in train]
        for key in sorted({k for r in train for k in r.get("loss", {})}):
            axes[0].plot(s, [r.get("loss", {}).get(key, float("nan")) for r in train], label=key, lw=1)
        axes[0].set_title("loss")
        axes[0].legend(fontsize=7)
        axes[1].plot(s, [r["lr"] for r in train], label="lr")
        ax2 = axes[1].twinx()
        ax2.plot(s, [r.get("beta", 0.0) for r in train], color="tab:orange", label="beta")
        ax2.set_ylim(-0.05, 1.1)
        axes[1].set_title("LR (blue) and subnet weight beta (orange)")
    if evals:
        s = [r["step"] for r in evals]
        for key in sorted({k for r in evals for k in r.get("top1", {})}):
            axes[2].plot(s, [r["top1"].get(key, float("nan")) for r in evals], marker="o", label=key)
        axes[2].set_title("val top-1 (BN recalibrated)")
        axes[2].legend(fontsize=7)
    for a in axes:
        a.set_xlabel("step")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return atomic_write_png(fig, path, dpi=110)
