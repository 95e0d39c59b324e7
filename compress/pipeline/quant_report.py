"""The report's quantization parts: fp32 vs quantized side by side (top-1, latency, speed-up), its
plot, and predicted vs measured latency of the quantized searched subnet. Formatting only: every
number comes from the quantize and bench stage records."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def quant_rows(rec: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per quantized runtime. Latency: the bench stage's interleaved medians of the fp32 and
    quantized final models where it timed both (``bench``), else the quantizer's own timing."""
    q = rec.get("quantize")
    if not q:
        return []
    items = (rec.get("bench") or {}).get("items", {})
    prec = q["precision"]
    rows = []
    for rt, r in q["runtimes"].items():
        f32, qm = items.get(f"final:{rt}"), items.get(f"final-{prec}:{rt}")
        if f32 and qm:
            ms32, msq, src, drift = f32["median_ms"], qm["median_ms"], "bench", qm.get("drift_status")
        else:
            ms32, msq, src, drift = r.get("median_ms_fp32"), r.get("median_ms_quant"), "quantizer", r.get("drift")
        rows.append(
            {
                "runtime": rt,
                "precision": prec,
                "top1_fp32": r.get("top1_fp32"),
                "top1_quant": r.get("top1_quant"),
                "drop_points": r.get("drop_points"),
                "top1_agreement": r.get("top1_agreement"),
                "fp32_layers": len(r.get("fp32_layers") or []),
                "ms_fp32": ms32,
                "ms_quant": msq,
                "speedup": (ms32 / msq) if ms32 and msq else None,
                "timing": src,
                "drift": drift,
            }
        )
    return rows


def quant_table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]] | None:
    if not rows:
        return None
    p = rows[0]["precision"]
    head = [
        "runtime",
        "top-1 % fp32",
        f"top-1 % {p}",
        "drop (points)",
        "top-1 agreement",
        "layers kept fp32",
        "median ms fp32",
        f"median ms {p}",
        "speed-up",
        "timed by",
        "drift",
    ]
    return head, [
        [
            r["runtime"],
            r["top1_fp32"],
            r["top1_quant"],
            r["drop_points"],
            r["top1_agreement"],
            r["fp32_layers"],
            r["ms_fp32"],
            r["ms_quant"],
            r["speedup"],
            r["timing"],
            r["drift"],
        ]
        for r in rows
    ]


def quant_pvm(rec: dict[str, Any]) -> list[dict[str, Any]]:
    """Predicted (the search's quantized latency table) vs measured (bench) for the quantized searched
    subnet: measured as ``searched-<prec>:<rt>``, or as the final model when pruning left it unchanged."""
    q, b, srch, pr = rec.get("quantize"), rec.get("bench"), rec.get("search"), rec.get("prune") or {}
    if not (q and b and srch):
        return []
    sel = srch["devices"].get(b["device"])
    if not sel or sel.get("precision") != q["precision"]:
        return []
    prec, rt = q["precision"], sel["runtime"]
    label = f"searched-{prec}:{rt}" if pr.get("method") != "none" else f"final-{prec}:{rt}"
    v = b["items"].get(label)
    if v is None:
        return []
    return [
        {
            "what": f"searched subnet, {prec} ({sel['latency_source']} {prec} table, {rt})",
            "predicted_ms": sel["selected"]["predicted_latency_ms"],
            "measured_ms": v["median_ms"],
        }
    ]


def plot_quant(plt: Any, rows: list[dict[str, Any]], path: Path) -> Path | None:
    """Two panels: top-1 and median latency, fp32 beside quantized, per runtime (speed-up on the bars)."""
    if plt is None or not rows:
        return None
    import numpy as np

    from compress.core.runs import atomic_write_png

    p = rows[0]["precision"]
    x = np.arange(len(rows))
    w = 0.38
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.6), dpi=100)
    for ax, k32, kq, label in (
        (a1, "top1_fp32", "top1_quant", "top-1 (%) on the test split"),
        (a2, "ms_fp32", "ms_quant", "median latency (ms)"),
    ):
        v32 = [r[k32] or 0.0 for r in rows]
        vq = [r[kq] or 0.0 for r in rows]
        ax.bar(x - w / 2, v32, w, label="fp32", color="tab:blue")
        bars = ax.bar(x + w / 2, vq, w, label=p, color="tab:orange")
        ax.set_xticks(x)
        ax.set_xticklabels([r["runtime"] for r in rows])
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, axis="y")
        if k32 == "top1_fp32":
            lo = min([v for v in v32 + vq if v > 0] or [0.0])
            ax.set_ylim(max(0.0, lo - 5), 100)
        else:
            for bar, r in zip(bars, rows):
                if r["speedup"]:
                    ax.annotate(
                        f"{r['speedup']:.2f}x",
                        (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center",
                        va="bottom",
                        fontsize=8,
                    )
        ax.legend(fontsize=8)
    fig.suptitle(f"fp32 vs {p}: accuracy and latency (speed-up over the bars)", fontsize=10)
    fig.tight_layout()
    return atomic_write_png(fig, path)
