"""FTWT benchmark: per-input FLOPs reduction vs top-1 on Fashion-MNIST, against static L1 and dense.

Issue #22's shape: the paper's three architecture kinds as ``small:`` models with the released code's
layer plans (``vgg16``, ``resnet56``, ``mobilenetv1-cifar``), each at a channel multiplier
(``@WIDTH``; ``@1`` is the paper's width, where per-input filter sparsity exists), and per model:

1. pre-train the dense baseline (cached by its own settings, so every later step reuses it);
2. the dense baseline fine-tuned for the same E epochs (what the extra epochs alone give);
3. for each mode and mass r: FTWT from the baseline for E epochs -> top-1, per-image FLOPs
   (mean, p10/p50/p90, histogram), per-layer mask entropy, FLOPs reduction by class, the released
   code's own FLOPs accounting next to ours;
4. static L1-norm filter pruning at FTWT's mean FLOPs reduction (uniform keep ratio found by
   bisection on the same accounting), fine-tuned for the same E epochs;
5. on the headline row (``--headline-mass``, the first mode): more seeds of FTWT, and batch-1 CPU
   latency of the gather-executed gated model against the dense model in one interleaved run
   (compress.bench.timing, drift verdict).

    python benchmarks/bench_ftwt.py --quick                 # minutes: development smoke run
    python benchmarks/bench_ftwt.py --models mobilenetv1-cifar@0.5 --masses 1.0 --modes decoupled

The whole table (three models at width 1, four r, both modes, 200-epoch recipes) is GPU work; on
the 2-core CPU run here only subsets fit. The JSON records exactly what ran (``settings``).
Writes ``bench_ftwt.json``, ``bench_ftwt.md`` and ``<model>_hist.png`` to ``--out``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FULL = dict(
    train_limit=20000, eval_limit=3000, pretrain_epochs=8, epochs=3, masses="0.9,0.95,1.0", modes="decoupled,joint"
)
QUICK = dict(train_limit=512, eval_limit=300, pretrain_epochs=2, epochs=2, masses="0.9", modes="decoupled")
FTWT_KEYS = (
    "top1_before",
    "top1_after",
    "flops_reduction_mean",
    "flops_reduction_p10",
    "flops_reduction_p50",
    "flops_reduction_p90",
    "flops_reduction_mean_with_predictors",
    "flops_reduction_mean_released",
    "predictor_overhead_frac",
    "flops_reduction_before_mean",
    "input_dependence",
)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny settings for development")
    ap.add_argument("--out", default="runs/bench_ftwt")
    ap.add_argument("--models", default="mobilenetv1-cifar@0.5", help="small:NAME[@WIDTH] models, comma-separated")
    ap.add_argument("--masses", default=None, help="comma-separated r values")
    ap.add_argument("--modes", default=None, help="decoupled,joint")
    ap.add_argument("--epochs", type=int, default=None, help="FTWT / L1 / dense fine-tune epochs")
    ap.add_argument("--pretrain-epochs", type=int, default=None)
    ap.add_argument("--train-limit", type=int, default=None)
    ap.add_argument("--eval-limit", type=int, default=None)
    ap.add_argument("--lr", type=float, default=0.01, help="fine-tune lr (FTWT backbone, L1, dense); released: 1e-2")
    ap.add_argument("--schedule", default="cosine", choices=["step", "cosine"], help="fine-tune schedule")
    ap.add_argument("--pretrain-lr", type=float, default=0.05)
    ap.add_argument(
        "--pretrain-stop-after",
        type=int,
        default=None,
        help="compute cap: stop the pretraining schedule after N epochs",
    )
    ap.add_argument(
        "--finetune-limit", type=int, default=None, help="FTWT / L1 / dense fine-tune on the first N images"
    )
    ap.add_argument("--headline-mass", type=float, default=0.9, help="r of the headline row (seeds, latency)")
    ap.add_argument("--seeds", default="0", help="FTWT seeds on the headline row (the full table uses the first)")
    ap.add_argument("--no-l1", action="store_true", help="skip the static L1 baseline")
    ap.add_argument("--no-dense-ft", action="store_true", help="skip the dense fine-tune baseline")
    ap.add_argument("--no-latency", action="store_true", help="skip the gather-vs-dense latency")
    ap.add_argument("--pretrain-only", action="store_true", help="only pre-train (and cache) the baselines")
    ap.add_argument(
        "--bars",
        action="store_true",
        help="instead: the `bars` check, FTWT --mass 0.95 on the default supernet's max subnet (writes bench_ftwt_bars.json)",
    )
    ap.add_argument(
        "--crossover",
        action="store_true",
        help="instead: dense vs gather on one 3x3 conv over widths, map sizes and kept shares (bench_ftwt_crossover.json)",
    )
    ap.add_argument("--render", default=None, help="only re-render bench_ftwt.md from this bench_ftwt.json")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0, help="data split and pretraining seed")
    return ap.parse_args(argv)


def settings_of(a: argparse.Namespace) -> dict[str, Any]:
    cfg: dict[str, Any] = dict(QUICK if a.quick else FULL)
    for k in ("masses", "modes", "epochs", "pretrain_epochs", "train_limit", "eval_limit"):
        if getattr(a, k) is not None:
            cfg[k] = getattr(a, k)
    return {
        **cfg,
        "models": a.models,
        "lr": a.lr,
        "schedule": a.schedule,
        "pretrain_lr": a.pretrain_lr,
        "pretrain_stop_after": a.pretrain_stop_after,
        "finetune_limit": a.finetune_limit,
        "headline_mass": a.headline_mass,
        "seeds": a.seeds,
        "seed": a.seed,
        "threads": a.threads,
        "quick": a.quick,
    }


def pretrain(name: str, ds: Any, st: dict[str, Any], out: Path) -> Any:
    """The dense baseline of ``small:name``, trained once per pretraining settings and cached."""
    from compress.core.runs import sha256_json
    from compress.models import load_model
    from compress.prune.ftwt.train import FtwtTrainConfig, train

    key = {k: st[k] for k in ("pretrain_epochs", "pretrain_lr", "train_limit", "seed")} | {"model": name}
    base = load_model(f"small:{name}", num_classes=10, in_chans=1, image_size=28)
    cfg = FtwtTrainConfig(epochs=st["pretrain_epochs"], lr=st["pretrain_lr"], seed=st["seed"], schedule="cosine")
    train(
        base.module,
        ds.train,
        cfg=cfg,
        checkpoint=out / "pretrain" / f"{name}-{sha256_json(key)[:10]}.pt",
        progress=False,
        desc=f"{name} pretrain",
        log=log,
        stop_after=st["pretrain_stop_after"],
    )
    return base


def evaluate(model: Any, split: Any) -> float:
    """Top-1 (fraction) with the one implementation, compress.nn.evaluate.top1."""
    from compress.nn.evaluate import top1

    return top1(model, split.images, split.labels, batch_size=512)


def fine_tune_cfg(st: dict[str, Any], seed: int) -> Any:
    from compress.prune.ftwt.train import FtwtTrainConfig

    return FtwtTrainConfig(epochs=st["epochs"], lr=st["lr"], seed=seed, schedule=st["schedule"])


def run_ftwt(base: Any, ds: Any, st: dict[str, Any], work: Path, *, r: float, mode: str, seed: int) -> dict[str, Any]:
    from compress.models import LoadedModel
    from compress.prune.ftwt.api import prune_ftwt

    lm = LoadedModel(
        module=copy.deepcopy(base.module), input_shape=base.input_shape, num_classes=10, source=base.source
    )
    res = prune_ftwt(
        model=lm,
        data=ds,
        epochs=st["epochs"],
        mass=r,
        mode=mode,
        seed=seed,
        out=work / f"{base.source['name']}_ftwt_{mode}_r{r}_s{seed}",
        progress=False,
        lr=st["lr"],
        schedule=st["schedule"],
        eval_limit=st["eval_limit"],
        export=False,
    )
    return {"mass": r, "mode": mode, "seed": seed, **{k: res[k] for k in FTWT_KEYS}, "model_dir": res["model_dir"]}


def run_l1(base: Any, ds: Any, test: Any, st: dict[str, Any], work: Path, *, target: float, tag: str) -> dict[str, Any]:
    from compress.prune.ftwt.accounting import measure_flops
    from compress.prune.ftwt.static_l1 import match_flops
    from compress.prune.ftwt.train import train
    from compress.prune.ftwt.wrap import apply_sites, find_sites

    m = copy.deepcopy(base.module)
    apply_sites(m, find_sites(m), kind="static")
    best = match_flops(m, test.images[:200], target)
    train(
        m,
        ds.train,
        cfg=fine_tune_cfg(st, st["seed"]),
        progress=False,
        checkpoint=work / f"{base.source['name']}_l1_{tag}.pt",
        desc=f"{base.source['name']} L1 fine-tune",
        log=log,
    )
    acc = measure_flops(m, test.images)
    return {
        "target_reduction": target,
        "keep_ratio": best["keep"],
        "top1": evaluate(m, test),
        "flops_reduction_mean": acc["flops_reduction_mean"],
    }


def gather_latency(row: dict[str, Any], base: Any, test: Any, st: dict[str, Any]) -> dict[str, Any]:
    """Batch-1 CPU latency: gather-executed gated model vs dense, one interleaved run."""
    from compress.models import load_model
    from compress.prune.ftwt.execute import gather_vs_dense_latency

    gated = load_model(row["model_dir"])
    return gather_vs_dense_latency(
        gated.module, base.module, test.images[:16], threads=st["threads"], seed=st["seed"], iterations=20, rounds=4
    )


def bench_model(
    name: str, data: tuple[Any, Any], test: Any, st: dict[str, Any], a: argparse.Namespace, work: Path, save: Any
) -> dict[str, Any]:
    """All rows of one model; ``save(row)`` is called after every step, so a stopped run keeps its rows."""
    from compress.prune.ftwt.accounting import measure_flops
    from compress.prune.ftwt.train import train

    t0 = time.time()
    ds, ft_ds = data  # pretraining data, fine-tuning data (a prefix of it with --finetune-limit)
    base = pretrain(name, ds, st, Path(a.out))
    ds = ft_ds
    row: dict[str, Any] = {"baseline_top1": evaluate(base.module, test), "ftwt": [], "l1": [], "seeds": []}
    row["dense_macs"] = measure_flops(base.module, test.images[:8])["dense_macs"]
    log(f"{name}: baseline top1 {row['baseline_top1']:.4f}, {row['dense_macs']:,} MACs/sample")
    seeds = [int(s) for s in str(st["seeds"]).split(",")]
    modes = str(st["modes"]).split(",")
    for mode in modes:
        for r in (float(m) for m in str(st["masses"]).split(",")):
            f = run_ftwt(base, ds, st, work, r=r, mode=mode, seed=seeds[0])
            row["ftwt"].append(f)
            dep = f["input_dependence"]
            log(
                f"{name} FTWT {mode} r={r}: top1 {f['top1_after']:.4f}, FLOPs -{f['flops_reduction_mean']:.1%} "
                f"(p10 {f['flops_reduction_p10']:.1%}, p90 {f['flops_reduction_p90']:.1%}; released accounting "
                f"-{f['flops_reduction_mean_released']:.1%}); mean mask entropy {dep['mask_entropy_mean']:.3f} bit"
            )
            save(row | {"seconds": time.time() - t0})
            if not a.no_l1:
                target = max(0.0, f["flops_reduction_mean"])
                b = run_l1(base, ds, test, st, work, target=target, tag=f"{mode}_r{r}")
                row["l1"].append({"mass": r, "mode": mode, **b})
                log(f"{name} L1 at matched FLOPs (keep {b['keep_ratio']:.3f}): top1 {b['top1']:.4f}")
                save(row | {"seconds": time.time() - t0})
    head = next((f for f in row["ftwt"] if f["mode"] == modes[0] and abs(f["mass"] - a.headline_mass) < 1e-9), None)
    if head is not None:
        row["headline"] = {"mass": head["mass"], "mode": head["mode"]}
        if not a.no_latency:
            row["latency"] = gather_latency(head, base, test, st)
            lt = row["latency"]
            log(
                f"{name} batch-1 CPU: dense {lt['dense_ms']:.3f} ms, gather {lt['gather_ms']:.3f} ms "
                f"(x{lt['gather_over_dense']:.2f}); drift {lt['drift']['status']}"
            )
            save(row | {"seconds": time.time() - t0})
        for s in seeds[1:]:
            g = run_ftwt(base, ds, st, work, r=head["mass"], mode=head["mode"], seed=s)
            row["seeds"].append(g)
            log(f"{name} FTWT seed {s}: top1 {g['top1_after']:.4f}, FLOPs -{g['flops_reduction_mean']:.1%}")
            save(row | {"seconds": time.time() - t0})
    if not a.no_dense_ft:
        dense_ft = copy.deepcopy(base.module)
        ck = work / f"{name}_dense_ft.pt"
        train(dense_ft, ds.train, cfg=fine_tune_cfg(st, st["seed"]), progress=False, checkpoint=ck, log=log)
        row["dense_finetune_top1"] = evaluate(dense_ft, test)
    row["seconds"] = time.time() - t0
    return row


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    st = settings_of(a)
    if a.render:
        import json

        from compress.core.runs import atomic_write_text

        src = Path(a.render)
        atomic_write_text(src.with_suffix(".md"), render(json.loads(src.read_text())))
        return 0

    import torch

    from compress.core.runs import atomic_write_json, atomic_write_text, package_versions, sha256_json
    from compress.data import load_dataset

    torch.set_num_threads(a.threads)
    torch.set_flush_denormal(True)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    ds = load_dataset("fashion-mnist", seed=a.seed, train_limit=st["train_limit"])
    test = ds.test.subset(st["eval_limit"])
    log(f"fashion-mnist: train {len(ds.train)}, test {len(test)}; settings {st}")
    ft_ds = dataclasses.replace(ds, train=ds.train.subset(a.finetune_limit)) if a.finetune_limit else ds
    if a.bars:
        return bars(a, st, out)
    if a.crossover:
        from compress.core.runs import atomic_write_json as write
        from compress.prune.ftwt.execute import crossover

        rows = crossover(reps=40, seed=a.seed)
        write(out / "bench_ftwt_crossover.json", {"threads": a.threads, "load": os.getloadavg(), "rows": rows})
        for r in rows:
            log(
                f"C={r['channels']} HxW={r['hw']} kept {r['kept']}: dense {r['dense_us']:.0f} us, gather {r['gather_us']:.0f} us"
            )
        return 0
    if a.pretrain_only:
        for name in a.models.split(","):
            base = pretrain(name, ds, st, out)

            log(f"{name}: pretrained, test top-1 {evaluate(base.module, test):.4f}")
        return 0
    work = out / f"work-{sha256_json(st)[:10]}"  # checkpoints: a rerun with the same settings resumes
    results: dict[str, Any] = {
        "settings": st,
        "work_dir": str(work),
        "versions": package_versions(),
        "load_before": os.getloadavg(),
        "models": {},
    }
    for name in a.models.split(","):

        def save(row: dict[str, Any], name: str = name) -> None:
            results["models"][name] = row
            atomic_write_json(out / "bench_ftwt.json", results)
            atomic_write_text(out / "bench_ftwt.md", render(results))

        save(bench_model(name, (ds, ft_ds), test, st, a, work, save))
        plot_hist(results["models"][name], out / f"{name}_hist.png", name)
    results["seconds"] = time.time() - t_start
    results["load_after"] = os.getloadavg()
    atomic_write_json(out / "bench_ftwt.json", results)
    md = render(results)
    atomic_write_text(out / "bench_ftwt.md", md)
    print(md)
    return 0


def bars(a: argparse.Namespace, st: dict[str, Any], out: Path) -> int:
    """What ``compress prune --method ftwt --mass 0.95 --model <default supernet> --data fashion-mnist``
    runs (same function, same defaults), with ``--train-limit`` / ``--epochs`` / ``--eval-limit`` as
    given (the CLI trains on all 60,000 images)."""
    from compress.core.runs import atomic_write_json
    from compress.prune.ftwt.api import prune_ftwt

    sn = ROOT / "compress" / "supernet" / "default" / "supernet.safetensors"
    res = prune_ftwt(
        model=str(sn),
        data="fashion-mnist",
        epochs=st["epochs"],
        mass=0.95,
        seed=a.seed,
        out=out / "bars_run",
        progress=False,
        train_limit=st["train_limit"],
        eval_limit=st["eval_limit"],
        threads=a.threads,
    )
    keep = [k for k in res if k not in ("history", "layers", "input_dependence", "options")]
    rec = {
        "settings": st | {"model": "default supernet (max subnet)", "mass": 0.95},
        **{k: res[k] for k in keep},
        "mask_entropy_mean": res["input_dependence"].get("mask_entropy_mean"),
        "by_class": res["input_dependence"].get("by_class"),
        "top1_drop_points": 100 * (res["top1_before"] - res["top1_after"]),
        "history": res["history"],
    }
    atomic_write_json(out / "bench_ftwt_bars.json", rec)
    log(
        f"bars: top-1 {res['top1_before']:.4f} -> {res['top1_after']:.4f} "
        f"({rec['top1_drop_points']:+.2f} pt drop), FLOPs -{res['flops_reduction_mean']:.1%} "
        f"(p10 {res['flops_reduction_p10']:.1%}, p90 {res['flops_reduction_p90']:.1%})"
    )
    return 0


def plot_hist(row: dict[str, Any], path: Path, name: str) -> None:
    """Histogram of the per-image FLOPs reduction of every FTWT row of one model (one panel)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for f in row["ftwt"]:
        h = f["input_dependence"]["histogram"]
        ax.stairs(h["counts"], [100 * e for e in h["edges"]], label=f"{f['mode']} r={f['mass']}")
    ax.set_xlabel("per-image FLOPs reduction (%)")
    ax.set_ylabel("test images")
    ax.set_title(f"FTWT small:{name}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def per_layer_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Per-layer breakdown of the gather (one image): where it wins and where it costs more."""
    out = [
        "| layer | C_in -> C_out (groups) | input H*W | kept out | live in | dense us | gather us |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['name']} | {r['cin']} -> {r['cout']} ({r['groups']}) | {r['in_hw']} | {r['kept_out_frac']:.2f} "
            f"| {r['live_in_frac']:.2f} | {r['dense_us']:.0f} | {r['gather_us']:.0f} |"
        )
    return out


def render(res: dict[str, Any]) -> str:
    st = res["settings"]
    lines = [
        f"## FTWT vs static L1 on Fashion-MNIST ({'quick' if st['quick'] else 'partial'} run)",
        "",
        f"train {st['train_limit']} images, test {st['eval_limit']}, pretrain "
        f"{st.get('pretrain_stop_after') or st['pretrain_epochs']} epochs of a {st['pretrain_epochs']}-epoch cosine "
        f"schedule (lr {st['pretrain_lr']}), then {st['epochs']} epoch(s) per method on "
        f"{st.get('finetune_limit') or st['train_limit']} images (lr {st['lr']}, {st['schedule']}), "
        f"seeds {st['seeds']} on the headline row, {st['threads']} thread(s). FLOPs = conv+linear MACs per image "
        "(exact channel accounting; 'released' = the released code's accounting).",
        "",
    ]
    for name, row in res["models"].items():
        lines += [
            f"### small:{name}: baseline top-1 {row['baseline_top1']:.4f}"
            + (f", dense fine-tuned {row['dense_finetune_top1']:.4f}" if "dense_finetune_top1" in row else "")
            + f", {row['dense_macs']:,} MACs/image",
            "",
            "| mode | r | FTWT top-1 | FLOPs red. mean (p10 / p50 / p90) | released acct. | incl. pred. "
            "| mask entropy (bit) | L1 top-1 | L1 FLOPs red. | FTWT - L1 |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        l1s = {(b["mode"], b["mass"]): b for b in row["l1"]}
        for f in row["ftwt"]:
            b = l1s.get((f["mode"], f["mass"]))
            l1 = (
                f"{b['top1']:.4f} | {b['flops_reduction_mean']:.1%} | {100 * (f['top1_after'] - b['top1']):+.2f} pt"
                if b
                else "- | - | -"
            )
            lines.append(
                f"| {f['mode']} | {f['mass']} | {f['top1_after']:.4f} | {f['flops_reduction_mean']:.1%} "
                f"({f['flops_reduction_p10']:.1%} / {f['flops_reduction_p50']:.1%} / {f['flops_reduction_p90']:.1%}) "
                f"| {f['flops_reduction_mean_released']:.1%} | {f['flops_reduction_mean_with_predictors']:.1%} "
                f"| {f['input_dependence']['mask_entropy_mean']:.3f} | {l1} |"
            )
        if row["seeds"]:
            rows = [
                f for f in row["ftwt"] if (f["mode"], f["mass"]) == (row["headline"]["mode"], row["headline"]["mass"])
            ]
            allr = rows[:1] + row["seeds"]
            lines += [
                "",
                "Headline row over seeds "
                + ", ".join(
                    f"{g['seed']}: top-1 {g['top1_after']:.4f}, FLOPs -{g['flops_reduction_mean']:.1%}" for g in allr
                ),
            ]
        if row["ftwt"]:
            by = row["ftwt"][0]["input_dependence"]["by_class"]
            lines += [
                "",
                "FLOPs reduction by class (first row, mean): "
                + ", ".join(f"{c.get('name', c['label'])} {c['mean']:.1%}" for c in by),
            ]
        if "latency" in row:
            lt = row["latency"]
            lines += [
                "",
                f"Batch-1 CPU (torch eager, {lt['threads']} thread), mean over {lt['images']} test images: dense "
                f"{lt['dense_ms']:.3f} ms, gather-executed {lt['gather_ms']:.3f} ms (x{lt['gather_over_dense']:.2f}), "
                f"masked-dense {lt['masked_ms']:.3f} ms; drift {lt['drift']['status']}"
                + (", noisy" if lt["noisy"] else "")
                + ".",
            ]
            if lt.get("per_layer"):
                lines += ["", *per_layer_lines(lt["per_layer"])]
        lines.append("")
    lines.append(
        f"Total {res.get('seconds', 0) / 60:.1f} min; load average before/after {res['load_before'][0]:.1f}/"
        f"{res.get('load_after', [0])[0]:.1f}."
    )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
