"""UPDP block selection: the cheap accuracy proxy validated against supernet-style training.

ALGORITHMS §1.5 scores a block mask on a weight-sharing network trained with random K-block masks;
``compress prune`` uses a cheaper proxy by default (KL to the unpruned model with the mask's blocks at
λ = 1 and BatchNorm re-estimated, no training). This benchmark checks that the proxy ranks masks like
the supernet does, and that both rank them like the truth: each mask fine-tuned with the UPDP recipe
(progressive λ + KD, the same short budget for every mask), merged, and scored on the test split.

On the ConvNeXt-style subnet of ``bench_updp.py`` (trained on Fashion-MNIST first), for K blocks:
all C(n, K) masks are scored by both scorers; ``--truth M`` of them (seeded random sample, plus
each scorer's best mask) are fine-tuned. Reported: Spearman and Kendall rank correlations
(proxy vs supernet on all masks; each vs the truth on the sample), each scorer's pick and its true
top-1 against the best and the median of the sample, and the scorers' cost.

    .venv/bin/python benchmarks/bench_updp_proxy.py --quick   # minutes
    .venv/bin/python benchmarks/bench_updp_proxy.py           # ~30 min on one thread

Writes ``<out>/bench_updp_proxy.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import random
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_updp import _pruned, convnext_subnet, finetune_merged, log, train_base  # noqa: E402

from compress.core.runs import atomic_write_json, atomic_write_png, atomic_write_text  # noqa: E402
from compress.data import load_dataset  # noqa: E402
from compress.nn.evaluate import top1  # noqa: E402
from compress.prune.updp.candidates import chain_of, find_candidates  # noqa: E402
from compress.prune.updp.measure import logits  # noqa: E402
from compress.prune.updp.progressive import ProgressiveConfig  # noqa: E402
from compress.prune.updp.proxy import proxy_scorer, supernet_scorer  # noqa: E402


def true_top1(base, teacher, mask, ds, *, steps: int, seed: int) -> float:
    """Fine-tune ``mask`` with the UPDP recipe for ``steps`` steps, merge, test top-1."""
    epochs = -(-steps * 128 // len(ds.train.labels))
    merged = finetune_merged(
        base,
        teacher,
        {n: "dw_pw" for n in mask},
        ds,
        ProgressiveConfig(epochs=epochs, batch_size=128, lr=5e-4, seed=seed, augment=True, max_steps=steps),
    )
    return 100 * top1(merged, ds.test.images, ds.test.labels)


def rank_stats(a: list[float], b: list[float]) -> dict:
    from scipy.stats import kendalltau, spearmanr

    return {"spearman": float(spearmanr(a, b).statistic), "kendall": float(kendalltau(a, b).statistic), "n": len(a)}


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = res["truth"]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), dpi=110)
    pairs = (("proxy", "supernet", res["scores"]), ("proxy", "true_top1", rows), ("supernet", "true_top1", rows))
    for ax, (xa, ya, data) in zip(axes, pairs):
        ax.plot([r[xa] for r in data], [r[ya] for r in data], "o", ms=4, alpha=0.7)
        st = res["rank"][f"{xa}_vs_{ya}"]
        ax.set_title(f"{ya} vs {xa}: Spearman {st['spearman']:.2f}, n={st['n']}", fontsize=9)
        ax.set_xlabel(f"{xa} score (−KL)" if xa != "true_top1" else "top-1 (%)")
        ax.set_ylabel("true top-1 after fine-tuning (%)" if ya == "true_top1" else f"{ya} score (−KL)")
        ax.grid(alpha=0.3)
    fig.suptitle(f"UPDP selection scorers, K = {res['k']} of {len(res['candidates'])} blocks", fontsize=10)
    fig.tight_layout()
    atomic_write_png(fig, path)


def markdown(res: dict) -> str:
    r = res["rank"]
    lines = [
        f"# UPDP selection proxy vs supernet-style training ({'quick' if res['quick'] else 'full'}), {res['date']}",
        "",
        f"ConvNeXt-style subnet, base top-1 {res['top1_base']:.2f} on Fashion-MNIST ({res['train_images']} "
        f"training images, {res['pretrain_epochs']} epochs); K = {res['k']} of {len(res['candidates'])} blocks, "
        f"{len(res['scores'])} masks scored; {len(res['truth'])} fine-tuned for {res['truth_steps']} steps each "
        f"(progressive λ + KD), merged, test top-1. Seed {res['seed']}, torch threads {res['threads']}.",
        "",
        "| pair | Spearman | Kendall | masks |",
        "|---|---|---|---|",
    ]
    for key, st in r.items():
        lines.append(f"| {key.replace('_vs_', ' vs ')} | {st['spearman']:.3f} | {st['kendall']:.3f} | {st['n']} |")
    lines += ["", "| scorer | cost | best mask | its true top-1 | sample best / median |", "|---|---|---|---|---|"]
    for name in ("proxy", "supernet"):
        p = res["picks"][name]
        lines.append(
            f"| {name} | {res['cost_s'][name]:.0f} s | {', '.join(p['mask'])} | {p['true_top1']:.2f} | "
            f"{res['truth_best']:.2f} / {res['truth_median']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "updp" / "proxy")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--train-limit", type=int, default=12000)
    ap.add_argument("--pretrain-epochs", type=int, default=5)
    ap.add_argument("--truth", type=int, default=24, help="masks fine-tuned for the truth (plus each scorer's pick)")
    ap.add_argument("--truth-steps", type=int, default=94, help="fine-tune steps per mask (94 = one epoch of 12k)")
    ap.add_argument("--supernet-steps", type=int, default=600, help="weight-sharing training steps")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    torch.set_flush_denormal(True)
    q = a.quick
    ds = load_dataset("fashion-mnist", image_size=32, channels=1, seed=a.seed, train_limit=3000 if q else a.train_limit)
    pre = 1 if q else a.pretrain_epochs
    _, base = convnext_subnet(a.seed)
    log("training the base subnet")
    train_base(base, ds, epochs=pre, lr=2e-3, seed=a.seed)
    base.eval()
    teacher = copy.deepcopy(base).eval()
    names = [c.name for c in find_candidates(base)[0] if chain_of(_pruned(c)).residual]
    val = ds.val.images[: 500 if q else 2000]
    t_logits = logits(teacher, val)
    masks = list(itertools.combinations(names, a.k))
    res: dict = {
        "quick": q,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "seed": a.seed,
        "k": a.k,
        "train_images": len(ds.train.labels),
        "pretrain_epochs": pre,
        "threads": torch.get_num_threads(),
        "top1_base": 100 * top1(base, ds.test.images, ds.test.labels),
        "candidates": names,
        "truth_steps": 10 if q else a.truth_steps,
        "cost_s": {},
    }
    t0 = time.perf_counter()
    proxy = proxy_scorer(base, t_logits, ds.calib.images, val)
    p_scores = {m: proxy(m) for m in masks}
    res["cost_s"]["proxy"] = time.perf_counter() - t0
    log(f"proxy: {len(masks)} masks in {res['cost_s']['proxy']:.0f} s")
    t0 = time.perf_counter()
    sup = supernet_scorer(
        base,
        teacher,
        names,
        ds.train,
        t_logits,
        ds.calib.images,
        val,
        k=a.k,
        steps=40 if q else a.supernet_steps,
        batch_size=64,
        seed=a.seed,
    )
    s_scores = {m: sup(m) for m in masks}
    res["cost_s"]["supernet"] = time.perf_counter() - t0
    log(f"supernet: trained and scored {len(masks)} masks in {res['cost_s']['supernet']:.0f} s")
    res["scores"] = [{"mask": list(m), "proxy": p_scores[m], "supernet": s_scores[m]} for m in masks]
    picks = {
        "proxy": max(masks, key=lambda m: (p_scores[m], m)),
        "supernet": max(masks, key=lambda m: (s_scores[m], m)),
    }
    rng = random.Random(a.seed)
    sample = rng.sample(masks, min(3 if q else a.truth, len(masks)))
    sample += [m for m in dict.fromkeys(picks.values()) if m not in sample]
    truth = []
    for i, m in enumerate(sample):
        t = true_top1(base, teacher, m, ds, steps=res["truth_steps"], seed=a.seed)
        truth.append({"mask": list(m), "proxy": p_scores[m], "supernet": s_scores[m], "true_top1": t})
        log(f"truth {i + 1}/{len(sample)}: {m} top-1 {t:.2f} (proxy {p_scores[m]:.4f}, supernet {s_scores[m]:.4f})")
    res["truth"] = truth
    tops = [r["true_top1"] for r in truth]
    res["truth_best"], res["truth_median"] = max(tops), statistics.median(tops)
    res["picks"] = {
        k: {"mask": list(m), "true_top1": next(r["true_top1"] for r in truth if tuple(r["mask"]) == m)}
        for k, m in picks.items()
    }
    res["rank"] = {
        "proxy_vs_supernet": rank_stats(list(p_scores.values()), list(s_scores.values())),
        "proxy_vs_true_top1": rank_stats([r["proxy"] for r in truth], tops),
        "supernet_vs_true_top1": rank_stats([r["supernet"] for r in truth], tops),
    }
    a.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(a.out / "bench_updp_proxy.json", res)
    atomic_write_text(a.out / "bench_updp_proxy.md", markdown(res))
    plot(res, a.out / "bench_updp_proxy.png")
    print(markdown(res))


if __name__ == "__main__":
    main()
