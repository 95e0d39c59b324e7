"""UPDP benchmark on Fashion-MNIST: merged depth pruning vs dropping blocks vs λ = 1 from the start.

For a ConvNeXt-style subnet of the toolkit's supernet family (``convnext-small-input``) and timm
models (``--models``: mobilenetv2_100, convnext_atto), each trained on Fashion-MNIST first, a row per
block count K (``--ks``) or per target speed-up s (``--speedups``: blocks chosen to meet a latency
budget of base/s, as ``compress prune --latency-ms`` does):

* **updp**: blocks chosen by the proxy + measured block latencies (ONNX Runtime, this CPU), progressive
  λ ramp with KD from the unpruned model, then merged;
* **drop** (baseline a): the same blocks replaced by their identity shortcut, fine-tuned with the same
  budget and loss;
* **drop_matched** (baseline a'): the blocks whose dropping meets the UPDP row's predicted latency
  (dropping saves a whole block, so fewer blocks), chosen by the same kind of proxy, same budget:
  the comparison at equal speed-up;
* **lambda1** (baseline b): the same blocks at λ = 1 from the first step (no progressive schedule),
  same budget, merged.

Whole models are timed side by side in one drift-controlled campaign per runtime (ONNX Runtime and
OpenVINO f32, CPU, ``--timing-threads``, default 1) with the shared runners and timing engine; top-1
is on the official test split. ``--retime RUN/bench_updp.json`` re-times a finished run's rows from
their structure alone (latency does not depend on the weights) in 3 campaigns at 1 and 2 threads.
A third part prunes EfficientNet-Lite0 (real ImageNet weights): top-1 agreement with the unpruned model
on the real photos scikit-learn/scikit-image ship (merged at λ = 1, no training: no ImageNet here),
then fine-tuning on Fashion-MNIST.

    .venv/bin/python benchmarks/bench_updp.py --quick      # minutes; development smoke run
    .venv/bin/python benchmarks/bench_updp.py              # full run (quiet machine)

Writes ``<out>/bench_updp.json`` (after every row), ``<out>/bench_updp.md`` and ``<out>/bench_updp.png``
(top-1 vs measured speed-up).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compress.core.errors import UsageError  # noqa: E402
from compress.core.runs import atomic_write_json, atomic_write_text  # noqa: E402
from compress.data import load_dataset  # noqa: E402
from compress.nn.evaluate import top1  # noqa: E402
from compress.prune.updp.api import block_decisions  # noqa: E402
from compress.prune.updp.candidates import chain_of, find_candidates, set_module  # noqa: E402
from compress.prune.updp.latency import BlockItem, MeasuredBlockLatency  # noqa: E402
from compress.prune.updp.linearize import NormSwapStep  # noqa: E402
from compress.prune.updp.measure import count_macs, logits, recalibrate_bn  # noqa: E402
from compress.prune.updp.progressive import ProgressiveConfig, train_progressive  # noqa: E402
from compress.prune.updp.proxy import _kl, proxy_scorer  # noqa: E402
from compress.prune.updp.select import select_blocks  # noqa: E402
from compress.prune.updp.surgery import insert_pruned, merged_copy  # noqa: E402


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def train_base(model: nn.Module, ds, *, epochs: int, lr: float, seed: int, cache: Path | None = None) -> None:
    """Plain supervised training (λ schedule irrelevant: no pruned blocks yet).

    ``cache``: a safetensors file; loaded when it exists (a re-run with the same model, data, epochs and
    seed trains the same weights), written after training otherwise.
    """
    from safetensors.torch import load_file, save_file

    if cache is not None and cache.is_file():
        model.load_state_dict(load_file(str(cache)))
        log(f"base weights from {cache}")
        return
    cfg = ProgressiveConfig(epochs=epochs, batch_size=128, lr=lr, kd_weight=0.0, seed=seed, augment=True)
    train_progressive(model, None, ds.train, config=cfg)
    if cache is not None:
        from compress.core.runs import atomic_path

        cache.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cache) as tmp:
            save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))


def convnext_subnet(seed: int):
    """The benchmark's ConvNeXt-style subnet (largest config of ``convnext-small-input``), untrained."""
    from compress.supernet import build_supernet

    net = build_supernet("convnext-small-input", seed=seed)
    cfg = net.space.config(
        resolution=32,
        width=1.0,
        depths=[2, 3, 3],
        kernels=[[7, 7], [7, 7, 7], [7, 7, 7]],
        expands=[[4, 4], [4, 4, 4], [4, 4, 4]],
    )
    net.set_active(cfg)
    return cfg, net.export_active()


