"""DεpS vs OFA progressive shrinking vs BigNAS at equal training compute (ALGORITHMS.md §2, §5.5).

Compute is counted in subnet passes: one forward + backward of one subnet over one global batch
(DεpS full-model steps cost 1, sandwich steps n = 4; OFA-PS 1/1/2/2/4/4 per phase; BigNAS 4). Each
recipe gets the number of epochs whose expected passes are closest to the same budget (the exact
counts are reported). All recipes use a fixed kernel K = max, as the DεpS paper and its OFA
baselines do. After training: top-1 on the Fashion-MNIST test split of the smallest, the largest and
the uniform middle subnets (BN recalibrated on 1,024 training images), and from the per-epoch
validation curves the passes each recipe needed to reach OFA-PS's final smallest-subnet accuracy.

    python benchmarks/bench_train_recipes.py --quick          # minutes: smoke test of the harness
    python benchmarks/bench_train_recipes.py                  # about 30 min per recipe on 2 cores

Writes benchmarks/results/train_recipes/train_recipes.json and .md. Numbers are from one seed on one machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OFA_FRACTIONS = (180, 120, 25, 120, 40, 120)
OFA_N = (1, 1, 2, 2, 4, 4)


def passes_per_step(recipe: str, n: int = 4, shrink_frac: float = 150 / 270, ramp_frac: float = 5 / 270) -> float:
    if recipe == "bignas":
        return float(n)
    if recipe == "deps":
        teacher = shrink_frac - ramp_frac
        return teacher * 1 + (1 - teacher) * n
    fr = list(OFA_FRACTIONS)
    fr[1] = 0  # fixed kernel: no kernel phase
    return sum(f * k for f, k in zip(fr, OFA_N)) / sum(fr)


def uniform_middle(space) -> list[dict]:
    """Uniform (D, E) subnets between min and max: the middle depth/expand choices everywhere."""
    out = []
    st0 = space.stages[0]
    for di in range(len(st0.depths)):
        for ei in range(len(st0.expands)):
            depths = [s.depths[min(di, len(s.depths) - 1)] for s in space.stages]
            cfg = space.config(
                resolution=space.resolutions[-1],
                width=space.width_mults[-1],
                depths=depths,
                kernels=[[s.kernels[-1]] * d for s, d in zip(space.stages, depths)],
                expands=[[s.expands[min(ei, len(s.expands) - 1)]] * d for s, d in zip(space.stages, depths)],
            )
            out.append({"name": f"D{di}E{ei}", "config": cfg.to_dict()})
    return out


def run_recipe(recipe: str, epochs: int, args, out: Path) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "compress",
        "train",
        "--family",
        args.family,
        "--data",
        args.data,
        "--recipe",
        recipe,
        "--epochs",
        str(epochs),
        "--out",
        str(out),
        "--seed",
        str(args.seed),
        "--batch-size",
        str(args.batch_size),
        "--fixed-kernel",
        "--threads",
        str(args.threads),
        "--checkpoint-every",
        "100000",
        "--device",
        args.device,
        "--json",
    ]
    if args.train_limit:
        cmd += ["--train-limit", str(args.train_limit)]
    if recipe == "deps" and args.ramp_epochs is not None:
        cmd += ["--ramp-epochs", str(args.ramp_epochs)]
    t0 = time.perf_counter()
    res = subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    )
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"{recipe} failed:\n{res.stderr[-3000:]}")
    result = json.loads(res.stdout)
    result["wall_s_total"] = wall
    return result


def _gpu_name(device: str) -> str | None:
    if device != "cuda":
        return None
    import torch

    return torch.cuda.get_device_name(0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny budget: checks the harness, numbers meaningless")
    ap.add_argument("--family", default="mbv3-small-input")
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--deps-epochs", type=int, default=8, help="DεpS epochs; the others get equal passes")
    ap.add_argument("--train-limit", type=int, default=12000)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--ramp-epochs", type=float, default=0.5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="recipes trained at once (each with --threads threads); wall times then include contention",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (compress train --device)")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "bench_train_recipes")
    args = ap.parse_args()
    if args.quick:
        args.deps_epochs, args.train_limit, args.batch_size = 2, 512, 64
    budget = args.deps_epochs * passes_per_step("deps")
    epochs = {"deps": args.deps_epochs}
    for r in ("ofa-ps", "bignas"):
        epochs[r] = max(1, round(budget / passes_per_step(r)))
    from compress.train.evaluate import evaluate_supernet

    results = {}
    outs = {r: args.out / r for r in ("deps", "ofa-ps", "bignas")}
    for recipe, out in outs.items():
        if out.exists():
            import shutil

            shutil.rmtree(out)
        print(f"[{recipe}] {epochs[recipe]} epochs", file=sys.stderr, flush=True)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:  # subprocesses: threads only wait
        futures = {r: pool.submit(run_recipe, r, epochs[r], args, out) for r, out in outs.items()}
        trained = {r: f.result() for r, f in futures.items()}
    for recipe, out in outs.items():
        res = trained[recipe]
        evals = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines() if '"eval"' in ln]
        from compress.supernet import load_checkpoint

        space = load_checkpoint(res["supernet"]).space
        mid = uniform_middle(space)
        if args.quick:  # smallest-depth/expand, middle and largest uniform subnets only
            mid = [mid[0], mid[len(mid) // 2], mid[-1]]
        subfile = out / "uniform_subnets.json"
        subfile.write_text(json.dumps(mid))
        rows = evaluate_supernet(res["supernet"], data=args.data, subnets=f"{subfile}", split="test", seed=args.seed)
        from compress.train import net as netapi

        kmin = netapi.min_config(space, kernel="max")
        mn = evaluate_supernet(
            res["supernet"],
            data=args.data,
            subnets=str(_write(out / "min.json", kmin.to_dict())),
            split="test",
            seed=args.seed,
        )[0]
        mn["name"] = "min"
        results[recipe] = {
            "epochs": epochs[recipe],
            "passes": res.get("passes"),
            "wall_s": res["wall_s_total"],
            "test": [mn, *rows],
            "val_curve": [{"passes": e.get("passes"), "top1": e["top1"]} for e in evals],
        }
    target = next(r["top1"] for r in results["ofa-ps"]["test"] if r["name"] == "min")
    ofa_val_min = results["ofa-ps"]["val_curve"][-1]["top1"].get("min")
    for r in results.values():
        hit = next(
            (e["passes"] for e in r["val_curve"] if ofa_val_min is not None and e["top1"].get("min", 0) >= ofa_val_min),
            None,
        )
        r["passes_to_ofa_min_val"] = hit
    report = {
        "family": args.family,
        "data": args.data,
        "train_limit": args.train_limit,
        "quick": args.quick,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "jobs": args.jobs,
        "seed": args.seed,
        "device": args.device,
        "gpu": _gpu_name(args.device),
        "budget_passes_expected": budget,
        "ofa_min_test_top1": target,
        "results": results,
    }
    res_dir = ROOT / "benchmarks" / "results" / "train_recipes"
    res_dir.mkdir(parents=True, exist_ok=True)
    name = "train_recipes_quick" if args.quick else "train_recipes"
    (res_dir / f"{name}.json").write_text(json.dumps(report, indent=2))
    lines = [
        f"# Recipes at equal compute ({args.family}, {args.data}, {args.train_limit or 'all 60,000'} train images, batch "
        f"{args.batch_size}, {args.threads} thread(s) each, {args.jobs} recipe(s) at once, seed {args.seed}"
        f"{', device ' + args.device + (' ' + report['gpu'] if report['gpu'] else '')})",
        "",
        "| recipe | epochs | passes | wall s | min top-1 | max top-1 | middle top-1 (mean) | passes to OFA-PS min (val) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for recipe, r in results.items():
        t = {x["name"]: x["top1"] for x in r["test"]}
        mids = [v for k, v in t.items() if k not in ("min",)]
        mx = r["test"][-1]["top1"]  # the last uniform subnet: largest depth and expand
        lines.append(
            f"| {recipe} | {r['epochs']} | {r['passes']} | {r['wall_s']:.0f} | {100 * t['min']:.2f} | "
            f"{100 * mx:.2f} | {100 * sum(mids) / len(mids):.2f} | {r['passes_to_ofa_min_val']} |"
        )
    (res_dir / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _write(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj))
    return path


if __name__ == "__main__":
    main()
