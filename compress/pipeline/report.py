"""``report.md`` and ``report.html`` of a pipeline run: plots (PNG, embedded base64 in the HTML) and tables.

Plots: the Pareto front per device (predicted; estimated latency marked), predicted vs measured
latency, the per-block latency breakdown of each chosen subnet. Tables: search choice per device,
accuracy before/after pruning, export parity, benchmarks, gates. Every number comes from the
stage records; nothing is computed here except formatting.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from compress.core.runs import atomic_write_png, atomic_write_text
from compress.pipeline.quant_report import plot_quant, quant_pvm, quant_rows, quant_table
from compress.pipeline.stages import Context


def _plt():
    from compress.core.extras import pyplot

    return pyplot("report figures")


def _save(fig: Any, path: Path) -> Path:
    return atomic_write_png(fig, path)


def plot_pareto(search: dict[str, Any], path: Path) -> Path | None:
    plt = _plt()
    if plt is None:  # the [report] extra is not installed: the report has its tables, no figures
        return None
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=100)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (dev, r) in enumerate(search["devices"].items()):
        col = colours[i % len(colours)]
        pts = sorted(r["pareto"], key=lambda c: c["predicted_latency_ms"])
        xs = [c["predicted_latency_ms"] for c in pts]
        ys = [100 * c["predicted_top1"] for c in pts]
        est = r["latency_source"] != "measured"
        ax.step(xs, ys, where="post", color=col, alpha=0.6, ls=":" if est else "-")
        ax.plot(
            xs, ys, "o", color=col, ms=3, label=f"{dev} ({r['runtime']}, {'ESTIMATED' if est else 'measured'} latency)"
        )
        sel = r["selected"]
        ax.plot(
            [sel["predicted_latency_ms"]], [100 * sel["predicted_top1"]], "*", color=col, ms=14, markeredgecolor="k"
        )
        if r.get("budget_ms"):
            ax.axvline(r["budget_ms"], color=col, ls="--", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("predicted latency (ms, log)")
    ax.set_ylabel("predicted top-1 (%)")
    ax.set_title(
        "Pareto front per device\n(star: chosen; dashed: budget; dotted: estimated latency table)", fontsize=10
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def plot_pred_vs_measured(rows: list[dict[str, Any]], path: Path) -> Path | None:
    rows = [r for r in rows if r.get("predicted_ms") and r.get("measured_ms")]
    if not rows:
        return None
    plt = _plt()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 4.2), dpi=100)
    hi = max(max(r["predicted_ms"], r["measured_ms"]) for r in rows) * 1.15
    ax.plot([0, hi], [0, hi], "k--", lw=1, label="y = x")
    ax.fill_between([0, hi], [0, 0.9 * hi], [0, 1.1 * hi], color="grey", alpha=0.15, label="±10%")
    for r in rows:
        ax.plot([r["predicted_ms"]], [r["measured_ms"]], "o", ms=8, label=r["what"])
    ax.set_xlim(0, hi)
    ax.set_ylim(0, hi)
    ax.set_xlabel("predicted latency (ms)")
    ax.set_ylabel("measured median latency (ms)")
    ax.set_title("predicted vs measured latency")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def plot_breakdown(breakdowns: dict[str, dict[str, Any]], path: Path) -> Path | None:
    if not breakdowns:
        return None
    plt = _plt()
    if plt is None:
        return None
    n = len(breakdowns)
    height = max(len(b["layers"]) for b in breakdowns.values()) * 0.22 + 1.2
    fig, axes = plt.subplots(1, n, figsize=(5.5 * n, height), dpi=100, squeeze=False)
    for ax, (dev, b) in zip(axes[0], breakdowns.items()):
        names = [str(layer.get("layer")) for layer in b["layers"]]
        ms = [float(layer.get("ms") or 0.0) for layer in b["layers"]]
        colours = {"measured": "tab:blue", "interpolated": "tab:green", "estimated": "tab:orange"}
        srcs = [str(layer.get("source") or b["latency_source"]) for layer in b["layers"]]
        ax.barh(range(len(ms)), ms, color=[colours.get(x, "tab:grey") for x in srcs])
        for src in sorted(set(srcs)):
            ax.barh([0], [0], color=colours.get(src, "tab:grey"), label=src)
        ax.legend(fontsize=7, loc="lower right")
        ax.set_yticks(range(len(ms)))
        ax.set_yticklabels(names, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel("ms")
        tag = "measured table" if b["latency_source"] == "measured" else "ESTIMATED (roofline)"
        ax.set_title(
            f"{dev} ({tag})\nlayers sum to {sum(ms):.3f} ms; calibrated whole-model prediction {b['total_ms']:.3f} ms",
            fontsize=9,
        )
        ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return _save(fig, path)


def _fmt(v: Any, nd: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, float):
        return f"{v:.{nd}g}"
    return str(v)


def _md_table(head: list[str], rows: list[list[Any]]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(_fmt(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def _html_table(head: list[str], rows: list[list[Any]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    trs = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>"


def collect(ctx: Context, summary: dict[str, Any]) -> dict[str, Any]:
    """The report's tables (lists of rows) and the rows of the predicted-vs-measured plot."""
    rec = {k: v["result"] for k, v in ctx.records.items()}
    t: dict[str, Any] = {}
    if "search" in rec:
        t["search"] = (
            [
                "device",
                "runtime",
                "latency table",
                "budget ms",
                "predicted ms",
                "predicted top-1 %",
                "params",
                "MACs",
                "selection",
            ],
            [
                [
                    d,
                    r["runtime"],
                    "measured" if r["latency_source"] == "measured" else "ESTIMATED (roofline)",
                    r["budget_ms"],
                    r["selected"]["predicted_latency_ms"],
                    100 * r["selected"]["predicted_top1"],
                    r["selected"]["params"],
                    r["selected"]["macs"],
                    r["selection"],
                ]
                for d, r in rec["search"]["devices"].items()
            ],
        )
    pr = rec.get("prune")
    if pr and pr.get("method") == "none" and pr.get("top1_after") is not None:
        t["prune"] = (["", "not pruned (prune.method: none)"], [["top-1 % (test split)", pr["top1_after"]]])
    if pr and pr.get("method") != "none":
        ml = pr.get("measured_latency") or {}
        t["prune"] = (
            ["", "before pruning", "after pruning"],
            [
                ["top-1 % (test split)", pr.get("top1_before"), pr.get("top1_after")],
                ["params", pr.get("params_before"), pr.get("params_after")],
                ["MACs", pr.get("macs_before"), pr.get("macs_after")],
                [
                    f"predicted ms ({pr.get('latency_source')})",
                    pr.get("predicted_latency_ms_before"),
                    pr.get("predicted_latency_ms_after"),
                ],
                ["measured ms (UPDP's check)", ml.get("before_ms"), ml.get("after_ms")],
            ],
        )
        t["prune_blocks"] = ", ".join(pr.get("pruned_blocks") or []) or "-"
    if "export" in rec:
        t["parity"] = (
            ["format", "kind", "precision", "max abs err", "max rel err", "top-1 agreement", "passed", "notes"],
            [
                [
                    f["format"],
                    f["kind"],
                    f["precision"],
                    f["max_abs_err"],
                    f["max_rel_err"],
                    f["top1_agreement"],
                    "not checked here" if f["passed"] is None else f["passed"],
                    "; ".join(f.get("notes") or []),
                ]
                for f in rec["export"]["formats"]
            ],
        )
    pvm: list[dict[str, Any]] = []
    if "bench" in rec:
        b = rec["bench"]
        t["bench"] = (
            ["artefact", "runtime", "median ms", "std ms", "p90 ms", "iterations", "cv", "noisy", "drift"],
            [
                [
                    k,
                    v["runtime"],
                    v["median_ms"],
                    v["std_ms"],
                    v["p90_ms"],
                    v["iterations"],
                    v["cv"],
                    v["noisy"],
                    v.get("drift_status"),
                ]
                for k, v in b["items"].items()
            ],
        )
        dev = b["device"]
        srch = (rec.get("search") or {}).get("devices", {}).get(dev)
        fp32_search = srch is not None and srch.get("precision", "fp32") == "fp32"  # else: quant_pvm below
        for label, v in b["items"].items():
            if label.startswith("searched:") and srch and srch["runtime"] == v["runtime"] and fp32_search:
                pvm.append(
                    {
                        "what": f"searched subnet ({srch['latency_source']} table, {v['runtime']})",
                        "predicted_ms": srch["selected"]["predicted_latency_ms"],
                        "measured_ms": v["median_ms"],
                    }
                )
            if (
                label.startswith("final:")
                and pr
                and pr.get("method") == "none"
                and srch
                and srch["runtime"] == v["runtime"]
                and fp32_search
            ):
                pvm.append(
                    {
                        "what": f"searched subnet, not pruned ({srch['latency_source']} table, {v['runtime']})",
                        "predicted_ms": srch["selected"]["predicted_latency_ms"],
                        "measured_ms": v["median_ms"],
                    }
                )
            updp_rt = str((pr or {}).get("latency_source") or "").rpartition(":")[2]
            # UPDP's own prediction sums the candidate blocks only; the whole pruned model is predicted
            # as the search's whole-subnet prediction minus UPDP's predicted saving.
            if (
                label.startswith("final:")
                and pr
                and pr.get("predicted_latency_ms_after") is not None
                and pr.get("device") == dev
                and srch
                and updp_rt == v["runtime"] == srch["runtime"]
                and fp32_search
            ):
                saving = pr["predicted_latency_ms_before"] - pr["predicted_latency_ms_after"]
                pvm.append(
                    {
                        "what": f"pruned model (searched-subnet prediction - UPDP's block saving, {v['runtime']})",
                        "predicted_ms": srch["selected"]["predicted_latency_ms"] - saving,
                        "measured_ms": v["median_ms"],
                    }
                )
        pvm += quant_pvm(rec)
        t["pvm"] = (
            ["model", "predicted ms", "measured ms", "error %"],
            [
                [
                    r["what"],
                    r["predicted_ms"],
                    r["measured_ms"],
                    100 * (r["measured_ms"] - r["predicted_ms"]) / r["predicted_ms"],
                ]
                for r in pvm
            ],
        )
    t["quant_rows"] = quant_rows(rec)
    t["quant"] = quant_table(t["quant_rows"])
    chk = rec.get("check") or {}
    if chk.get("gates"):
        t["gates"] = (
            ["gate", "result", "measured", "threshold", "margin", "detail"],
            [
                [g["name"], "PASS" if g["passed"] else "FAIL", g["measured"], g["threshold"], g["margin"], g["detail"]]
                for g in chk["gates"]
            ],
        )
    return {"tables": t, "pvm": pvm}


