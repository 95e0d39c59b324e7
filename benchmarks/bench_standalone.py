"""Supernet subnets against the same architectures trained alone, and a hand-designed timm baseline.

The claim that makes a supernet worth having: a subnet taken from it (BN recalibrated on the
calibration split, no fine-tuning) is as good as the same architecture trained from scratch.
For three subnets of ``--supernet`` (the default: the embedded one) - ``min``, one selected by
``compress search`` at a mid latency budget, and ``max`` - this script reports test top-1 of

* ``supernet``: the subnet as the supernet holds it, after BN recalibration (as ``compress eval``);
* ``alone@share``: the static architecture (:func:`compress.supernet.static.build_static`, fresh
  weights) trained from scratch for the supernet's *optimizer steps* - its per-subnet share of the
  supernet's compute: each step of the run gave every subnet it trained one batch;
* ``alone@full``: the same, for the supernet's *subnet passes* (all forward/backward passes of the
  run: the whole compute that made the supernet, spent on this one architecture);

and a hand-designed baseline: the timm model (``--timm`` candidates at ``--timm-res`` pixels) whose
measured ONNX Runtime latency (batch 1, ``--threads`` threads, interleaved, drift-controlled by
:class:`compress.latency.measure.BlockTimer`) is closest to the searched subnet's, trained from scratch
with the same two budgets. Compute is counted in batch passes (one forward/backward of one batch of
the run's batch size), not in FLOPs.

Everything else matches the supernet's run (read from the checkpoint header): the training split
(same dataset, seed, ``train_limit``), batch size, SGD Nesterov, per-step cosine LR with its floor,
weight decay (not on BN/biases), label smoothing and the flip + shift augmentation. Every run is
seeded. Each training job saves a checkpoint every ``--checkpoint-every`` steps and its result when
done: a killed benchmark resumes where it stopped (rerun the same command).

Run (full; hours on a 2-core CPU, minutes on a GPU with ``--device cuda``)::

    .venv/bin/python benchmarks/bench_standalone.py --supernet compress/supernet/default/supernet.safetensors

``--quick`` checks the harness end to end in a few minutes (tiny budgets, 2 timm candidates): its
numbers mean nothing, it writes to ``runs/bench_standalone_quick`` and labels every file a smoke run.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from compress.core.atomic import atomic_path, atomic_write_json, atomic_write_text  # noqa: E402

DEFAULT_TIMM = (
    "mobilenetv3_small_050",
    "mobilenetv3_small_075",
    "mobilenetv3_small_100",
    "mobilenetv3_large_075",
    "mobilenetv3_large_100",
    "resnet10t",
    "resnet14t",
    "resnet18",
)


# ---- the supernet's budget and recipe --------------------------------------------------------


@dataclass
class Recipe:
    """The optimisation settings of the supernet's run (its header's ``recipe.config``)."""

    batch_size: int = 128
    base_lr: float = 0.1625
    min_lr: float = 2.5e-3
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 3e-5
    label_smoothing: float = 0.1
    augment: bool = True
    seed: int = 0

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> Recipe:
        keys = cls.__dataclass_fields__
        return cls(**{k: cfg[k] for k in keys if k in cfg})


def count_passes(train_config: dict[str, Any], train_size: int, space: dict[str, Any] | None = None) -> dict[str, int]:
    """Optimizer steps and subnet passes of the run ``train_config`` describes, on ``train_size`` images.

    Replays the recipe's plan step by step (the same plan ``compress train`` follows, no training):
    a DεpS run trains the largest subnet alone until the shrink start, then ``n`` subnets per step.
    """
    from compress.supernet import SearchSpace
    from compress.train.config import TrainConfig
    from compress.train.recipes import get_recipe

    # fields a later toolkit dropped are ignored (none of them changes how many steps/passes a run takes)
    cfg = TrainConfig(**{k: v for k, v in train_config.items() if k in TrainConfig.model_fields})
    sp = SearchSpace.from_dict(space or _space_for(cfg))
    gb = cfg.batch_size * cfg.nproc
    per_epoch = train_size // gb
    total = cfg.epochs * per_epoch
    stop = min(total, cfg.max_steps or total)
    recipe = get_recipe(cfg.recipe)(cfg, sp, steps_per_epoch=per_epoch, total_steps=total, eta0=cfg.base_lr)
    flags: dict[str, Any] = {}
    passes = 0
    for t in range(stop):
        plan = recipe.plan(t, flags)
        for ev in plan.events:  # the flags the training loop sets (compress.train.loop)
            if ev == "reorganize":
                flags["reorganized"] = True
            elif ev == "snapshot-teacher":
                flags["teacher"] = True
        passes += len(plan.terms)
    return {"steps": int(stop), "passes": int(passes), "steps_per_epoch": int(per_epoch), "epochs": int(cfg.epochs)}


def _space_for(cfg: Any) -> dict[str, Any]:
    from compress.supernet import get_space

    return get_space(cfg.family).to_dict()


def supernet_budget(header: dict[str, Any], train_size: int) -> dict[str, int]:
    """Steps and passes of the checkpoint's training run (replayed from its recorded config)."""
    conf = dict(((header.get("recipe") or {}).get("config")) or {})
    if not conf:
        raise SystemExit("the checkpoint records no training config (recipe.config); give --steps and --passes")
    return count_passes(conf, train_size, header["space"])