def finetune_merged(
    base: nn.Module, teacher: nn.Module, forms: dict[str, str], ds, config: ProgressiveConfig
) -> nn.Module:
    """The blocks in ``forms`` put in pruned form (swapped norms re-estimated), trained with ``config``
    (progressive λ or constant) and KD from ``teacher``, then merged into their forms."""
    st = copy.deepcopy(base)
    insert_pruned(st, list(forms), lam=0.0)
    swaps = [m for m in st.modules() if isinstance(m, NormSwapStep)]
    if swaps:
        recalibrate_bn(st, ds.calib.images, only=swaps)
    train_progressive(st, teacher, ds.train, config=config)
    return merged_copy(st, forms)


def drop_blocks(model: nn.Module, names) -> nn.Module:
    m = copy.deepcopy(model)
    for n in names:
        set_module(m, n, nn.Identity())
    return m


def time_models(
    models: dict[str, nn.Module], shape, runtime: str, iterations: int, threads: int = 1
) -> tuple[dict, dict]:
    lat = MeasuredBlockLatency(runtime=runtime, iterations=iterations, threads=threads)
    ms = lat.latencies([BlockItem(k, m.eval(), tuple(shape), "model") for k, m in models.items()])
    return ms, lat.drift


def retime(path: Path, *, campaigns: int, iterations: int, threads: list[int]) -> dict:
    """Re-time the rows of a finished run from their structure alone (fresh random weights: fp32 latency
    does not depend on the values), in ``campaigns`` interleaved campaigns per runtime and thread count;
    the median speed-up over campaigns is reported with each campaign's drift status. For rows timed
    while the machine was busy (drift ``uncontrolled``)."""
    import json
    import statistics

    import timm

    from compress.prune.updp.surgery import merge_model

    res = json.loads(path.read_text())
    out: dict = {"source": str(path), "campaigns": campaigns, "iterations": iterations, "models": []}
    for m in res["models"]:
        name = m["model"]
        seed = res.get("seed", 0)
        torch.manual_seed(seed)
        base = (
            timm.create_model(name[5:], num_classes=10, in_chans=1)
            if name.startswith("timm:")
            else convnext_subnet(seed)[1]
        ).eval()
        shape = tuple(m["input_shape"])
        rows = []
        for r in m["rows"]:
            merged = copy.deepcopy(base)
            insert_pruned(merged, r["blocks"], lam=1.0)
            with torch.no_grad():
                merged = merge_model(merged.eval(), r["forms"])
            models = {"base": base, "updp": merged, "drop": drop_blocks(base, r["blocks"])}
            if r.get("blocks_drop_matched"):
                models["drop_matched"] = drop_blocks(base, r["blocks_drop_matched"])
            row: dict = {"k": r["k"], "target_speedup": r.get("target_speedup"), "blocks": r["blocks"]}
            for rt in ("onnxruntime", "openvino"):
                for th in threads:
                    runs = [time_models(models, shape, rt, iterations, threads=th) for _ in range(campaigns)]
                    sp = {v: statistics.median(ms["base"] / ms[v] for ms, _ in runs) for v in models if v != "base"}
                    row[f"{rt}_t{th}"] = {
                        "speedup": sp,
                        "drift": [d.get("status") for _, d in runs],
                        "ms_base": statistics.median(ms["base"] for ms, _ in runs),
                    }
                    log(
                        f"{name[:30]} K={r['k']} {rt} {th} thread(s): "
                        + ", ".join(f"{v} {x:.2f}x" for v, x in sp.items())
                        + f" ({', '.join(row[f'{rt}_t{th}']['drift'])})"
                    )
            rows.append(row)
        out["models"].append({"model": name, "rows": rows})
    return out


