"""IST vs data parallel (DDP) with 2 processes on one machine (ALGORITHMS.md §3).

Both train the full model of the same supernet family on the same data and schedule under torchrun
(gloo): DDP all-reduces every gradient every step; IST trains disjoint halves of every block's
hidden channels for R local steps and then exchanges only the slices each worker owns plus the
averaged shared layers. Reported: bytes sent per step per rank (ring-algorithm cost of the
collectives' payloads, counted in the code that issues them), wall-clock training time (evaluation
excluded) to reach a target validation top-1 of the full model, and the final top-1.

``--links RATE_MBIT:DELAY_MS,...`` runs every rank in its own network namespace on a switch whose
ports are shaped to that rate (benchmarks/netlink.py; needs root and iproute2, skipped with the
reason otherwise), for each process count of ``--procs``. Per (link, processes): DDP's and IST's
final top-1, each one's training time (evaluation excluded) to DDP's final top-1 minus 1 point on
that link, total wall, bytes per step, and the link's measured TCP throughput. Results are merged
into ``links`` of benchmarks/results/ist/ist.json (one entry per link and process count, so parts
can run separately), with ist_links.md and ist_links.png (time to target against bandwidth).

    python benchmarks/bench_ist.py --quick     # minutes: harness check, numbers meaningless
    python benchmarks/bench_ist.py             # Fashion-MNIST subset, about 30-40 min
    python benchmarks/bench_ist.py --links 10000:1,1000:2,100:2,20:5 --procs 2,4   # over shaped links (root)

Both processes share this machine's cores, so "wall time" here measures compute contention more
than network cost; bytes per step is the machine-independent number. Writes
benchmarks/results/ist/ist.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(strategy: str, args, out: Path) -> dict:
    if out.exists():
        shutil.rmtree(out)
    cmd = [
        sys.executable,
        "-m",
        "compress",
        "train",
        "--family",
        args.family,
        "--data",
        args.data,
        "--epochs",
        str(args.epochs),
        "--out",
        str(out),
        "--seed",
        str(args.seed),
        "--nproc",
        "2",
        "--max-restarts",
        "0",
        "--batch-size",
        str(args.batch_size),
        "--train-limit",
        str(args.train_limit),
        "--threads",
        "1",
        "--checkpoint-every",
        "100000",
        "--json",
        "--strategy",
        strategy,
        "--ist-local-steps",
        str(args.local_steps),
        "--lr",
        str(args.lr),
    ]
    if strategy == "ddp":  # full model only: the DεpS teacher phase over the whole run
        cmd += ["--shrink-start", str(args.epochs), "--ramp-epochs", "0"]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    if res.returncode != 0:
        raise SystemExit(f"{strategy} failed:\n{res.stderr[-3000:]}")
    result = json.loads((out / "result.json").read_text())
    evals = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines() if '"eval"' in ln]
    result["curve"] = [{"epoch": e["epoch"], "train_s": e.get("train_s"), "top1": e["top1"]["max"]} for e in evals]
    return result


def _train_cmd(strategy: str, args, out: Path, procs: int) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "compress",
        "train",
        "--family",
        args.family,
        "--data",
        args.data,
        "--epochs",
        str(args.epochs),
        "--out",
        str(out),
        "--seed",
        str(args.seed),
        "--nproc",
        str(procs),
        "--batch-size",
        str(args.batch_size),
        "--train-limit",
        str(args.train_limit),
        "--threads",
        "1",
        "--checkpoint-every",
        "100000",
        "--json",
        "--strategy",
        strategy,
        "--ist-local-steps",
        str(args.local_steps),
        "--lr",
        str(args.lr),
    ]
    if args.ist_finetune_epochs is not None:
        cmd += ["--ist-finetune-epochs", str(args.ist_finetune_epochs)]
    if strategy == "ddp":  # full model only: the DεpS teacher phase over the whole run
        cmd += ["--shrink-start", str(args.epochs), "--ramp-epochs", "0"]
    return cmd


def run_over_link(net, strategy: str, args, out: Path, procs: int) -> dict:
    """One training run with rank i in namespace i (gloo over the shaped link)."""
    import netlink

    if out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    port = netlink.free_port()
    logs = []
    ps = []
    for i in range(procs):
        log = open(out.parent / f"{out.name}.rank{i}.log", "w")  # noqa: SIM115 - closed below
        logs.append(log)
        env = net.gloo_env(i, port=port, base=dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT)))
        ps.append(
            net.popen(
                i, _train_cmd(strategy, args, out, procs), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        )
    t0 = time.perf_counter()
    rcs = [p.wait() for p in ps]
    wall = time.perf_counter() - t0
    for log in logs:
        log.close()
    if any(rcs):
        tail = (out.parent / f"{out.name}.rank0.log").read_text()[-3000:]
        raise SystemExit(f"{strategy} over the link failed (exit codes {rcs}):\n{tail}")
    result = json.loads((out / "result.json").read_text())
    evals = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines() if '"eval"' in ln]
    result["curve"] = [{"epoch": e["epoch"], "train_s": e.get("train_s"), "top1": e["top1"]["max"]} for e in evals]
    result["process_wall_s"] = wall
    return result


def links_main(args) -> None:
    """IST vs DDP over each shaped link and process count; merged into ist.json's ``links``."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import netlink

    ok, why = netlink.available()
    if not ok:
        print(f"skipped: {why}")
        return
    links = []
    for tok in args.links.split(","):
        rate, _, delay = tok.partition(":")
        links.append((float(rate), float(delay or 0)))
    procs_list = [int(p) for p in args.procs.split(",")]
    d = ROOT / "benchmarks" / "results" / "ist"
    d.mkdir(parents=True, exist_ok=True)
    stem = "ist_quick" if args.quick else "ist"  # --quick checks the harness; its numbers stay apart
    path = d / f"{stem}.json"
    report = json.loads(path.read_text()) if path.is_file() else {}
    entries = report.get("links", [])
    for procs in procs_list:
        for rate, delay in links:
            load0 = os.getloadavg()[0]
            with netlink.SlowNet(n=procs, rate_mbit=rate, delay_ms=delay) as net:
                measured = netlink.measure_throughput(net, int(min(8e6, max(1e6, rate * 1e6 / 8 * 0.5))))
                tag = f"{int(rate)}mbit_{procs}p"
                res = {s: run_over_link(net, s, args, args.out / "links" / tag / s, procs) for s in ("ddp", "ist")}
                shaper, applied = net.shaper, net.delay_applied_ms
            ddp_final = res["ddp"]["curve"][-1]["top1"]
            target = ddp_final - 0.01
            tt = {s: next((c["train_s"] for c in r["curve"] if c["top1"] >= target), None) for s, r in res.items()}
            entry = {
                "rate_mbit": rate,
                "delay_ms": applied,
                "delay_requested_ms": delay,
                "shaper": shaper,
                "measured_mbit": round(measured, 1),
                "processes": procs,
                "ddp_final_top1": round(100 * ddp_final, 2),
                "ist_final_top1": round(100 * res["ist"]["curve"][-1]["top1"], 2),
                "target_top1": round(100 * target, 2),
                "ddp_time_to_target_s": None if tt["ddp"] is None else round(tt["ddp"], 1),
                "ist_time_to_target_s": None if tt["ist"] is None else round(tt["ist"], 1),
                "ddp_wall_s": round(res["ddp"]["process_wall_s"], 1),
                "ist_wall_s": round(res["ist"]["process_wall_s"], 1),
                "bytes_per_step_ddp": round(res["ddp"]["bytes_sent_per_step_per_rank"]),
                "bytes_per_step_ist": round(res["ist"]["bytes_sent_per_step_per_rank"]),
                "ddp_curve": res["ddp"]["curve"],
                "ist_curve": res["ist"]["curve"],
                "loadavg_1min_start": round(load0, 2),
                "loadavg_1min_end": round(os.getloadavg()[0], 2),
                "cpu_cores": os.cpu_count(),
                "settings": {
                    "family": args.family,
                    "data": args.data,
                    "epochs": args.epochs,
                    "train_limit": args.train_limit,
                    "batch_size_per_process": args.batch_size,
                    "lr": args.lr,
                    "ist_local_steps": args.local_steps,
                    "ist_finetune_epochs": args.ist_finetune_epochs,
                    "seed": args.seed,
                },
                "date": time.strftime("%Y-%m-%d", time.gmtime()),
            }
            entries = [e for e in entries if not (e["rate_mbit"] == rate and e["processes"] == procs)] + [entry]
            entries.sort(key=lambda e: (e["processes"], -e["rate_mbit"]))
            report["links"] = entries
            report["links_note"] = (
                "Measured on one shared 2-core machine (other engineers' jobs ran beside it; see loadavg_1min_*); "
                "with 4 processes there are more processes than cores, so compare DDP and IST at equal process "
                "counts only. Links: rank namespaces on a bridge, every port shaped to rate_mbit by "
                f"{shaper} (delay_ms is the delay actually applied: this kernel has no sch_netem, so none). "
                "Time to target is training time (evaluation excluded) at the first epoch-end evaluation "
                "reaching DDP's final top-1 minus 1 point."
            )
            tmp = path.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(report, indent=2))
            tmp.replace(path)
            print(json.dumps({k: v for k, v in entry.items() if not k.endswith("_curve")}), flush=True)
    _links_outputs(report, d, stem)