# ---- training a static model from scratch ---------------------------------------------------


def step_seed(seed: int, step: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, step, index + 1000]).generate_state(1)[0])


def augment(x: torch.Tensor, seed: int) -> torch.Tensor:
    """Random horizontal flip and a shift of up to 2 px (reflect padding), as ``compress train``."""
    g = torch.Generator().manual_seed(seed)
    n, _, h, w = x.shape
    flip = torch.rand(n, generator=g) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
    xp = F.pad(x, (2, 2, 2, 2), mode="reflect")
    dx, dy = torch.randint(0, 5, (2,), generator=g).tolist()
    return xp[:, :, dy : dy + h, dx : dx + w].contiguous()


def cosine_lr(step: int, total: int, eta0: float, floor: float) -> float:
    return floor + 0.5 * (eta0 - floor) * (1 + math.cos(math.pi * step / max(1, total)))


def param_groups(model: torch.nn.Module, wd: float) -> list[dict[str, Any]]:
    decay = [p for p in model.parameters() if p.ndim > 1]
    other = [p for p in model.parameters() if p.ndim <= 1]
    return [{"params": decay, "weight_decay": wd}, {"params": other, "weight_decay": 0.0}]


def top1(model: torch.nn.Module, split: Any, resolution: int, *, device: str = "cpu", batch: int = 500) -> float:
    from compress.supernet.base import resize_input

    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(split), batch):
            x = resize_input(split.images[i : i + batch].to(device), resolution)
            correct += int((model(x).argmax(1).cpu() == split.labels[i : i + batch]).sum())
    return correct / max(1, len(split))


