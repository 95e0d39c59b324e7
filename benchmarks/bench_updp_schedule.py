"""UPDP λ-schedule ablation on Fashion-MNIST: does the progressive ramp beat λ = 1 from the start?

The issue asks for UPDP ahead of "λ = 1 from the start" at equal measured speed-up. Both prune the same
blocks into the same merged form, so their latency is identical and only accuracy differs: this
script measures accuracy only (``bench_updp.py`` measures latency). For the ConvNeXt-style subnet of
``bench_updp.py`` (base trained on ``--train-limit`` images), K blocks are chosen once per seed by the
accuracy proxy (K fixed, latency not involved), then each *setting* fine-tunes every *variant* from
the same base with the same loss (CE + KD from the unpruned model), optimiser and step budget:

settings
* ``steps-N``: all the training images, N optimiser steps (``--steps``): short to long budgets;
* ``scarce-N``: only N labelled images (``--scarce``) for ``--scarce-steps`` steps, at learning
  rate 5e-4 and ``--low-lr``: the regime where an abrupt change could hurt most, since the data
  cannot re-teach what the pretrained weights knew.

variants
* ``linear``: UPDP's default, λ rises linearly over the first 40 % of the steps;
* ``cosine``: a cosine ramp over the same share;
* ``linear80``: a linear ramp over 80 % (less time at λ = 1; not run by default);
* ``lambda1``: λ = 1 from the first step (the issue's baseline b);
* ``drop``: the same blocks removed (baseline a; a faster model, shown for scale).

Every UPDP variant is merged and scored on the official test split. Writes
``<out>/bench_updp_schedule.{json,md}`` (after every row) and a plot of each variant's difference
to λ = 1 per setting.

    .venv/bin/python benchmarks/bench_updp_schedule.py --quick   # minutes; smoke run
    .venv/bin/python benchmarks/bench_updp_schedule.py           # ~50 min on 2 cores
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_updp import convnext_subnet, drop_blocks, finetune_merged, log, train_base  # noqa: E402

from compress.core.runs import atomic_write_json, atomic_write_png, atomic_write_text  # noqa: E402
from compress.data import load_dataset  # noqa: E402
from compress.nn.evaluate import top1  # noqa: E402
from compress.prune.updp.candidates import find_candidates  # noqa: E402
from compress.prune.updp.measure import logits  # noqa: E402
from compress.prune.updp.progressive import ProgressiveConfig, train_progressive  # noqa: E402
from compress.prune.updp.proxy import proxy_scorer  # noqa: E402
from compress.prune.updp.select import decide, select_blocks  # noqa: E402

# variant -> (λ schedule, ramp share); None: drop the blocks instead
VARIANTS: dict[str, tuple[str, float] | None] = {
    "linear": ("linear", 0.4),
    "cosine": ("cosine", 0.4),
    "linear80": ("linear", 0.8),
    "lambda1": ("constant", 0.4),
    "drop": None,
}


def proxy_blocks(base, ds, k: int, seed: int, score_images: int) -> list[str]:
    """The K blocks the accuracy proxy prefers (K fixed; every candidate given the same nominal saving,
    so latency plays no part: all the variants here share the blocks and hence the latency)."""
    names = [c.name for c in find_candidates(base)[0]]
    if k > len(names):
        raise SystemExit(f"--k {k}: the subnet has only {len(names)} candidate blocks")
    decisions = [decide(n, "convnext", 1.0, {"dw_pw": 0.5}) for n in names]
    val = ds.val.images[:score_images]
    score = proxy_scorer(base, logits(base, val), ds.calib.images, val)
    return list(select_blocks(decisions, base_ms=float(len(names)), score=score, blocks=k, seed=seed).mask)


def run_setting(
    base, teacher, ds, names: list[str], *, steps: int, lr: float, seed: int, variants: list[str]
) -> dict[str, float]:
    out: dict[str, float] = {}
    for v in variants:
        spec = VARIANTS[v]
        epochs = max(1, -(-steps * 128 // len(ds.train.labels)))
        if spec is None:
            m = drop_blocks(base, names)
            train_progressive(
                m,
                teacher,
                ds.train,
                config=ProgressiveConfig(
                    epochs=epochs, batch_size=128, lr=lr, seed=seed, augment=True, max_steps=steps
                ),
            )
        else:
            schedule, ramp = spec
            m = finetune_merged(
                base,
                teacher,
                dict.fromkeys(names, "dw_pw"),
                ds,
                ProgressiveConfig(
                    epochs=epochs,
                    batch_size=128,
                    lr=lr,
                    schedule=schedule,
                    ramp_share=ramp,
                    seed=seed,
                    augment=True,
                    max_steps=steps,
                ),
            )
        out[v] = 100 * top1(m, ds.test.images, ds.test.labels)
    return out


def markdown(res: dict) -> str:
    vs = res["variants"]
    lines = [
        f"# UPDP λ-schedule ablation ({'quick' if res['quick'] else 'full'}), {res['date']}",
        "",
        f"ConvNeXt-style subnet, Fashion-MNIST 32 px, base trained on {res['train_images']} images for "
        f"{res['pretrain_epochs']} epochs; K = {res['k']} blocks chosen by the accuracy proxy per seed; "
        "every variant fine-tuned from the same base with the same loss (CE + KD), batch 128, AdamW, "
        "cosine learning rate; test top-1 %. Same blocks, same merged form: same latency.",
        "",
        "| seed (base) | blocks | setting | lr | " + " | ".join(vs) + " | linear − λ=1 |",
        "|---|---|---|---|" + "---|" * len(vs) + "---|",
    ]
    for r in res["rows"]:
        d = r["top1"].get("linear", float("nan")) - r["top1"].get("lambda1", float("nan"))
        lines.append(
            f"| {r['seed']} ({r['base']:.2f}) | {', '.join(r['blocks'])} | {r['setting']} | {r['lr']:g} | "
            + " | ".join(f"{r['top1'][v]:.2f}" for v in vs)
            + f" | {d:+.2f} |"
        )
    if res["rows"] and "lambda1" in vs:
        lines += [
            "",
            "Mean difference to λ = 1 from the start over all rows (points; positive: the variant is ahead):",
            "",
        ]
        for v in vs:
            if v == "lambda1":
                continue
            diffs = [r["top1"][v] - r["top1"]["lambda1"] for r in res["rows"]]
            wins = sum(x > 0 for x in diffs)
            lines.append(
                f"- {v}: {statistics.mean(diffs):+.2f} (range {min(diffs):+.2f} to {max(diffs):+.2f}; "
                f"ahead in {wins} of {len(diffs)} rows)"
            )
    return "\n".join(lines) + "\n"


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    vs = [v for v in res["variants"] if v not in ("lambda1", "drop")]
    if not res["rows"] or "lambda1" not in res["variants"] or not vs:
        return
    settings = list(dict.fromkeys(f"{r['setting']} lr {r['lr']:g}" for r in res["rows"]))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(settings) + 2), 4), dpi=110)
    for j, v in enumerate(vs):
        for i, s in enumerate(settings):
            ys = [r["top1"][v] - r["top1"]["lambda1"] for r in res["rows"] if f"{r['setting']} lr {r['lr']:g}" == s]
            xs = [i + (j - (len(vs) - 1) / 2) * 0.18] * len(ys)
            ax.plot(xs, ys, "os^"[j % 3], color=f"C{j}", alpha=0.8, label=v if i == 0 else None)
    ax.axhline(0.0, color="k", lw=0.8)
    ax.set_xticks(range(len(settings)), settings, rotation=20, fontsize=8)
    ax.set_ylabel("top-1 minus λ = 1 from the start (points)")
    ax.set_title("Progressive λ schedules against λ = 1 from the start (one marker per seed)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write_png(fig, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny settings (development smoke run)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "updp" / "schedule")
    ap.add_argument("--seeds", default=None, help="comma list (default 0,1,2; quick 0)")
    ap.add_argument("--k", type=int, default=5, help="blocks pruned (default 5, the 1.5x row of bench_updp.py)")
    ap.add_argument("--train-limit", type=int, default=None, help="base training images (default 12000; quick 3000)")
    ap.add_argument("--pretrain-epochs", type=int, default=None, help="base epochs (default 5; quick 1)")
    ap.add_argument("--steps", default=None, help="comma list of step budgets on all the data (default 100,400)")
    ap.add_argument("--scarce", default=None, help="comma list of scarce-data sizes (default 500,2000)")
    ap.add_argument("--scarce-steps", type=int, default=200)
    ap.add_argument("--low-lr", type=float, default=1e-4, help="second learning rate for the scarce settings")
    ap.add_argument(
        "--variants",
        default="linear,cosine,lambda1,drop",
        help=f"comma list of: {', '.join(VARIANTS)} (default all but linear80)",
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--base-cache", type=Path, default=None, help="folder for trained base weights")
    a = ap.parse_args()
    variants = [v for v in a.variants.split(",") if v]
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        raise SystemExit(f"unknown variant(s) {', '.join(bad)}; choose from {', '.join(VARIANTS)}")
    q = a.quick
    torch.set_num_threads(a.threads)
    torch.set_flush_denormal(True)
    seeds = [int(s) for s in (a.seeds or ("0" if q else "0,1,2")).split(",") if s]
    steps = [int(s) for s in (a.steps or ("20" if q else "100,400")).split(",") if s]
    scarce = [int(s) for s in (a.scarce or ("300" if q else "500,2000")).split(",") if s]
    scarce_steps = 20 if q else a.scarce_steps
    limit = a.train_limit or (3000 if q else 12000)
    pre = a.pretrain_epochs or (1 if q else 5)
    res: dict = {
        "quick": q,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "train_images": limit,
        "pretrain_epochs": pre,
        "k": a.k,
        "variants": variants,
        "threads": a.threads,
        "rows": [],
    }

    def save() -> None:
        a.out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(a.out / "bench_updp_schedule.json", res)
        atomic_write_text(a.out / "bench_updp_schedule.md", markdown(res))

    for seed in seeds:
        torch.manual_seed(seed)
        ds = load_dataset("fashion-mnist", image_size=32, channels=1, seed=seed, train_limit=limit)
        if q:
            ds.test = ds.test.subset(2000)
        _, base = convnext_subnet(seed)
        train_base(
            base,
            ds,
            epochs=pre,
            lr=2e-3,
            seed=seed,
            cache=a.base_cache and a.base_cache / f"convnext-subnet-n{limit}-e{pre}-s{seed}.safetensors",
        )
        base.eval()
        b1 = 100 * top1(base, ds.test.images, ds.test.labels)
        names = proxy_blocks(base, ds, a.k, seed, 500 if q else 2000)
        log(f"seed {seed}: base {b1:.2f}; blocks {names}")
        teacher = copy.deepcopy(base).eval()
        full = ds.train
        plan = [(f"steps-{s}", None, s, 5e-4) for s in steps]
        plan += [(f"scarce-{n}", n, scarce_steps, lr) for n in scarce for lr in (5e-4, a.low_lr)]
        for setting, n, st, lr in plan:
            ds.train = full if n is None else full.subset(n)
            t0 = time.perf_counter()
            got = run_setting(base, teacher, ds, names, steps=st, lr=lr, seed=seed, variants=variants)
            ds.train = full
            res["rows"].append(
                {
                    "seed": seed,
                    "base": b1,
                    "blocks": names,
                    "setting": setting,
                    "steps": st,
                    "train_images": n or len(full.labels),
                    "lr": lr,
                    "top1": got,
                    "seconds": round(time.perf_counter() - t0, 1),
                }
            )
            log(f"seed {seed} {setting} lr {lr:g}: " + ", ".join(f"{v} {x:.2f}" for v, x in got.items()))
            save()
    save()
    plot(res, a.out / "bench_updp_schedule.png")
    print(markdown(res))


if __name__ == "__main__":
    main()