def _links_outputs(report: dict, d: Path, stem: str) -> None:
    entries = report.get("links", [])
    lines = [
        "# IST vs DDP over shaped links",
        "",
        report.get("links_note", ""),
        "",
        "| processes | link Mbit/s (measured) | delay ms | DDP top-1 | IST top-1 | DDP s to target | "
        "IST s to target | DDP wall s | IST wall s | bytes/step DDP | bytes/step IST |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def f(v):
        return "not reached" if v is None else f"{v:.0f}"

    for e in entries:
        # secondary: each one's time to the lower of the two finals (what IST reaches), from the stored curves
        low = min(e["ddp_final_top1"], e["ist_final_top1"]) / 100
        e["time_to_lower_final_s"] = {
            k: next((c["train_s"] for c in e[f"{k}_curve"] if c["top1"] >= low - 1e-9), None) for k in ("ddp", "ist")
        }
        lines.append(
            f"| {e['processes']} | {e['rate_mbit']:g} ({e['measured_mbit']:g}) | {e['delay_ms']:g} | "
            f"{e['ddp_final_top1']:.2f} | {e['ist_final_top1']:.2f} | {f(e['ddp_time_to_target_s'])} | "
            f"{f(e['ist_time_to_target_s'])} | {e['ddp_wall_s']:.0f} | {e['ist_wall_s']:.0f} | "
            f"{e['bytes_per_step_ddp']:,} | {e['bytes_per_step_ist']:,} |"
        )
    lines += ["", "Time (train s) to the lower of the two final top-1s (what both reach):", ""]
    for e in entries:
        t = e["time_to_lower_final_s"]
        lines.append(
            f"- {e['processes']} processes, {e['rate_mbit']:g} Mbit/s: "
            f"DDP {f(t['ddp'])} s, IST {f(t['ist'])} s "
            f"(to {min(e['ddp_final_top1'], e['ist_final_top1']):.2f}%)"
        )
    tmp = d / f"{stem}.json.tmp"
    tmp.write_text(json.dumps(report, indent=2))
    tmp.replace(d / f"{stem}.json")
    (d / f"{stem}_links.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, key, title in (
        (axes[0], "target", "to DDP's final top-1 - 1 pt"),
        (axes[1], "lower", "to the lower of the two finals"),
    ):
        for procs in sorted({e["processes"] for e in entries}):
            es = sorted((e for e in entries if e["processes"] == procs), key=lambda e: e["rate_mbit"])
            for s_, mk in (("ddp", "o-"), ("ist", "s--")):
                get = (
                    (lambda e, s_=s_: e[f"{s_}_time_to_target_s"])
                    if key == "target"
                    else (lambda e, s_=s_: e["time_to_lower_final_s"][s_])
                )
                pts = [(e["rate_mbit"], get(e)) for e in es if get(e) is not None]
                if pts:
                    ax.plot(*zip(*pts), mk, label=f"{s_.upper()} x{procs}")
                elif key == "target":
                    ax.plot([], [], mk, label=f"{s_.upper()} x{procs}: not reached")
        ax.set_xscale("log")
        ax.set_xlabel("link rate (Mbit/s, tbf-shaped)")
        ax.set_title(f"train s {title}", fontsize=10)
        ax.legend()
    axes[0].set_ylabel("training seconds (evaluation excluded)")
    fig.suptitle("IST vs DDP: time to accuracy against bandwidth")
    fig.tight_layout()
    fig.savefig(d / f"{stem}_links.png", dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--family", default="convnext-small-input")
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--train-limit", type=int, default=12000)
    ap.add_argument("--batch-size", type=int, default=64, help="per process")
    ap.add_argument("--local-steps", type=int, default=20, help="IST: R local steps per round")
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--target", type=float, default=None, help="val top-1 target (default: 0.98 x DDP's final)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "bench_ist")
    ap.add_argument(
        "--links",
        default=None,
        help="RATE_MBIT:DELAY_MS,... : run over shaped links (root); 'report': redo the outputs",
    )
    ap.add_argument("--procs", default="2", help="process counts for --links, e.g. 2,4")
    ap.add_argument("--ist-finetune-epochs", type=float, default=None, help="IST: full-model DP epochs at the end")
    args = ap.parse_args()
    if args.links == "report":  # rewrite ist_links.md/png (and derived fields) from ist.json
        d = ROOT / "benchmarks" / "results" / "ist"
        stem = "ist_quick" if args.quick else "ist"
        _links_outputs(json.loads((d / f"{stem}.json").read_text()), d, stem)
        return
    if args.links:
        if args.quick:
            args.epochs, args.train_limit, args.batch_size, args.local_steps = 2, 512, 32, 4
        links_main(args)
        return
    if args.quick:
        args.epochs, args.train_limit, args.batch_size, args.local_steps = 2, 512, 32, 4
    res = {s: run(s, args, args.out / s) for s in ("ddp", "ist")}
    target = args.target if args.target is not None else 0.98 * res["ddp"]["curve"][-1]["top1"]
    for r in res.values():
        r["time_to_target_s"] = next((c["train_s"] for c in r["curve"] if c["top1"] >= target), None)
    ratio = res["ddp"]["bytes_sent_per_step_per_rank"] / max(1e-9, res["ist"]["bytes_sent_per_step_per_rank"])
    report = {
        "family": args.family,
        "data": args.data,
        "epochs": args.epochs,
        "train_limit": args.train_limit,
        "quick": args.quick,
        "target_top1": target,
        "bytes_ratio_ddp_over_ist": ratio,
        "runs": res,
    }
    d = ROOT / "benchmarks" / "results" / "ist"
    d.mkdir(parents=True, exist_ok=True)
    name = "ist_quick" if args.quick else "ist"
    (d / f"{name}.json").write_text(json.dumps(report, indent=2))
    lines = [
        f"# IST vs DDP, 2 processes ({args.family}, {args.data}, {args.train_limit} images, {args.epochs} epochs)",
        "",
        "| strategy | bytes sent / step / rank | final val top-1 | train s to target "
        f"{100 * target:.1f}% | total wall s |",
        "|---|---|---|---|---|",
    ]
    for s, r in res.items():
        tt = r["time_to_target_s"]
        lines.append(
            f"| {s} | {r['bytes_sent_per_step_per_rank']:,.0f} | {100 * r['curve'][-1]['top1']:.2f} | "
            f"{'not reached' if tt is None else f'{tt:.0f}'} | {r['wall_s']:.0f} |"
        )
    lines.append(f"\nDDP sends {ratio:.1f}x the bytes of IST per step.")
    (d / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