def train_static(
    model: torch.nn.Module,
    *,
    train: Any,
    resolution: int,
    steps: int,
    recipe: Recipe,
    seed: int,
    device: str = "cpu",
    ckpt: Path | None = None,
    checkpoint_every: int = 200,
    log: Any = None,
    on_step: Any = None,
) -> dict[str, Any]:
    """Train ``model`` for ``steps`` batches of ``train`` (drop-last epochs in a seeded order).

    A checkpoint (model, optimizer, step) is written atomically every ``checkpoint_every`` steps to
    ``ckpt`` and read back (``weights_only``) when present, so a killed job continues exactly: the
    batch order, augmentation and dropout seeds are functions of (seed, step).
    """
    from compress.data import Batches
    from compress.supernet.base import resize_input

    model.to(device)
    opt = torch.optim.SGD(
        param_groups(model, recipe.weight_decay),
        lr=recipe.base_lr,
        momentum=recipe.momentum,
        nesterov=recipe.nesterov and recipe.momentum > 0,
    )
    per_epoch = len(train) // recipe.batch_size
    if per_epoch < 1:
        raise SystemExit(f"the training split has {len(train)} images, fewer than one batch of {recipe.batch_size}")
    start, wall0 = 0, 0.0
    if ckpt is not None and ckpt.is_file():
        saved = torch.load(ckpt, map_location=device, weights_only=True)
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        start, wall0 = int(saved["step"]), float(saved["wall_s"])
    t0 = time.perf_counter()

    def save(step: int) -> None:
        if ckpt is None:
            return
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(ckpt) as tmp:
            torch.save(
                {
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "step": step,
                    "wall_s": wall0 + time.perf_counter() - t0,
                },
                tmp,
            )

    model.train()
    step = start
    while step < steps:
        epoch, b = divmod(step, per_epoch)
        for x, y in Batches(train, batch_size=recipe.batch_size, seed=seed, epoch=epoch, drop_last=True, start=b):
            if step >= steps:
                break
            if recipe.augment:
                x = augment(x, step_seed(seed, step, -1))
            torch.manual_seed(step_seed(seed, step, -100))  # dropout
            x, y = resize_input(x.to(device), resolution), y.to(device)
            loss = F.cross_entropy(model(x), y, label_smoothing=recipe.label_smoothing)
            for g in opt.param_groups:
                g["lr"] = cosine_lr(step, steps, recipe.base_lr, recipe.min_lr)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if log is not None and step % 100 == 0:
                log(f"    step {step}/{steps} loss {loss.detach().item():.3f}")
            if step % checkpoint_every == 0 and step < steps:
                save(step)
            if on_step is not None:
                on_step(step)
    save(step)
    return {"steps": int(step), "resumed_from": int(start) or None, "wall_s": wall0 + time.perf_counter() - t0}


# ---- models: subnets and timm baselines -----------------------------------------------------


def timm_model(name: str, *, in_chans: int, num_classes: int, seed: int) -> torch.nn.Module:
    """A timm architecture with fresh weights (never pretrained: nothing is downloaded)."""
    import timm

    torch.manual_seed(seed)
    return timm.create_model(name, pretrained=False, in_chans=in_chans, num_classes=num_classes)


@dataclass
class Arch:
    """One architecture of the comparison: how to build it fresh, at which input resolution."""

    name: str
    kind: str  # "subnet" or "timm"
    resolution: int
    build: Any  # () -> nn.Module with fresh weights
    config: dict[str, Any] | None = None
    info: dict[str, Any] = field(default_factory=dict)


def measure_ms(
    archs: list[Arch], *, in_chans: int, threads: int, iterations: int, passes: int = 2
) -> tuple[dict[str, float], dict[str, Any]]:
    """ONNX Runtime latency (ms, batch 1) of each arch: the fastest of ``passes`` drift-controlled
    passes, alternating direction so that a slow spell does not hit one model's passes alike."""
    from compress.latency.measure import BlockTimer, MeasureSettings, block_artifact, campaign_basis, pick_stats

    settings = MeasureSettings(runtime="onnxruntime", threads=threads, iterations=iterations, warmup=10)
    with BlockTimer(settings) as timer:
        arts = []
        for i, a in enumerate(archs):
            arts.append(
                block_artifact(
                    a.build().eval(), (in_chans, a.resolution, a.resolution), timer.workdir, f"m{i}", settings
                )
            )
        for p in range(passes):
            for i in range(len(archs)) if p % 2 == 0 else range(len(archs) - 1, -1, -1):
                timer.add(f"m{i}#p{p}", arts[i][0], opts=arts[i][1])
        run = timer.finish()
        basis = campaign_basis(run.drift.status)
        ms = {
            a.name: min(
                float(pick_stats(run.items[f"m{i}#p{p}"], basis).estimate(settings.estimator)) for p in range(passes)
            )
            for i, a in enumerate(archs)
        }
    return ms, {
        **run.drift.to_dict(),
        "basis": basis,
        "passes": passes,
        "threads": threads,
        "estimator": settings.estimator,
    }


def closest(target_ms: float, ms: dict[str, float], names: list[str]) -> str:
    """The name whose latency is closest to ``target_ms`` on a log scale (a ratio, not a difference)."""
    return min(names, key=lambda n: abs(math.log(ms[n] / target_ms)))