def run_model(
    name: str,
    base: nn.Module,
    ds,
    shape,
    *,
    ks: list[int],
    ft_epochs: int,
    seed: int,
    iterations: int,
    score_images: int,
    speedups: list[float] = (),
    sink: list | None = None,
    checkpoint: Callable[[], None] | None = None,
    timing_threads: int = 1,
) -> dict:
    out: dict = {"model": name, "input_shape": list(shape), "rows": []}
    if sink is not None:
        sink.append(out)
    base.eval()
    out["top1_base"] = 100 * top1(base, ds.test.images, ds.test.labels)
    cands, skipped = find_candidates(base)
    # baseline (a) needs an identity to fall back to: only residual blocks are in the pool
    cands = [c for c in cands if chain_of(_pruned(c)).residual]
    log(f"{name}: base top-1 {out['top1_base']:.2f}; {len(cands)} residual candidates; timing blocks (ORT)")
    lat = MeasuredBlockLatency(runtime="onnxruntime", iterations=iterations, threads=timing_threads)
    base_ms, decisions = block_decisions(base, cands, shape, lat)
    out["block_decisions"] = [d.to_json() for d in decisions]
    out["block_timing_drift"] = lat.drift
    eligible = sum(d.eligible for d in decisions)
    teacher = copy.deepcopy(base).eval()
    val = ds.val.images[:score_images]
    t_logits = logits(teacher, val)
    score = proxy_scorer(base, t_logits, ds.calib.images, val)
    # baseline (a'), drop at the same predicted latency: dropping saves a block's whole time, so fewer
    # blocks meet a budget; chosen the same way (proxy: KL after dropping, BN re-estimated)
    drop_decisions = [
        dataclasses.replace(d, form="identity", saving_ms=d.original_ms, eligible=True) for d in decisions
    ]

    def drop_score(mask) -> float:
        m = drop_blocks(base, mask)
        recalibrate_bn(m, ds.calib.images[:256])
        return -_kl(logits(m, val), t_logits)

    # a row per block count K, then per target speed-up (a latency budget base/s: the selection then
    # weighs each block's measured saving, not only the proxy, as `compress prune --latency-ms` does)
    targets = [("k", k) for k in ks if k <= eligible] + [("speedup", s) for s in speedups]
    for kind, value in targets:
        try:
            if kind == "k":
                sel = select_blocks(decisions, base_ms=base_ms, score=score, blocks=value, seed=seed)
            else:
                sel = select_blocks(decisions, base_ms=base_ms, score=score, latency_ms=base_ms / value, seed=seed)
            sel_drop = select_blocks(
                drop_decisions,
                base_ms=base_ms,
                score=drop_score,
                latency_ms=sel.predicted_ms,
                seed=seed,
            )
        except UsageError as e:
            log(f"{name} {kind} {value}: skipped: {e}")
            out.setdefault("skipped", []).append({kind: value, "why": str(e)})
            continue
        k = len(sel.mask)
        tag = f"K={k}" + (f" (target {value}x)" if kind == "speedup" else "")
        forms = {n: next(d.form for d in decisions if d.name == n) for n in sel.mask}
        log(f"{name} {tag}: {sel.mask}")
        row: dict = {
            "k": k,
            "blocks": list(sel.mask),
            "forms": forms,
            "predicted_ms": sel.predicted_ms,
            "predicted_base_ms": base_ms,
            "target_speedup": value if kind == "speedup" else None,
        }
        models: dict[str, nn.Module] = {"base": base}
        for variant, schedule in (("updp", "linear"), ("lambda1", "constant")):
            merged = finetune_merged(
                base,
                teacher,
                forms,
                ds,
                ProgressiveConfig(
                    epochs=ft_epochs, batch_size=128, lr=5e-4, schedule=schedule, seed=seed, augment=True
                ),
            )
            row[f"top1_{variant}"] = 100 * top1(merged, ds.test.images, ds.test.labels)
            models[variant] = merged
        row["blocks_drop_matched"] = list(sel_drop.mask)
        for variant, mask in (("drop", sel.mask), ("drop_matched", sel_drop.mask)):
            dropped = drop_blocks(base, mask)
            train_progressive(
                dropped,
                teacher,
                ds.train,
                config=ProgressiveConfig(epochs=ft_epochs, batch_size=128, lr=5e-4, seed=seed, augment=True),
            )
            row[f"top1_{variant}"] = 100 * top1(dropped, ds.test.images, ds.test.labels)
            models[variant] = dropped
        row["macs"] = {k2: count_macs(m, shape) for k2, m in models.items()}
        for rt in ("onnxruntime", "openvino"):
            ms, drift = time_models(
                {k2: models[k2] for k2 in ("base", "updp", "drop", "drop_matched")},
                shape,
                rt,
                iterations,
                threads=timing_threads,
            )
            row[rt] = {
                "ms": ms,
                "drift": drift.get("status"),
                **{f"speedup_{v}": ms["base"] / ms[v] for v in ("updp", "drop", "drop_matched")},
            }
        log(
            f"{name} {tag}: top-1 base {out['top1_base']:.2f} updp {row['top1_updp']:.2f} λ1 {row['top1_lambda1']:.2f} "
            f"drop {row['top1_drop']:.2f} drop-matched (K={len(sel_drop.mask)}) {row['top1_drop_matched']:.2f}; "
            f"ORT x{row['onnxruntime']['speedup_updp']:.2f}/x{row['onnxruntime']['speedup_drop_matched']:.2f} "
            f"OV x{row['openvino']['speedup_updp']:.2f}/x{row['openvino']['speedup_drop_matched']:.2f}"
        )
        out["rows"].append(row)
        if checkpoint:
            checkpoint()
    return out


