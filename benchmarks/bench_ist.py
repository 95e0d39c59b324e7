"""IST vs data parallel (DDP) with 2 processes on one machine (ALGORITHMS.md §3).

Both train the full model of the same supernet family on the same data and schedule under torchrun
(gloo): DDP all-reduces every gradient every step; IST trains disjoint halves of every block's
hidden channels for R local steps and then exchanges only the slices each worker owns plus the
averaged shared layers. Reported: bytes sent per step per rank (ring-algorithm cost of the
collectives' payloads, counted in the code that issues them), wall-clock training time (evaluation
excluded) to reach a target validation top-1 of the full model, and the final top-1.

    python benchmarks/bench_ist.py --quick     # minutes: harness check, numbers meaningless
    python benchmarks/bench_ist.py             # Fashion-MNIST subset, about 30-40 min

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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(strategy: str, args, out: Path) -> dict:
    if out.exists():
        shutil.rmtree(out)
    cmd = [sys.executable, "-m", "compress", "train", "--family", args.family, "--data", args.data,
           "--epochs", str(args.epochs), "--out", str(out), "--seed", str(args.seed), "--nproc", "2",
           "--max-restarts", "0", "--batch-size", str(args.batch_size), "--train-limit", str(args.train_limit),
           "--threads", "1", "--checkpoint-every", "100000", "--json", "--strategy", strategy,
           "--ist-local-steps", str(args.local_steps), "--lr", str(args.lr)]
    if strategy == "ddp":  # full model only: the DεpS teacher phase over the whole run
        cmd += ["--shrink-start", str(args.epochs), "--ramp-epochs", "0"]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    if res.returncode != 0:
        raise SystemExit(f"{strategy} failed:\n{res.stderr[-3000:]}")
    result = json.loads((out / "result.json").read_text())
    evals = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines() if '"eval"' in ln]
    result["curve"] = [{"epoch": e["epoch"], "train_s": e.get("train_s"), "top1": e["top1"]["max"]} for e in evals]
    return result


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
    args = ap.parse_args()
    if args.quick:
        args.epochs, args.train_limit, args.batch_size, args.local_steps = 2, 512, 32, 4
    res = {s: run(s, args, args.out / s) for s in ("ddp", "ist")}
    target = args.target if args.target is not None else 0.98 * res["ddp"]["curve"][-1]["top1"]
    for r in res.values():
        r["time_to_target_s"] = next((c["train_s"] for c in r["curve"] if c["top1"] >= target), None)
    ratio = res["ddp"]["bytes_sent_per_step_per_rank"] / max(1e-9, res["ist"]["bytes_sent_per_step_per_rank"])
    report = {"family": args.family, "data": args.data, "epochs": args.epochs, "train_limit": args.train_limit,
              "quick": args.quick, "target_top1": target, "bytes_ratio_ddp_over_ist": ratio, "runs": res}
    d = ROOT / "benchmarks" / "results" / "ist"
    d.mkdir(parents=True, exist_ok=True)
    name = "ist_quick" if args.quick else "ist"
    (d / f"{name}.json").write_text(json.dumps(report, indent=2))
    lines = [f"# IST vs DDP, 2 processes ({args.family}, {args.data}, {args.train_limit} images, {args.epochs} epochs)", "",
             "| strategy | bytes sent / step / rank | final val top-1 | train s to target "
             f"{100 * target:.1f}% | total wall s |", "|---|---|---|---|---|"]
    for s, r in res.items():
        tt = r["time_to_target_s"]
        lines.append(f"| {s} | {r['bytes_sent_per_step_per_rank']:,.0f} | {100 * r['curve'][-1]['top1']:.2f} | "
                     f"{'not reached' if tt is None else f'{tt:.0f}'} | {r['wall_s']:.0f} |")
    lines.append(f"\nDDP sends {ratio:.1f}x the bytes of IST per step.")
    (d / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