def search_mid(
    ckpt: Path, *, device: str, quick: bool, seed: int, tables: str | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``compress search`` on ``ckpt`` for ``device`` at the geometric mean of its min and max predicted latency."""
    from compress.latency.predict import LatencyModel
    from compress.search.api import search
    from compress.supernet import SearchSpace
    from compress.supernet.checkpoint import read_checkpoint_header

    space = SearchSpace.from_dict(read_checkpoint_header(ckpt)["space"])
    lat = LatencyModel.load(device=device, space=space, tables=tables, warn=False)
    lo, hi = (float(lat.predict(c)) for c in (space.min_config(), space.max_config()))
    budget = math.sqrt(lo * hi)
    kw: dict[str, Any] = (
        dict(predictor_samples=12, population=8, generations=5, refine=0, calib_images=128, val_images=500)
        if quick
        else dict(predictor_samples=50, population=100, generations=200, refine=2, rerank=5)
    )
    res = search(devices=[device], latency_ms=budget, supernet=ckpt, seed=seed, tables=tables, **kw)
    sel = res.devices[0].selected
    info = {
        "device": device,
        "latency_source": lat.source,
        "budget_ms": budget,
        "predicted_min_ms": lo,
        "predicted_max_ms": hi,
        "predicted_top1": sel.predicted_top1,
        "predicted_latency_ms": sel.predicted_latency_ms,
        "search": {k: v for k, v in kw.items()},
    }
    return sel.config, info


# ---- the benchmark --------------------------------------------------------------------------


def subnet_archs(space: Any, configs: list[tuple[str, dict[str, Any]]], seed: int) -> list[Arch]:
    from compress.supernet.static import build_static

    out = []
    for name, conf in configs:
        cfg = space.config_from_dict(conf)
        cost = space.count(cfg)

        def build(cfg: Any = cfg) -> torch.nn.Module:
            torch.manual_seed(seed)
            return build_static(space, cfg)

        out.append(
            Arch(
                name,
                "subnet",
                int(cfg.resolution),
                build,
                config=cfg.to_dict(),
                info={"params": int(cost.params), "macs": int(cost.macs)},
            )
        )
    return out


def timm_archs(names: list[str], resolutions: list[int], *, in_chans: int, num_classes: int, seed: int) -> list[Arch]:
    out = []
    for n in names:
        for r in resolutions:

            def build(n: str = n) -> torch.nn.Module:
                return timm_model(n, in_chans=in_chans, num_classes=num_classes, seed=seed)

            params = sum(p.numel() for p in build().parameters())
            out.append(Arch(f"{n}@{r}", "timm", r, build, info={"timm": n, "params": int(params)}))
    return out


def run_job(
    arch: Arch, budget: str, steps: int, *, data: Any, recipe: Recipe, args: Any, out: Path, log: Any
) -> dict[str, Any]:
    """Train ``arch`` alone for ``steps`` (resumable) and score it on the test split; cached in ``out/jobs``."""
    name = f"{arch.name}@{budget}"
    done = out / "jobs" / f"{name}.json"
    if done.is_file():
        rec = json.loads(done.read_text())
        if rec.get("steps") == steps and rec.get("seed") == args.seed:
            log(f"  {name}: done before ({rec['top1'] * 100:.2f}%)")
            return rec
    log(f"  {name}: training {steps} steps from scratch at {arch.resolution} px")
    model = arch.build()
    ckpt = out / "ckpt" / f"{name}-s{steps}.pt"
    tr = train_static(
        model,
        train=data.train,
        resolution=arch.resolution,
        steps=steps,
        recipe=recipe,
        seed=args.seed,
        device=args.device,
        ckpt=ckpt,
        checkpoint_every=args.checkpoint_every,
        log=log,
    )
    acc = top1(model, data.test, arch.resolution, device=args.device)
    rec = {"name": name, "arch": arch.name, "budget": budget, "seed": args.seed, "top1": acc, **tr}
    atomic_write_json(done, rec)
    ckpt.unlink(missing_ok=True)
    log(f"  {name}: test top-1 {acc * 100:.2f}% ({tr['wall_s']:.0f} s)")
    return rec


def render_md(res: dict[str, Any]) -> str:
    title = "Supernet subnets vs stand-alone training"
    lines = [f"# {title}" + (" - SMOKE RUN (--quick: tiny budgets, the numbers mean nothing)" if res["quick"] else "")]
    b = res["budget"]
    lines += [
        "",
        f"Supernet `{res['supernet']['path']}` ({res['supernet']['family']}), data {res['data']['name']} "
        f"({res['data']['sizes']['train']} training images), test split {res['data']['sizes']['test']} images. "
        f"Budgets in batch passes of {res['recipe']['batch_size']} images: share = the supernet's {b['steps']} "
        f"optimizer steps, full = its {b['passes']} subnet passes"
        + (f" (scaled down by {b['scale']:g} for this run)" if b.get("scale", 1) != 1 else "")
        + f". Latency: ONNX Runtime, batch 1, {res['latency']['drift']['threads']} thread(s), fastest of "
        f"{res['latency']['drift']['passes']} interleaved passes, drift status `{res['latency']['drift']['status']}`"
        + (
            " (the machine was busy: these latencies are noisy)"
            if res["latency"]["drift"]["status"] == "uncontrolled"
            else ""
        )
        + ". "
        f"Device for training: {res['device']}. One seed ({res['seed']}).",
        "",
        "| model | params | ORT ms | supernet top-1 % | alone@share % | alone@full % | supernet - alone@share |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in res["rows"]:

        def pct(v: float | None) -> str:
            return "-" if v is None else f"{v * 100:.2f}"

        d = row.get("supernet_minus_share")
        lines.append(
            f"| {row['name']} | {row['params']:,} | {row['ms']:.3f} | {pct(row.get('supernet'))} | "
            f"{pct(row.get('share'))} | {pct(row.get('full'))} | {'-' if d is None else f'{d * 100:+.2f}'} |"
        )
    v = res["verdict"]
    lines += [
        "",
        "- every subnet from the supernet at most 0.5 points below the same architecture trained alone at "
        f"equal per-subnet compute: {v['within_half_point']}",
        f"- searched subnet (supernet) beats the timm baseline at equal latency ({res['timm']['picked']}, "
        f"{res['timm']['ms_ratio']:.2f}x the searched subnet's latency): {v['searched_beats_timm']}",
        f"- mid subnet: {res['mid']['how']}",
        "",
    ]
    return "\n".join(lines)


def plot(res: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from compress.core.runs import atomic_write_png

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for key, style, label in (
        ("supernet", "o-", "from the supernet (BN recal.)"),
        ("share", "s--", "alone, per-subnet share"),
        ("full", "^:", "alone, full supernet compute"),
    ):
        pts = [(r["ms"], r[key] * 100) for r in res["rows"] if r["kind"] == "subnet" and r.get(key) is not None]
        if pts:
            ax.plot(*zip(*pts), style, label=label)
    for r in res["rows"]:
        if r["kind"] == "timm":
            for key, m in (("share", "X"), ("full", "P")):
                if r.get(key) is not None:
                    ax.plot(r["ms"], r[key] * 100, m, color="black", label=f"{r['name']} ({key})")
    ax.set_xscale("log")
    ax.set_xlabel("ONNX Runtime latency, ms (batch 1)")
    ax.set_ylabel("test top-1 %")
    ax.set_title("Supernet subnets vs stand-alone" + (" (SMOKE RUN)" if res["quick"] else ""))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_write_png(fig, path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    from compress.core.runs import package_versions
    from compress.data import load_dataset
    from compress.supernet import default_checkpoint_path
    from compress.supernet.checkpoint import read_checkpoint_header

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--supernet", type=Path, default=None, help="checkpoint (default: the embedded one)")
    ap.add_argument("--quick", action="store_true", help="smoke run: tiny budgets, 2 timm candidates")
    ap.add_argument("--mid-subnet", type=Path, default=None, help="a compress search subnet.json instead of searching")
    ap.add_argument("--latency-device", default="local-cpu", help="device profile the mid-budget search targets")
    ap.add_argument("--tables", default=None, help="latency-table directory for the search")
    ap.add_argument("--timm", default=",".join(DEFAULT_TIMM), help="timm baseline candidates (comma-separated)")
    ap.add_argument("--timm-res", default="28,32", help="input sizes tried for each timm candidate")
    ap.add_argument("--threads", type=int, default=1, help="torch and ONNX Runtime threads")
    ap.add_argument("--iterations", type=int, default=50, help="timed runs per latency pass")
    ap.add_argument("--steps", type=int, default=None, help="override the per-subnet share (optimizer steps)")
    ap.add_argument("--passes", type=int, default=None, help="override the full budget (subnet passes)")
    ap.add_argument("--budgets", default="share,full", help="share, full or both")
    ap.add_argument("--train-limit", type=int, default=None, help="override the supernet's training-split size")
    ap.add_argument("--checkpoint-every", type=int, default=200)
    ap.add_argument("--device", default="cpu", help="cpu or cuda, for the stand-alone training")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="work dir (jobs, checkpoints)")
    ap.add_argument("--results", type=Path, default=None, help="where the JSON/md/png go")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = args.out or ROOT / "runs" / ("bench_standalone_quick" if args.quick else "bench_standalone")
    results = args.results or (out if args.quick else ROOT / "benchmarks" / "results" / "standalone")
    out.mkdir(parents=True, exist_ok=True)

    def log(msg: str) -> None:
        print(msg, flush=True)

    ckpt = Path(args.supernet or default_checkpoint_path()).resolve()
    header = read_checkpoint_header(ckpt)
    from compress.supernet import SearchSpace

    space = SearchSpace.from_dict(header["space"])
    dmeta = header.get("data") or {}
    recipe = Recipe.from_config((header.get("recipe") or {}).get("config") or {})
    train_limit = args.train_limit or (2048 if args.quick else dmeta.get("train_limit"))
    data = load_dataset(
        str(dmeta.get("name") or "fashion-mnist"),
        image_size=int(dmeta.get("image_size") or max(space.resolutions)),
        channels=space.in_channels,
        seed=int(dmeta.get("seed") or 0),
        train_limit=train_limit,
    )
    run_train = int((dmeta.get("sizes") or {}).get("train") or len(data.train))
    budget = supernet_budget(header, run_train)
    steps, passes, scale = budget["steps"], budget["passes"], 1.0
    if args.quick:
        scale = 40 / steps
        steps, passes = 40, max(41, round(passes * scale))
    steps, passes = args.steps or steps, args.passes or passes
    budget.update({"share_steps": steps, "full_steps": passes, "scale": scale})
    log(f"supernet {ckpt.name} ({space.family}): {budget['steps']} steps, {budget['passes']} subnet passes")

    # the three subnets: min, searched at a mid budget, max
    if args.mid_subnet:
        doc = json.loads(args.mid_subnet.read_text())
        mid_conf, mid_info = doc.get("config", doc), {"how": f"from {args.mid_subnet}"}
    else:
        log(f"searching a subnet at a mid latency budget for {args.latency_device} ...")
        mid_conf, mid_info = search_mid(
            ckpt, device=args.latency_device, quick=args.quick, seed=args.seed, tables=args.tables
        )
        mid_info["how"] = (
            f"compress search for {args.latency_device} at {mid_info['budget_ms']:.3f} ms "
            f"(geometric mean of the predicted min and max, {mid_info['latency_source']} latency)"
        )
    configs = [("min", space.min_config().to_dict()), ("mid", mid_conf), ("max", space.max_config().to_dict())]
    subnets = subnet_archs(space, configs, args.seed)

    # the supernet's own top-1 for them, exactly as `compress eval` (BN recalibration, test split)
    mid_file = out / "mid.json"
    atomic_write_json(mid_file, {"config": mid_conf})
    sup = compress_eval(
        ckpt,
        data=str(dmeta.get("name") or "fashion-mnist"),
        subnets=f"min,{mid_file},max",
        seed=int(dmeta.get("seed") or 0),
    )
    sup_top1 = dict(zip(("min", "mid", "max"), (r["top1"] for r in sup)))
    log("supernet top-1: " + ", ".join(f"{k} {v * 100:.2f}%" for k, v in sup_top1.items()))

    # latency: the subnets and every timm candidate, interleaved; the baseline is the closest to `mid`
    names = [n for n in args.timm.split(",") if n]
    res_list = [int(r) for r in args.timm_res.split(",") if r]
    if args.quick:
        names, res_list = names[:1] + [n for n in names if n.startswith("resnet")][:1], res_list[:1]
    cands = timm_archs(names, res_list, in_chans=space.in_channels, num_classes=space.num_classes, seed=args.seed)
    log(f"timing {len(subnets)} subnets and {len(cands)} timm candidates (ONNX Runtime, {args.threads} thread) ...")
    ms, drift = measure_ms(
        subnets + cands,
        in_chans=space.in_channels,
        threads=args.threads,
        iterations=20 if args.quick else args.iterations,
    )
    pick = closest(ms["mid"], ms, [c.name for c in cands])
    baseline = next(c for c in cands if c.name == pick)
    log(f"timm baseline: {pick} ({ms[pick]:.3f} ms vs the searched subnet's {ms['mid']:.3f} ms)")

    # stand-alone training: every architecture, both budgets (resumable jobs)
    which = [b for b in args.budgets.split(",") if b]
    jobs: dict[str, dict[str, Any]] = {}
    for arch in [*subnets, baseline]:
        for b in which:
            n = {"share": steps, "full": passes}[b]
            jobs[f"{arch.name}@{b}"] = run_job(arch, b, n, data=data, recipe=recipe, args=args, out=out, log=log)

    rows = []
    for arch in [*subnets, baseline]:
        row: dict[str, Any] = {
            "name": arch.name,
            "kind": arch.kind,
            "resolution": arch.resolution,
            "config": arch.config,
            "ms": ms[arch.name],
            **arch.info,
            "supernet": sup_top1.get(arch.name),
            **{b: jobs[f"{arch.name}@{b}"]["top1"] for b in which},
            "train_wall_s": {b: jobs[f"{arch.name}@{b}"]["wall_s"] for b in which},
        }
        if row["supernet"] is not None and row.get("share") is not None:
            row["supernet_minus_share"] = row["supernet"] - row["share"]
        rows.append(row)
    subs = [r for r in rows if r["kind"] == "subnet"]
    timm_row = rows[-1]
    best_timm = max((timm_row.get(b) or 0.0) for b in which)
    res: dict[str, Any] = {
        "quick": bool(args.quick),
        "smoke_run": bool(args.quick),
        "supernet": {"path": str(ckpt), "family": space.family, "sha256": _sha(ckpt)},
        "data": {**dmeta, "sizes": {"train": len(data.train), "test": len(data.test)}, "train_limit": train_limit},
        "recipe": recipe.__dict__,
        "budget": budget,
        "device": args.device,
        "threads": args.threads,
        "seed": args.seed,
        "mid": mid_info,
        "latency": {"ms": ms, "drift": drift},
        "timm": {"candidates": [c.name for c in cands], "picked": pick, "ms_ratio": ms[pick] / ms["mid"]},
        "rows": rows,
        "verdict": {
            "within_half_point": all(
                r.get("supernet_minus_share") is not None and r["supernet_minus_share"] >= -0.005 for r in subs
            ),
            "searched_beats_timm": sup_top1["mid"] > best_timm,
        },
        "versions": package_versions(),
    }
    results.mkdir(parents=True, exist_ok=True)
    stem = "standalone_quick" if args.quick else "standalone"
    atomic_write_json(results / f"{stem}.json", res)
    atomic_write_text(results / f"{stem}.md", render_md(res))
    plot(res, results / f"{stem}.png")
    log(render_md(res))
    log(f"wrote {results / stem}.json/.md/.png")


def compress_eval(ckpt: Path, *, data: str, subnets: str, seed: int) -> list[dict[str, Any]]:
    """``compress eval CKPT --split test --json`` (BN recalibration per subnet): its rows, in order."""
    import subprocess

    cmd = [sys.executable, "-m", "compress", "eval", str(ckpt), "--data", data, "--split", "test"]
    cmd += ["--subnets", subnets, "--seed", str(seed), "--json"]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if res.returncode != 0:
        raise SystemExit(f"compress eval failed ({res.returncode}): {res.stderr.strip()[-2000:]}")
    doc = json.loads(res.stdout)
    return list(doc["results"] if isinstance(doc, dict) else doc)


def _sha(path: Path) -> str:
    from compress.core.runs import sha256_file

    return sha256_file(path)


if __name__ == "__main__":
    main()