def _pruned(c):
    from compress.prune.updp.candidates import to_pruned

    return to_pruned(copy.deepcopy(c.module), c.name)


def lite0_part(
    *, quick: bool, seed: int, iterations: int, train_limit: int | None = None, epochs: int | None = None
) -> dict:
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
    for k in [1, 2] if quick else [1, 2, 3, 5, 9]:
        names = res[-k:]  # deepest identity blocks first [R]: no ImageNet here to score masks
        m = copy.deepcopy(model)
        insert_pruned(m, names, lam=1.0)
        merged = merged_copy(m, {n: forms_for(chain_of(p))[0] for n, p in pruned_blocks(m).items()})
        with torch.no_grad():
            agree = float((merged(x).argmax(1) == ref).float().mean()) * 100
        out["rows"].append({"k": k, "blocks": names, "photo_top1_agreement": agree})
        log(f"lite0 K={k}: agreement on {x.shape[0]} photos {agree:.0f}% (merged at λ=1, no training)")
    # fine-tune on Fashion-MNIST (3-channel, 64 px), then prune 2 blocks with the progressive schedule
    ds = load_dataset(
        "fashion-mnist", image_size=64, channels=3, seed=seed, train_limit=train_limit or (2000 if quick else None)
    )
    ep = epochs or (1 if quick else 3)
    out["fmnist_train_images"], out["fmnist_epochs"] = len(ds.train.labels), ep
    lm64 = load_model("efficientnet-lite0", num_classes=10, image_size=64)
    base = lm64.module
    train_base(base, ds, epochs=ep, lr=1e-3, seed=seed)
    out["fmnist_top1_base"] = 100 * top1(base, ds.test.images, ds.test.labels)
    # the two deepest identity-shortcut blocks, as for the photos (a block without a shortcut loses
    # all its non-linearity when merged; the previous run pruned _blocks.15, which has none)
    names = [c.name for c in find_candidates(base)[0] if chain_of(_pruned(c)).residual][-2:]
    st = copy.deepcopy(base)
    insert_pruned(st, names, lam=0.0)
    train_progressive(
        st,
        copy.deepcopy(base).eval(),
        ds.train,
        config=ProgressiveConfig(epochs=ep, batch_size=128, lr=5e-4, seed=seed),
    )
    merged = merged_copy(st, {n: "dense" for n in names})
    out["fmnist_pruned_blocks"] = names
    out["fmnist_top1_pruned"] = 100 * top1(merged, ds.test.images, ds.test.labels)
    log(f"lite0 fashion-mnist: base {out['fmnist_top1_base']:.2f}, 2 blocks merged {out['fmnist_top1_pruned']:.2f}")
    return out


