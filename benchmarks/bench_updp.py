"""UPDP benchmark on Fashion-MNIST: merged depth pruning vs dropping blocks vs λ = 1 from the start.

For a ConvNeXt-style subnet of the toolkit's supernet family (``convnext-small-input``) and a timm
MobileNetV2, each trained on Fashion-MNIST first, and for K = 1..N pruned blocks:

* **updp**: blocks chosen by the proxy + measured block latencies (ONNX Runtime, this CPU), progressive
  λ ramp with KD from the unpruned model, then merged;
* **drop** (baseline a): the same blocks replaced by their identity shortcut, fine-tuned with the same
  budget and loss;
* **lambda1** (baseline b): the same blocks at λ = 1 from the first step (no progressive schedule),
  same budget, merged.

Whole models are timed side by side in one drift-controlled campaign per runtime (ONNX Runtime and
OpenVINO f32, CPU) with the shared runners and timing engine; top-1 is on the official test split.
A third part prunes EfficientNet-Lite0 (real ImageNet weights): top-1 agreement with the unpruned model
on the real photos scikit-learn/scikit-image ship (merged at λ = 1, no training: no ImageNet here),
then fine-tuning on Fashion-MNIST.

    .venv/bin/python benchmarks/bench_updp.py --quick      # minutes; development smoke run
    .venv/bin/python benchmarks/bench_updp.py              # full run (quiet machine)

Writes ``<out>/bench_updp.json`` and ``<out>/bench_updp.md``.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compress.core.runs import atomic_write_json, atomic_write_text  # noqa: E402
from compress.data import load_dataset  # noqa: E402
from compress.prune.updp.api import block_decisions  # noqa: E402
from compress.prune.updp.proxy import proxy_scorer  # noqa: E402
from compress.prune.updp.candidates import chain_of, find_candidates, set_module  # noqa: E402
from compress.prune.updp.latency import BlockItem, MeasuredBlockLatency  # noqa: E402
from compress.prune.updp.measure import count_macs, logits, recalibrate_bn, top1  # noqa: E402
from compress.prune.updp.progressive import TrainConfig, train_progressive  # noqa: E402
from compress.prune.updp.select import SearchConfig, select_blocks  # noqa: E402
from compress.prune.updp.surgery import insert_pruned, merged_copy  # noqa: E402
from compress.prune.updp.linearize import NormSwapStep  # noqa: E402


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def train_base(model: nn.Module, ds, *, epochs: int, lr: float, seed: int) -> None:
    """Plain supervised training (λ schedule irrelevant: no pruned blocks yet)."""
    cfg = TrainConfig(epochs=epochs, batch_size=128, lr=lr, kd_weight=0.0, seed=seed, augment=True)
    train_progressive(model, None, ds.train, config=cfg)


def drop_blocks(model: nn.Module, names) -> nn.Module:
    m = copy.deepcopy(model)
    for n in names:
        set_module(m, n, nn.Identity())
    return m


def time_models(models: dict[str, nn.Module], shape, runtime: str, iterations: int) -> tuple[dict, dict]:
    lat = MeasuredBlockLatency(runtime=runtime, iterations=iterations, threads=2)
    ms = lat.latencies([BlockItem(k, m.eval(), tuple(shape), "model") for k, m in models.items()])
    return ms, lat.drift


def run_model(name: str, base: nn.Module, ds, shape, *, ks: list[int], ft_epochs: int, seed: int,
              iterations: int, score_images: int) -> dict:
    out: dict = {"model": name, "input_shape": list(shape), "rows": []}
    base.eval()
    out["top1_base"] = top1(base, ds.test.images, ds.test.labels)
    cands, skipped = find_candidates(base)
    # baseline (a) needs an identity to fall back to: only residual blocks are in the pool
    cands = [c for c in cands if chain_of(_pruned(c)).residual]
    log(f"{name}: base top-1 {out['top1_base']:.2f}; {len(cands)} residual candidates; timing blocks (ORT)")
    lat = MeasuredBlockLatency(runtime="onnxruntime", iterations=iterations, threads=2)
    base_ms, decisions = block_decisions(base, cands, shape, lat)
    out["block_decisions"] = [d.to_json() for d in decisions]
    out["block_timing_drift"] = lat.drift
    eligible = sum(d.eligible for d in decisions)
    teacher = copy.deepcopy(base).eval()
    val = ds.val.images[:score_images]
    score = proxy_scorer(base, logits(teacher, val), ds.calib.images, val)
    for k in [k for k in ks if k <= eligible]:
        sel = select_blocks(decisions, base_ms=base_ms, score=score, blocks=k, config=SearchConfig(seed=seed))
        forms = {n: next(d.form for d in decisions if d.name == n) for n in sel.mask}
        log(f"{name} K={k}: {sel.mask}")
        row: dict = {"k": k, "blocks": list(sel.mask), "forms": forms, "predicted_ms": sel.predicted_ms,
                     "predicted_base_ms": base_ms}
        models: dict[str, nn.Module] = {"base": base}
        for variant, schedule in (("updp", "linear"), ("lambda1", "constant")):
            st = copy.deepcopy(base)
            insert_pruned(st, list(sel.mask), lam=0.0)
            swaps = [m for m in st.modules() if isinstance(m, NormSwapStep)]
            if swaps:
                recalibrate_bn(st, ds.calib.images, only=swaps)
            train_progressive(st, teacher, ds.train, config=TrainConfig(epochs=ft_epochs, batch_size=128, lr=5e-4,
                                                                         schedule=schedule, seed=seed, augment=True))
            merged = merged_copy(st, forms)
            row[f"top1_{variant}"] = top1(merged, ds.test.images, ds.test.labels)
            models[variant] = merged
        dropped = drop_blocks(base, sel.mask)
        train_progressive(dropped, teacher, ds.train, config=TrainConfig(epochs=ft_epochs, batch_size=128, lr=5e-4,
                                                                          seed=seed, augment=True))
        row["top1_drop"] = top1(dropped, ds.test.images, ds.test.labels)
        models["drop"] = dropped
        row["macs"] = {k2: count_macs(m, shape) for k2, m in models.items()}
        for rt in ("onnxruntime", "openvino"):
            ms, drift = time_models({k2: models[k2] for k2 in ("base", "updp", "drop")}, shape, rt, iterations)
            row[rt] = {"ms": ms, "speedup_updp": ms["base"] / ms["updp"], "speedup_drop": ms["base"] / ms["drop"],
                       "drift": drift.get("status")}
        log(f"{name} K={k}: top-1 base {out['top1_base']:.2f} updp {row['top1_updp']:.2f} drop {row['top1_drop']:.2f} "
            f"λ1 {row['top1_lambda1']:.2f}; ORT x{row['onnxruntime']['speedup_updp']:.2f} OV x{row['openvino']['speedup_updp']:.2f}")
        out["rows"].append(row)
    return out


def _pruned(c):
    from compress.prune.updp.candidates import to_pruned

    return to_pruned(copy.deepcopy(c.module), c.name)


def lite0_part(*, quick: bool, seed: int, iterations: int, train_limit: int | None = None, epochs: int | None = None) -> dict:
    from compress.models import load_model
    from compress.prune.updp.forms import forms_for
    from compress.prune.updp.surgery import pruned_blocks

    sys.path.insert(0, str(ROOT / "tests"))
    from test_updp_models import photos

    lm = load_model("efficientnet-lite0")
    model = lm.module.eval()
    x = photos(224)
    cands, _ = find_candidates(model)
    res = [c.name for c in cands if chain_of(_pruned(c)).residual]
    out: dict = {"candidates": [c.name for c in cands], "residual": res, "photos": int(x.shape[0]), "rows": []}
    with torch.no_grad():
        ref = model(x).argmax(1)
    for k in ([1, 2] if quick else [1, 2, 3, 5, 9]):
        names = res[-k:]     # deepest identity blocks first [R]: no ImageNet here to score masks
        m = copy.deepcopy(model)
        insert_pruned(m, names, lam=1.0)
        merged = merged_copy(m, {n: forms_for(chain_of(p))[0] for n, p in pruned_blocks(m).items()})
        with torch.no_grad():
            agree = float((merged(x).argmax(1) == ref).float().mean()) * 100
        out["rows"].append({"k": k, "blocks": names, "photo_top1_agreement": agree})
        log(f"lite0 K={k}: agreement on {x.shape[0]} photos {agree:.0f}% (merged at λ=1, no training)")
    # fine-tune on Fashion-MNIST (3-channel, 64 px), then prune 2 blocks with the progressive schedule
    ds = load_dataset("fashion-mnist", image_size=64, channels=3, seed=seed,
                      train_limit=train_limit or (2000 if quick else None))
    ep = epochs or (1 if quick else 3)
    out["fmnist_train_images"], out["fmnist_epochs"] = len(ds.train.labels), ep
    lm64 = load_model("efficientnet-lite0", num_classes=10, image_size=64)
    base = lm64.module
    train_base(base, ds, epochs=ep, lr=1e-3, seed=seed)
    out["fmnist_top1_base"] = top1(base, ds.test.images, ds.test.labels)
    names = [c.name for c in find_candidates(base)[0]][-2:]
    st = copy.deepcopy(base)
    insert_pruned(st, names, lam=0.0)
    train_progressive(st, copy.deepcopy(base).eval(), ds.train,
                      config=TrainConfig(epochs=ep, batch_size=128, lr=5e-4, seed=seed))
    merged = merged_copy(st, {n: "dense" for n in names})
    out["fmnist_pruned_blocks"] = names
    out["fmnist_top1_pruned"] = top1(merged, ds.test.images, ds.test.labels)
    log(f"lite0 fashion-mnist: base {out['fmnist_top1_base']:.2f}, 2 blocks merged {out['fmnist_top1_pruned']:.2f}")
    return out


def markdown(res: dict) -> str:
    lines = [f"# UPDP benchmark ({'quick' if res['quick'] else 'full'}), {res['date']}", "",
             f"Fashion-MNIST 32 px, {res.get('train_images')} training images, base trained {res.get('pretrain_epochs')} "
             f"epochs, each variant fine-tuned {res.get('ft_epochs')} epochs (same loss and budget), torch threads "
             f"{res.get('threads')}, seed {res['seed']}; top-1 on the test split.", ""]
    for m in res["models"]:
        lines += [f"## {m['model']} on Fashion-MNIST, input {m['input_shape']}, base top-1 {m['top1_base']:.2f}", "",
                  "| K | blocks | top-1 updp | top-1 drop | top-1 λ=1 | ORT ms base/updp/drop | ORT speed-up updp/drop "
                  "| OV ms base/updp/drop | OV speed-up updp/drop |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in m["rows"]:
            o, v = r["onnxruntime"], r["openvino"]
            lines.append(f"| {r['k']} | {', '.join(r['blocks'])} | {r['top1_updp']:.2f} | {r['top1_drop']:.2f} | "
                         f"{r['top1_lambda1']:.2f} | {o['ms']['base']:.3f}/{o['ms']['updp']:.3f}/{o['ms']['drop']:.3f} | "
                         f"{o['speedup_updp']:.2f}x/{o['speedup_drop']:.2f}x ({o['drift']}) | "
                         f"{v['ms']['base']:.3f}/{v['ms']['updp']:.3f}/{v['ms']['drop']:.3f} | "
                         f"{v['speedup_updp']:.2f}x/{v['speedup_drop']:.2f}x ({v['drift']}) |")
        lines += ["", "Block decisions (ONNX Runtime, this CPU):", ""]
        lines += [f"- {d['name']} ({d['kind']}): {'eligible' if d['eligible'] else 'keep'}: {d['reason']}"
                  for d in m["block_decisions"]]
        lines.append("")
    if res.get("lite0"):
        l0 = res["lite0"]
        lines += ["## EfficientNet-Lite0 (ImageNet weights)", ""]
        lines += [f"- K={r['k']} ({', '.join(r['blocks'])}): top-1 agreement with the unpruned model on "
                  f"{l0['photos']} photos: {r['photo_top1_agreement']:.0f}% (merged at λ=1, no training)" for r in l0["rows"]]
        lines.append(f"- Fashion-MNIST 64 px ({l0.get('fmnist_train_images')} training images, {l0.get('fmnist_epochs')} "
                     f"epochs each): base {l0['fmnist_top1_base']:.2f}, with {', '.join(l0['fmnist_pruned_blocks'])} "
                     f"merged after progressive training {l0['fmnist_top1_pruned']:.2f}")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small budgets (development smoke run)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "updp")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-lite0", action="store_true")
    ap.add_argument("--train-limit", type=int, default=None, help="training images (default: all 60k; quick 3k)")
    ap.add_argument("--pretrain-epochs", type=int, default=None, help="base-model training (default 10; quick 1)")
    ap.add_argument("--ft-epochs", type=int, default=None, help="fine-tune epochs per variant (default 5; quick 1)")
    ap.add_argument("--ks", default=None, help="comma list of K (default 1..8; quick 1,2)")
    ap.add_argument("--models", default="convnext,mobilenetv2", help="comma list: convnext, mobilenetv2, convnext_atto")
    ap.add_argument("--threads", type=int, default=None, help="torch threads for training (default: torch's)")
    ap.add_argument("--lite0-train-limit", type=int, default=None, help="Lite0 Fashion-MNIST images (default all; quick 2k)")
    ap.add_argument("--lite0-epochs", type=int, default=None, help="Lite0 fine-tune epochs (default 3; quick 1)")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    torch.set_flush_denormal(True)
    q = a.quick
    limit = a.train_limit or (3000 if q else None)
    ds = load_dataset("fashion-mnist", image_size=32, channels=1, seed=a.seed, train_limit=limit)
    if q:
        ds.test = ds.test.subset(2000)
    iters = 30 if q else 100
    ks = [int(k) for k in a.ks.split(",")] if a.ks else ([1, 2] if q else list(range(1, 9)))
    pre = a.pretrain_epochs or (1 if q else 10)
    ft = a.ft_epochs or (1 if q else 5)
    models = a.models.split(",")
    results: dict = {"quick": q, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "seed": a.seed,
                     "train_images": len(ds.train.labels), "pretrain_epochs": pre, "ft_epochs": ft, "ks": ks,
                     "threads": torch.get_num_threads(), "models": []}

    from compress.supernet import build_supernet

    net = build_supernet("convnext-small-input", seed=a.seed)
    cfg = net.space.config(resolution=32, width=1.0, depths=[2, 3, 3], kernels=[[7, 7], [7, 7, 7], [7, 7, 7]],
                           expands=[[4, 4], [4, 4, 4], [4, 4, 4]])
    net.set_active(cfg)
    convnext = net.export_active()
    if "convnext" in models:
        log(f"training supernet subnet {cfg} on Fashion-MNIST")
        train_base(convnext, ds, epochs=pre, lr=2e-3, seed=a.seed)
        results["models"].append(run_model(f"convnext-small-input {cfg}", convnext, ds, (1, 32, 32), ks=ks,
                                           ft_epochs=ft, seed=a.seed, iterations=iters, score_images=500 if q else 2000))
    import timm

    # timm models: MobileNetV2, and convnext_atto, whose blocks all keep an identity shortcut
    # (downsampling is a separate layer), so unlike MobileNetV2 it can reach 1.5x here (bench_updp_ceiling.py)
    for key, timm_name in (("mobilenetv2", "mobilenetv2_100"), ("convnext_atto", "convnext_atto")):
        if key not in models:
            continue
        torch.manual_seed(a.seed)
        tm = timm.create_model(timm_name, num_classes=10, in_chans=1)
        log(f"training timm {timm_name} on Fashion-MNIST")
        train_base(tm, ds, epochs=pre, lr=2e-3, seed=a.seed)
        results["models"].append(run_model(f"timm:{timm_name}", tm, ds, (1, 32, 32), ks=ks, ft_epochs=ft,
                                           seed=a.seed, iterations=iters, score_images=500 if q else 2000))
    if not a.skip_lite0:
        results["lite0"] = lite0_part(quick=q, seed=a.seed, iterations=iters, train_limit=a.lite0_train_limit,
                                      epochs=a.lite0_epochs)
    a.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(a.out / "bench_updp.json", results)
    atomic_write_text(a.out / "bench_updp.md", markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
