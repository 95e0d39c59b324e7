"""FTWT benchmark: FLOPs reduction vs top-1 on Fashion-MNIST, against static L1 channel pruning.

For each model (a small ResNet and a small MobileNetV2 by default):
1. pre-train the dense baseline;
2. for each mass r: FTWT (decoupled) from the baseline for E epochs -> top-1, per-sample FLOPs;
3. static L1-norm filter pruning at the same mean FLOPs reduction (uniform keep ratio found by
   bisection on the same accounting), fine-tuned for the same E epochs at the same lr;
4. the dense baseline fine-tuned for the same E epochs (what the extra epochs alone give);
5. batch-1 ONNX Runtime latency of the gated model vs the dense model (shared runners and timing
   engine, canary drift control) for one r: dense runtimes cannot skip masked channels.

    python benchmarks/bench_ftwt.py --quick          # minutes: development smoke run
    python benchmarks/bench_ftwt.py                  # full run (estimated 20-30 min on 2 quiet cores)

Writes ``bench_ftwt.json`` and ``bench_ftwt.md`` to ``--out`` (default ``runs/bench_ftwt``).
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FULL = dict(train_limit=8000, eval_limit=3000, pretrain_epochs=4, epochs=3, masses="0.9,0.95,0.98,1.0")
QUICK = dict(train_limit=512, eval_limit=300, pretrain_epochs=3, epochs=2, masses="0.95,1.0")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny settings for development")
    ap.add_argument("--out", default="runs/bench_ftwt")
    ap.add_argument(
        "--models", default="resnet,mobilenetv2", help="small:NAME models (resnet, mobilenetv2, mobilenetv1, vgg)"
    )
    ap.add_argument("--masses", default=None, help="comma-separated r values")
    ap.add_argument("--epochs", type=int, default=None, help="FTWT / L1 / dense fine-tune epochs")
    ap.add_argument("--pretrain-epochs", type=int, default=None)
    ap.add_argument("--train-limit", type=int, default=None)
    ap.add_argument("--eval-limit", type=int, default=None)
    ap.add_argument("--lr", type=float, default=0.01, help="fine-tune lr (FTWT backbone, L1, dense)")
    ap.add_argument("--pretrain-lr", type=float, default=0.05)
    ap.add_argument("--mode", default="decoupled", choices=["decoupled", "joint"])
    ap.add_argument("--latency-mass", type=float, default=0.95, help="r whose gated model is timed (ORT)")
    ap.add_argument("--no-latency", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    cfg = dict(QUICK if a.quick else FULL)
    for k in ("masses", "epochs", "pretrain_epochs", "train_limit", "eval_limit"):
        if getattr(a, k) is not None:
            cfg[k] = getattr(a, k)
    masses = [float(m) for m in str(cfg["masses"]).split(",")]

    import torch

    from compress.core.runs import atomic_write_json, atomic_write_text, package_versions, sha256_json
    from compress.data import load_dataset
    from compress.models import LoadedModel, load_model
    from compress.prune.ftwt.accounting import measure_flops
    from compress.prune.ftwt.api import prune_ftwt
    from compress.prune.ftwt.static_l1 import match_flops
    from compress.prune.ftwt.train import TrainConfig, evaluate, train
    from compress.prune.ftwt.wrap import apply_sites, find_sites

    torch.set_num_threads(a.threads)
    torch.set_flush_denormal(True)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    ds = load_dataset("fashion-mnist", seed=a.seed, train_limit=cfg["train_limit"])
    test = ds.test.subset(cfg["eval_limit"])
    log(f"fashion-mnist: train {len(ds.train)}, test {len(test)}; settings {cfg}")
    settings = {
        **cfg,
        "lr": a.lr,
        "pretrain_lr": a.pretrain_lr,
        "mode": a.mode,
        "seed": a.seed,
        "threads": a.threads,
        "quick": a.quick,
    }
    work = out / f"work-{sha256_json(settings)[:10]}"  # checkpoints: a rerun with the same settings resumes
    results: dict = {
        "settings": settings,
        "work_dir": str(work),
        "versions": package_versions(),
        "load_before": os.getloadavg(),
        "models": {},
    }
    for name in a.models.split(","):
        t0 = time.time()
        base = load_model(f"small:{name}", num_classes=10, in_chans=1, image_size=28)
        train(
            base.module,
            ds.train,
            cfg=TrainConfig(epochs=cfg["pretrain_epochs"], lr=a.pretrain_lr, seed=a.seed),
            checkpoint=work / f"{name}_pretrain.pt",
            progress=False,
            desc=f"{name} pretrain",
            log=log,
        )
        base_top1 = evaluate(base.module, test)
        dense_acc = measure_flops(base.module, test.images)
        log(f"{name}: baseline top1 {base_top1:.4f}, {dense_acc['dense_macs']:,} MACs/sample")
        row: dict = {"baseline_top1": base_top1, "dense_macs": dense_acc["dense_macs"], "ftwt": [], "l1": []}

        dense_ft = copy.deepcopy(base.module)
        train(
            dense_ft,
            ds.train,
            cfg=TrainConfig(epochs=cfg["epochs"], lr=a.lr, seed=a.seed),
            progress=False,
            checkpoint=work / f"{name}_dense_ft.pt",
            desc=f"{name} dense fine-tune",
            log=log,
        )
        row["dense_finetune_top1"] = evaluate(dense_ft, test)

        for r in masses:
            lm = LoadedModel(
                module=copy.deepcopy(base.module), input_shape=base.input_shape, num_classes=10, source=base.source
            )
            timed = not a.no_latency and abs(r - a.latency_mass) < 1e-9
            res = prune_ftwt(
                model=lm,
                data=ds,
                epochs=cfg["epochs"],
                mass=r,
                mode=a.mode,
                seed=a.seed,
                out=work / f"{name}_ftwt_r{r}",
                progress=False,
                lr=a.lr,
                eval_limit=cfg["eval_limit"],
                export=timed,
                latency=timed,
            )
            keep = (
                "top1_before",
                "top1_after",
                "flops_reduction_mean",
                "flops_reduction_p10",
                "flops_reduction_p90",
                "flops_reduction_mean_with_predictors",
                "predictor_overhead_frac",
                "flops_reduction_before_mean",
            )
            ftwt = {"mass": r, **{k: res[k] for k in keep}}
            row["ftwt"].append(ftwt)
            log(
                f"{name} FTWT r={r}: top1 {res['top1_after']:.4f}, FLOPs -{res['flops_reduction_mean']:.1%} "
                f"(p10 {res['flops_reduction_p10']:.1%}, p90 {res['flops_reduction_p90']:.1%})"
            )
            if timed:
                lat = res["latency"]
                row["latency"] = {
                    "mass": r,
                    **{
                        k: lat[k]
                        for k in (
                            "runtime",
                            "threads",
                            "batch",
                            "dense_ms",
                            "gated_ms",
                            "gated_over_dense",
                            "noisy",
                            "note",
                        )
                    },
                    "drift_status": lat["drift"].get("status"),
                    "parity": res["export"]["parity"],
                }
                log(
                    f"{name} ORT batch 1: dense {lat['dense_ms']:.3f} ms, gated {lat['gated_ms']:.3f} ms "
                    f"(x{lat['gated_over_dense']:.2f}); drift {lat['drift'].get('status')}"
                )

            m = copy.deepcopy(base.module)
            apply_sites(m, find_sites(m), kind="static")
            target = max(0.0, res["flops_reduction_mean"])
            best = match_flops(m, test.images[:200], target)
            train(
                m,
                ds.train,
                cfg=TrainConfig(epochs=cfg["epochs"], lr=a.lr, seed=a.seed),
                progress=False,
                checkpoint=work / f"{name}_l1_r{r}.pt",
                desc=f"{name} L1 fine-tune",
                log=log,
            )
            l1_acc = measure_flops(m, test.images)
            l1 = {
                "mass": r,
                "target_reduction": target,
                "keep_ratio": best["keep"],
                "top1": evaluate(m, test),
                "flops_reduction_mean": l1_acc["flops_reduction_mean"],
            }
            row["l1"].append(l1)
            log(
                f"{name} L1 at matched FLOPs (keep {best['keep']:.3f}): top1 {l1['top1']:.4f}, "
                f"FLOPs -{l1['flops_reduction_mean']:.1%}"
            )
        row["seconds"] = time.time() - t0
        results["models"][name] = row
        atomic_write_json(out / "bench_ftwt.json", results)
    results["seconds"] = time.time() - t_start
    results["load_after"] = os.getloadavg()
    atomic_write_json(out / "bench_ftwt.json", results)
    md = render(results)
    atomic_write_text(out / "bench_ftwt.md", md)
    print(md)
    return 0


def render(res: dict) -> str:
    st = res["settings"]
    lines = [
        f"## FTWT vs static L1 on Fashion-MNIST ({'quick' if st['quick'] else 'full'} run)",
        "",
        f"train {st['train_limit']} images, test {st['eval_limit']}, pretrain {st['pretrain_epochs']} epochs, "
        f"then {st['epochs']} epochs for each method (lr {st['lr']}), mode {st['mode']}, seed {st['seed']}, "
        f"{st['threads']} threads. FLOPs = conv+linear MACs per sample (FTWT: mean over test images; "
        "predictor overhead in the 'incl. pred.' column).",
        "",
    ]
    for name, row in res["models"].items():
        lines += [
            f"### small:{name}: baseline top-1 {row['baseline_top1']:.4f}, dense fine-tuned "
            f"{row['dense_finetune_top1']:.4f}, {row['dense_macs']:,} MACs/sample",
            "",
            "| r | FTWT top-1 | FTWT FLOPs red. mean (p10-p90) | incl. pred. | L1 top-1 | L1 FLOPs red. | FTWT - L1 top-1 |",
            "|---|---|---|---|---|---|---|",
        ]
        for f, b in zip(row["ftwt"], row["l1"]):
            lines.append(
                f"| {f['mass']} | {f['top1_after']:.4f} | {f['flops_reduction_mean']:.1%} "
                f"({f['flops_reduction_p10']:.1%}-{f['flops_reduction_p90']:.1%}) | "
                f"{f['flops_reduction_mean_with_predictors']:.1%} | {b['top1']:.4f} | "
                f"{b['flops_reduction_mean']:.1%} | {100 * (f['top1_after'] - b['top1']):+.2f} pt |"
            )
        if "latency" in row:
            lt = row["latency"]
            lines += [
                "",
                f"ONNX Runtime, batch 1, {lt['threads']} thread(s), r={lt['mass']}: dense {lt['dense_ms']:.3f} ms, "
                f"gated {lt['gated_ms']:.3f} ms (gated/dense x{lt['gated_over_dense']:.2f}, drift "
                f"{lt['drift_status']}{', noisy' if lt['noisy'] else ''}); ORT parity max rel err "
                f"{lt['parity']['max_rel_err']:.1e}, top-1 agreement {lt['parity']['top1_agreement']:.4f}. "
                "The runtime computes every channel: the masks are not exploited.",
            ]
        lines.append("")
    lines.append(
        f"Total {res.get('seconds', 0) / 60:.1f} min; load average before/after {res['load_before'][0]:.1f}/"
        f"{res.get('load_after', [0])[0]:.1f}."
    )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
