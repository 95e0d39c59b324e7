"""``--power-mode`` for every command that takes a device, and the ``compress devices`` views of modes
and of the estimate's calibration (kept here so the commands' own files change by a line or two)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

PowerModeOpt = Annotated[
    str | None,
    typer.Option(
        "--power-mode",
        help="Jetson power mode (e.g. MAXN, 30W; see `compress devices NAME`); also DEVICE@MODE. "
        "Default: the device's default mode, named in the output.",
    ),
]


def device_at(device: str, power_mode: str | None) -> str:
    """``device`` with ``@MODE`` from ``--power-mode`` (validated later, where the profile is resolved)."""
    from compress.hardware.modes import with_mode

    return with_mode(device, power_mode)


def devices_at(devices: list[str], power_mode: str | None) -> list[str]:
    """``--power-mode`` for a list of ``--device``: only with one device (else DEVICE@MODE each)."""
    from compress.core.errors import UsageError

    if power_mode and len(devices) > 1:
        raise UsageError(
            "--power-mode applies to one --device; with several, write DEVICE@MODE for each "
            "(e.g. --device jetson-agx-orin@30W --device jetson@MAXN_SUPER)"
        )
    return [device_at(d, power_mode) for d in devices]


def _fig(f: Any, fmt: str = "{:g}") -> str:
    if f is None:
        return "-"
    mark = "?" if f.unconfirmed else ("~" if f.note == "derived" else "")
    return fmt.format(f.value) + mark


def mode_rows(prof: Any) -> list[dict[str, Any]]:
    """One JSON-ready row per power mode of ``prof`` (figures with source, derived/unconfirmed flags)."""
    from compress.hardware.modes import default_mode_name

    out = []
    for m in prof.power_modes:
        figs = {
            k: getattr(m, k)
            for k in (
                "gpu_clock_mhz",
                "gpu_tpcs",
                "emc_clock_mhz",
                "memory_bandwidth",
                "cpu_cores_online",
                "cpu_clock_mhz",
                "dla_clock_mhz",
            )
        }
        row = {
            "name": m.name,
            "default": m.name == default_mode_name(prof),
            "aliases": m.aliases,
            "nvpmodel_id": m.nvpmodel_id,
            "nvpmodel_name": m.nvpmodel_name,
            "custom": m.custom,
            "description": m.description,
            "estimate_available": bool(m.gpu_clock_mhz or m.peak),
        }
        for k, f in figs.items():
            row[k] = f.model_dump() if f is not None else None
        row["peak"] = {p: f.model_dump() for p, f in m.peak.items()}
        row["dla_peak_per_core"] = {p: f.model_dump() for p, f in m.dla_peak.items()}
        out.append(row)
    return out


def render_modes(prof: Any, console: Any) -> None:
    from rich.table import Table

    from compress.hardware.modes import default_mode_name

    t = Table(title=f"{prof.name}: power modes (default {default_mode_name(prof)})")
    for col in (
        "mode",
        "nvpmodel",
        "GPU MHz",
        "TPCs",
        "INT8 TOPS",
        "FP16 TFLOPS",
        "EMC MHz",
        "GB/s",
        "CPU cores",
        "DLA INT8 TOPS/core",
        "estimate",
    ):
        t.add_column(col, no_wrap=True)
    for m in prof.power_modes:
        name = m.name + (" (default)" if m.name == default_mode_name(prof) else "")
        nv = (
            "custom"
            if m.custom
            else (f"{m.nvpmodel_id}: {m.nvpmodel_name}" if m.nvpmodel_id is not None else (m.nvpmodel_name or "-"))
        )
        t.add_row(
            name,
            nv,
            _fig(m.gpu_clock_mhz),
            _fig(m.gpu_tpcs),
            _fig(m.peak.get("int8")),
            _fig(m.peak.get("fp16")),
            _fig(m.emc_clock_mhz),
            _fig(m.memory_bandwidth),
            _fig(m.cpu_cores_online),
            _fig(m.dla_peak.get("int8")),
            "yes" if (m.gpu_clock_mhz or m.peak) else "refused (no figures)",
        )
    console.print(t)
    console.print(
        "[dim]~ derived from a published figure, ? unconfirmed (not in the stored sources); every figure's "
        f"source: `compress devices {prof.name} --json`[/dim]"
    )


def render_check(res: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    t = Table(title="Roofline estimates vs published batch-1 latencies (ESTIMATED vs published)")
    for col in (
        "row",
        "device@mode",
        "model",
        "prec",
        "published ms",
        "estimate ms",
        "ratio",
        "leave-one-out ms",
        "LOO ratio",
    ):
        t.add_column(col, no_wrap=True)
    for r in res["rows"]:
        est = "-" if r["estimate_ms"] is None else f"{r['estimate_ms']:.3f}"
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
        loo = "-" if r["loo_estimate_ms"] is None else f"{r['loo_estimate_ms']:.3f}"
        lr = "-" if r["loo_ratio"] is None else f"{r['loo_ratio']:.2f}"
        t.add_row(
            r["id"],
            f"{r['device']}@{r['mode']}",
            r["model"],
            r["precision"],
            f"{r['published_ms']:.3f}",
            est,
            ratio,
            loo,
            lr,
        )
    console.print(t)
    for name, c in res["calibrations"].items():
        console.print(
            f"calibration {name}: efficiency x{c['efficiency_scale']:.3f} of the defaults, "
            f"{c['layer_overhead_cycles']:.0f} GPU cycles per layer; fit max error {c['fit_max_error_pct']:.1f}%, "
            f"leave-one-out max {c['loo_max_error_pct']:.1f}% (a whole device+mode left out at a time); "
            f"fitted {c['fitted']} to {len(c['rows'])} rows"
        )
    if res.get("note"):
        console.print(f"[yellow]note:[/] {res['note']}")