def write_report(ctx: Context, summary: dict[str, Any], *, out: Path | None = None) -> dict[str, Path]:
    """``report.md``, ``report.html`` and ``figures/`` into ``out`` (default: the run directory).

    The runner passes the report set's new generation directory, published as a unit afterwards.
    """
    rd = out if out is not None else ctx.run_dir
    figs = rd / "figures"
    figs.mkdir(exist_ok=True)
    data = collect(ctx, summary)
    t = data["tables"]
    pngs: dict[str, Path] = {}
    if "search" in ctx.records:
        if (p := plot_pareto(ctx.records["search"]["result"], figs / "pareto.png")) is not None:
            pngs["Pareto front"] = p
        bds = {}
        for dev, r in ctx.records["search"]["result"]["devices"].items():
            bds[dev] = json.loads(ctx.path("search", r["breakdown"]).read_text())
        if (p := plot_breakdown(bds, figs / "breakdown.png")) is not None:
            pngs["Per-block latency of the chosen subnets"] = p
    if (p := plot_quant(_plt(), t.get("quant_rows") or [], figs / "quantization.png")) is not None:
        pngs["fp32 vs quantized: top-1 and latency"] = p
    if (p := plot_pred_vs_measured(data["pvm"], figs / "pred_vs_measured.png")) is not None:
        pngs["Predicted vs measured latency (plot)"] = p

    chk = (ctx.records.get("check") or {}).get("result") or {}
    verdict = {True: "ALL GATES HOLD", False: "GATE(S) FAILED", None: "no gates configured"}[chk.get("passed")]
    sections: list[tuple[str, tuple[list[str], list[list[Any]]] | None, str]] = [
        ("Gates", t.get("gates"), verdict),
        (
            "Search: chosen subnet per device",
            t.get("search"),
            "Latency from a table measured on the device, or ESTIMATED from the roofline model where no table exists "
            "(estimated numbers are indicative only).",
        ),
        ("Pruning: accuracy before/after", t.get("prune"), f"pruned blocks: {t.get('prune_blocks', '-')}"),
        (
            "Quantization: fp32 vs "
            + ((ctx.cfg.quantize.precision if ctx.cfg.quantize else "") or "int8")
            + " side by side",
            t.get("quant"),
            "Top-1 of the fp32 and the quantized final model on the test split, each run in its runtime; layers kept in "
            "fp32 by accuracy control; latency: the bench stage's interleaved medians of both models (else the "
            "quantizer's own timing), with the timing engine's drift verdict.",
        ),
        (
            "Export parity",
            t.get("parity"),
            "Relative error = max |y_export - y_torch| / max |y_torch| on the parity batch.",
        ),
        (
            "Benchmarks",
            t.get("bench"),
            f"measured on {(ctx.records.get('bench') or {}).get('result', {}).get('device', '-')}; "
            "interleaved rounds with a canary model for drift control (drift = the timing "
            "engine's verdict: 'uncontrolled' means the machine was too busy to trust the numbers)",
        ),
        (
            "Predicted vs measured latency",
            t.get("pvm"),
            "Searched subnet: the search's prediction from its latency table vs the benchmark median of the same subnet "
            "unpruned (at the search's precision: an int8 search is checked against the quantized subnet). Pruned model: that prediction minus the saving UPDP predicted from its block timings, vs the "
            "benchmark median of the pruned model.",
        ),
    ]
    md = [f"# Pipeline report: {ctx.cfg.name}", "", f"**{verdict}** — run directory `{ctx.run_dir}`", ""]
    for title, tab, note in sections:
        if tab is None:
            continue
        md += [f"## {title}", "", note, "", _md_table(*tab), ""]
    for title, p in pngs.items():
        md += [f"## {title}", "", f"![{title}]({p.relative_to(rd)})", ""]
    md += [
        "## Stages",
        "",
        _md_table(["stage", "key", "cached"], [[k, v["key"], v.get("cached", False)] for k, v in ctx.records.items()]),
        "",
    ]
    atomic_write_text(rd / "report.md", "\n".join(md))

    css = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse;margin:.5em 0}"
        "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}th{background:#eee}.pass{color:#080}.fail{color:#b00}"
    )
    cls = "pass" if chk.get("passed") else "fail" if chk.get("passed") is False else ""
    body = [f"<h1>Pipeline report: {html.escape(ctx.cfg.name)}</h1>", f"<p class='{cls}'><b>{verdict}</b></p>"]
    for title, tab, note in sections:
        if tab is None:
            continue
        body += [f"<h2>{html.escape(title)}</h2>", f"<p>{html.escape(note)}</p>", _html_table(*tab)]
    for title, p in pngs.items():
        b64 = base64.b64encode(p.read_bytes()).decode()
        body += [
            f"<h2>{html.escape(title)}</h2>",
            f"<img alt='{html.escape(title)}' src='data:image/png;base64,{b64}'>",
        ]
    doc = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(ctx.cfg.name)}</title>"
        f"<style>{css}</style></head><body>{''.join(body)}</body></html>\n"
    )
    atomic_write_text(rd / "report.html", doc)
    return {"md": rd / "report.md", "html": rd / "report.html", **{k: v for k, v in pngs.items()}}
