"""Search results: schema, JSON, the selected-subnet files, pareto.csv, the Pareto plot, the table.

JSON (``result.json`` and ``--json``)::

    {"supernet": {...}, "predictor": {...}, "seed": 0, "algorithm": "evolution",
     "devices": {"<device>": {"device", "runtime", "precision", "batch", "budget_ms",
                              "latency_source", "selected": CANDIDATE, "pareto": [CANDIDATE, ...], ...}},
     # with exactly one device its entry's keys are also repeated at the top level:
     "device": ..., "runtime": ..., "budget_ms": ..., "latency_source": ..., "selected": ..., "pareto": ...}

    CANDIDATE = {"config": {...SubnetConfig...}, "predicted_latency_ms", "predicted_top1", "params", "macs",
                 "measured_top1": float | null}

Selected-subnet file format: see :func:`subnet_record` and /work/notes/search_api.md.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compress.core.runs import RunDir, to_jsonable

SUBNET_FORMAT = "compress-subnet"


@dataclass
class Candidate:
    config: dict[str, Any]
    predicted_latency_ms: float
    predicted_top1: float
    params: int
    macs: int
    measured_top1: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "predicted_latency_ms": round(float(self.predicted_latency_ms), 6),
            "predicted_top1": round(float(self.predicted_top1), 6),
            "params": int(self.params),
            "macs": int(self.macs),
            "measured_top1": self.measured_top1,
        }


@dataclass
class DeviceResult:
    device: str
    runtime: str
    precision: str
    batch: int
    budget_ms: float | None
    latency_source: str
    selected: Candidate
    pareto: list[Candidate]
    algorithm: str
    selection: str  # how `selected` was chosen
    search_s: float
    evaluations: int
    fallbacks: int = 0
    min_latency_ms: float | None = None
    constraints: dict[str, float] = field(default_factory=dict)
    latency_info: dict[str, Any] = field(default_factory=dict)
    # --refine: one entry per round (candidates scored, mean predicted - measured top-1 before refitting)
    refinement: list[dict[str, Any]] = field(default_factory=list)
    refine_s: float = 0.0  # wall time of the refinement rounds (evaluations, refits, repeated searches)
    # the selected subnet's top-1 under the predictor's protocol when a refinement round scored it
    # (it is then part of the predictor's training data, and its prediction is no longer out of sample)
    selected_in_predictor_data: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "runtime": self.runtime,
            "precision": self.precision,
            "batch": self.batch,
            "budget_ms": self.budget_ms,
            "latency_source": self.latency_source,
            "selected": self.selected.to_dict(),
            "pareto": [c.to_dict() for c in self.pareto],
            "algorithm": self.algorithm,
            "selection": self.selection,
            "search_s": round(self.search_s, 4),
            "evaluations": self.evaluations,
            "fallbacks": self.fallbacks,
            "min_latency_ms": self.min_latency_ms,
            "constraints": self.constraints,
            "latency_model": self.latency_info,
            "refinement": self.refinement,
            "refine_s": round(self.refine_s, 4),
            "selected_in_predictor_data": self.selected_in_predictor_data,
        }


@dataclass
class SearchResult:
    supernet: dict[str, Any]
    predictor: dict[str, Any]
    devices: list[DeviceResult]
    seed: int
    algorithm: str
    eval_data: dict[str, Any] | None = None
    out: Path | None = None
    files: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "supernet": self.supernet,
            "predictor": self.predictor,
            "seed": self.seed,
            "algorithm": self.algorithm,
            "eval_data": self.eval_data,
            "devices": {r.device: r.to_dict() for r in self.devices},
        }
        if len(self.devices) == 1:
            d.update(self.devices[0].to_dict())
        if self.out is not None:
            d["out"] = str(self.out)
            d["files"] = self.files
        return to_jsonable(d)


def subnet_record(res: SearchResult, dev: DeviceResult) -> dict[str, Any]:
    """The selected-subnet file (``compress eval`` / ``compress export`` / ``load_model`` read it)."""
    c = dev.selected
    return {
        "format": SUBNET_FORMAT,
        "version": 1,
        "supernet": res.supernet,
        "config": c.config,
        "device": dev.device,
        "runtime": dev.runtime,
        "precision": dev.precision,
        "batch": dev.batch,
        "latency_source": dev.latency_source,
        "budget_ms": dev.budget_ms,
        "predicted": {
            "latency_ms": c.predicted_latency_ms,
            "top1": c.predicted_top1,
            "params": c.params,
            "macs": c.macs,
        },
        "measured": None if c.measured_top1 is None else {"top1": c.measured_top1, "split": "val"},
        "bn_recalibration": res.eval_data,
    }


def pareto_csv(res: SearchResult) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        [
            "device",
            "rank",
            "predicted_latency_ms",
            "predicted_top1",
            "params",
            "macs",
            "measured_top1",
            "selected",
            "config_json",
        ]
    )
    for dev in res.devices:
        for i, c in enumerate(dev.pareto):
            w.writerow(
                [
                    dev.device,
                    i,
                    f"{c.predicted_latency_ms:.6f}",
                    f"{c.predicted_top1:.6f}",
                    c.params,
                    c.macs,
                    "" if c.measured_top1 is None else f"{c.measured_top1:.6f}",
                    int(c.config == dev.selected.config),
                    json.dumps(c.config, separators=(",", ":")),
                ]
            )
    return buf.getvalue()


def plot_pareto(res: SearchResult, path: Path) -> Path | None:
    """Accuracy vs latency, one colour per device, its budget as a dashed line, selected as a star.

    None (and no file) without the [report] extra: the front is in pareto.csv and result.json anyway.
    """
    from compress.core.extras import pyplot

    plt = pyplot("the search's pareto.png")
    if plt is None:
        return None

    from compress.core.runs import atomic_write_png

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, dev in enumerate(res.devices):
        col = colours[i % len(colours)]
        xs = [c.predicted_latency_ms for c in dev.pareto]
        ys = [100 * c.predicted_top1 for c in dev.pareto]
        label = f"{dev.device} ({dev.runtime}, {dev.latency_source})"
        ax.step(xs, ys, where="post", color=col, alpha=0.6)
        ax.plot(xs, ys, "o", color=col, ms=3, label=label)
        ax.plot(
            [dev.selected.predicted_latency_ms],
            [100 * dev.selected.predicted_top1],
            "*",
            color=col,
            ms=14,
            markeredgecolor="black",
        )
        if dev.budget_ms is not None:
            ax.axvline(dev.budget_ms, color=col, ls="--", lw=1)
    ax.set_xlabel("predicted latency (ms)")
    ax.set_ylabel("predicted top-1 (%)")
    ax.set_title("Pareto front per device (star: selected; dashed: budget)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return atomic_write_png(fig, path)


def write_run(res: SearchResult, run: RunDir) -> dict[str, str]:
    """Write result.json, subnet files, pareto.csv and pareto.png into ``run`` (all atomic)."""
    files: dict[str, str] = {}
    for dev in res.devices:
        name = f"subnet-{dev.device}.json"
        run.write_json(name, subnet_record(res, dev))
        files[f"subnet:{dev.device}"] = name
    if len(res.devices) == 1:
        run.write_json("subnet.json", subnet_record(res, res.devices[0]))
        files["subnet"] = "subnet.json"
    run.write_text("pareto.csv", pareto_csv(res))
    files["pareto_csv"] = "pareto.csv"
    if plot_pareto(res, run.file("pareto.png")) is not None:
        run.add_output(run.file("pareto.png"))
        files["pareto_png"] = "pareto.png"
    res.files = files
    res.out = run.path
    run.write_json("result.json", res.to_dict())
    run.save_manifest()
    return files


def render_table(res: SearchResult, console: Any) -> None:
    """A rich table of the selected subnet per device (on stderr)."""
    from rich.table import Table

    t = Table(title="compress search", show_lines=False)
    for col in (
        "device",
        "runtime",
        "budget ms",
        "latency",
        "pred. ms",
        "pred. top-1",
        "measured top-1",
        "params",
        "MMACs",
        "front",
    ):
        t.add_column(col, overflow="fold")
    for d in res.devices:
        c = d.selected
        mode = (d.latency_info or {}).get("power_mode")
        t.add_row(
            d.device + (f"@{mode}" if mode else ""),
            f"{d.runtime}/{d.precision}",
            "-" if d.budget_ms is None else f"{d.budget_ms:g}",
            d.latency_source,
            f"{c.predicted_latency_ms:.3f}",
            f"{100 * c.predicted_top1:.2f}%",
            "-" if c.measured_top1 is None else f"{100 * c.measured_top1:.2f}%",
            f"{c.params:,}",
            f"{c.macs / 1e6:.1f}",
            str(len(d.pareto)),
        )
    console.print(t)
    p = res.predictor
    if p:
        console.print(
            f"[dim]accuracy predictor: {p.get('kind')} (held-out RMSE {100 * p.get('test_rmse', float('nan')):.2f} pts, "
            f"Kendall tau {p.get('test_kendall_tau', float('nan')):.3f}, {p.get('n_train')} train / "
            f"{p.get('n_test')} test subnets)[/dim]"
        )