def markdown(res: dict) -> str:
    lines = [
        f"# UPDP benchmark ({'quick' if res['quick'] else 'full'}), {res['date']}",
        "",
        f"Fashion-MNIST 32 px, {res.get('train_images')} training images, base trained {res.get('pretrain_epochs')} "
        f"epochs, each variant fine-tuned {res.get('ft_epochs')} epochs (same loss and budget), torch threads "
        f"{res.get('threads')}, runtime threads when timing {res.get('timing_threads', 2)}, seed {res['seed']}; "
        f"top-1 on the test split.",
        "",
    ]
    for m in res["models"]:
        lines += [
            f"## {m['model']} on Fashion-MNIST, input {m['input_shape']}, base top-1 {m['top1_base']:.2f}",
            "",
            "Drop (same blocks) removes the UPDP row's blocks; drop (same budget) removes the K' blocks chosen to "
            "meet the UPDP row's predicted latency when dropped (the fair comparison at equal speed-up).",
            "",
            "| K (target) | blocks | top-1 UPDP | top-1 λ=1 | top-1 drop same blocks | top-1 drop same budget (K') "
            "| ORT ms base/UPDP | ORT speed-up UPDP/drop/drop same budget | OV ms base/UPDP "
            "| OV speed-up UPDP/drop/drop same budget |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in m["rows"]:
            o, v = r["onnxruntime"], r["openvino"]
            tgt = f" ({r['target_speedup']}x)" if r.get("target_speedup") else ""
            dm = (
                f"{r['top1_drop_matched']:.2f} ({len(r['blocks_drop_matched'])})" if "top1_drop_matched" in r else "n/a"
            )

            def sp(t: dict) -> str:
                return "/".join(
                    f"{t[f'speedup_{x}']:.2f}x" if f"speedup_{x}" in t else "n/a"
                    for x in ("updp", "drop", "drop_matched")
                )

            lines.append(
                f"| {r['k']}{tgt} | {', '.join(r['blocks'])} | {r['top1_updp']:.2f} | {r['top1_lambda1']:.2f} | "
                f"{r['top1_drop']:.2f} | {dm} | {o['ms']['base']:.3f}/{o['ms']['updp']:.3f} | "
                f"{sp(o)} ({o['drift']}) | {v['ms']['base']:.3f}/{v['ms']['updp']:.3f} | {sp(v)} ({v['drift']}) |"
            )
        if m.get("skipped"):
            lines += [""] + [f"- skipped {s}" for s in m["skipped"]]
        lines += ["", "Block decisions (ONNX Runtime, this CPU):", ""]
        lines += [
            f"- {d['name']} ({d['kind']}): {'eligible' if d['eligible'] else 'keep'}: {d['reason']}"
            for d in m["block_decisions"]
        ]
        lines.append("")
    if res.get("lite0"):
        l0 = res["lite0"]
        lines += ["## EfficientNet-Lite0 (ImageNet weights)", ""]
        lines += [
            f"- K={r['k']} ({', '.join(r['blocks'])}): top-1 agreement with the unpruned model on "
            f"{l0['photos']} photos: {r['photo_top1_agreement']:.0f}% (merged at λ=1, no training)"
            for r in l0["rows"]
        ]
        lines.append(
            f"- Fashion-MNIST 64 px ({l0.get('fmnist_train_images')} training images, {l0.get('fmnist_epochs')} "
            f"epochs each): base {l0['fmnist_top1_base']:.2f}, with {', '.join(l0['fmnist_pruned_blocks'])} "
            f"merged after progressive training {l0['fmnist_top1_pruned']:.2f}"
        )
    return "\n".join(lines) + "\n"


def plot(res: dict, path: Path) -> None:
    """Top-1 vs measured speed-up (ONNX Runtime and OpenVINO), one panel per runtime and model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from compress.core.runs import atomic_write_png

    models = [m for m in res["models"] if m["rows"]]
    if not models:
        return
    fig, axes = plt.subplots(len(models), 2, figsize=(10, 3.8 * len(models)), dpi=110, squeeze=False)
    for ax_row, m in zip(axes, models):
        for ax, rt in zip(ax_row, ("onnxruntime", "openvino")):
            rows = m["rows"]
            for key, sp, style in (
                ("updp", "speedup_updp", "o"),
                ("lambda1", "speedup_updp", "s"),
                ("drop", "speedup_drop", "^"),
                ("drop_matched", "speedup_drop_matched", "v"),
            ):
                pts = sorted((r[rt][sp], r[f"top1_{key}"]) for r in rows if sp in r[rt])
                if not pts:
                    continue
                ax.plot(
                    *zip(*pts),
                    style,
                    alpha=0.8,
                    ms=6,
                    label={
                        "updp": "UPDP (merged)",
                        "lambda1": "λ = 1 from the start (merged)",
                        "drop": "drop the same blocks",
                        "drop_matched": "drop, same predicted latency",
                    }[key],
                )
            ax.plot([1.0], [m["top1_base"]], "k*", ms=10, label="unpruned")
            for r in rows:
                ax.annotate(
                    f"K={r['k']}",
                    (r[rt]["speedup_updp"], r["top1_updp"]),
                    fontsize=7,
                    textcoords="offset points",
                    xytext=(3, 3),
                )
            ax.axhline(m["top1_base"] - 0.5, color="grey", lw=0.8, ls=":")
            ax.axvline(1.5, color="grey", lw=0.8, ls=":")
            ax.set_title(f"{m['model'][:40]}, {rt}", fontsize=9)
            ax.set_xlabel("measured speed-up (whole model)")
            ax.set_ylabel("test top-1 (%)")
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle("UPDP on Fashion-MNIST (dotted: 1.5x and base − 0.5 points)", fontsize=10)
    fig.tight_layout()
    atomic_write_png(fig, path)


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
    ap.add_argument(
        "--speedups",
        default="",
        help="comma list of target speed-ups: rows selected by a latency budget (base / s) instead of a block count",
    )
    ap.add_argument("--models", default="convnext,mobilenetv2", help="comma list: convnext, mobilenetv2, convnext_atto")
    ap.add_argument(
        "--base-cache",
        type=Path,
        default=None,
        help="folder for trained base weights: a re-run with the same settings skips base training",
    )
    ap.add_argument("--threads", type=int, default=None, help="torch threads for training (default: torch's)")
    ap.add_argument(
        "--lite0-train-limit", type=int, default=None, help="Lite0 Fashion-MNIST images (default all; quick 2k)"
    )
    ap.add_argument("--lite0-epochs", type=int, default=None, help="Lite0 fine-tune epochs (default 3; quick 1)")
    ap.add_argument(
        "--timing-threads",
        type=int,
        default=1,
        help="ONNX Runtime / OpenVINO intra-op threads when timing (runs before 2026-11-30 04:00 used 2)",
    )
    ap.add_argument(
        "--retime",
        type=Path,
        default=None,
        help="a finished run's bench_updp*.json: re-time its rows (structure only) and write retime*.json beside it",
    )
    ap.add_argument("--retime-campaigns", type=int, default=3)
    a = ap.parse_args()
    if a.retime:
        torch.set_flush_denormal(True)
        rt = retime(a.retime, campaigns=a.retime_campaigns, iterations=100, threads=[1, 2])
        # bench_updp.json -> retime.json, bench_updp_k56.json -> retime_k56.json (beside it)
        atomic_write_json(a.retime.with_name(a.retime.stem.replace("bench_updp", "retime", 1) + ".json"), rt)
        return
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
    ks = [int(k) for k in a.ks.split(",") if k] if a.ks is not None else ([1, 2] if q else list(range(1, 9)))
    speedups = [float(s) for s in a.speedups.split(",") if s]
    pre = a.pretrain_epochs or (1 if q else 10)
    ft = a.ft_epochs or (1 if q else 5)
    models = a.models.split(",")
    results: dict = {
        "quick": q,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "seed": a.seed,
        "train_images": len(ds.train.labels),
        "pretrain_epochs": pre,
        "ft_epochs": ft,
        "ks": ks,
        "speedups": speedups,
        "timing_threads": a.timing_threads,
        "threads": torch.get_num_threads(),
        "models": [],
    }

    def save() -> None:  # after every row, so a long run that fails later keeps what it measured
        a.out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(a.out / "bench_updp.json", results)
        atomic_write_text(a.out / "bench_updp.md", markdown(results))

    cfg, convnext = convnext_subnet(a.seed)
    if "convnext" in models:
        log(f"training supernet subnet {cfg} on Fashion-MNIST")
        train_base(
            convnext,
            ds,
            epochs=pre,
            lr=2e-3,
            seed=a.seed,
            cache=a.base_cache
            and a.base_cache / f"convnext-subnet-n{len(ds.train.labels)}-e{pre}-s{a.seed}.safetensors",
        )
        run_model(
            f"convnext-small-input {cfg}",
            convnext,
            ds,
            (1, 32, 32),
            ks=ks,
            ft_epochs=ft,
            seed=a.seed,
            iterations=iters,
            score_images=500 if q else 2000,
            speedups=speedups,
            sink=results["models"],
            checkpoint=save,
            timing_threads=a.timing_threads,
        )
    import timm

    # timm models: MobileNetV2, and convnext_atto, whose blocks all keep an identity shortcut
    # (downsampling is a separate layer), so unlike MobileNetV2 it can reach 1.5x here (bench_updp_ceiling.py)
    for key, timm_name in (("mobilenetv2", "mobilenetv2_100"), ("convnext_atto", "convnext_atto")):
        if key not in models:
            continue
        torch.manual_seed(a.seed)
        tm = timm.create_model(timm_name, num_classes=10, in_chans=1)
        log(f"training timm {timm_name} on Fashion-MNIST")
        train_base(
            tm,
            ds,
            epochs=pre,
            lr=2e-3,
            seed=a.seed,
            cache=a.base_cache and a.base_cache / f"{timm_name}-n{len(ds.train.labels)}-e{pre}-s{a.seed}.safetensors",
        )
        run_model(
            f"timm:{timm_name}",
            tm,
            ds,
            (1, 32, 32),
            ks=ks,
            ft_epochs=ft,
            seed=a.seed,
            iterations=iters,
            score_images=500 if q else 2000,
            speedups=speedups,
            sink=results["models"],
            checkpoint=save,
            timing_threads=a.timing_threads,
        )
    if not a.skip_lite0:
        results["lite0"] = lite0_part(
            quick=q, seed=a.seed, iterations=iters, train_limit=a.lite0_train_limit, epochs=a.lite0_epochs
        )
    save()
    plot(results, a.out / "bench_updp.png")
    print(markdown(results))


if __name__ == "__main__":
    main()
