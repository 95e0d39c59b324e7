"""The one training loop every recipe and process count shares.

Per step: the recipe's plan (subnets, weights, LR, events) -> masked accumulation over the
subnets (:mod:`.steps`) -> one all-reduce of the accumulated gradients -> one SGD step.
Per-step seeds (augmentation, dropout, subnet sampling) derive from (seed, step, index), so a
resumed run repeats an uninterrupted one.
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compress.core import hooks
from compress.core.errors import UsageError
from compress.core.runs import atomic_write_json
from compress.train import distributed, evaluate, net as netapi
from compress.train.checkpoint import Checkpointer, rng_state, set_rng_state
from compress.train.config import TrainConfig
from compress.train.metrics import MetricsLog, plot_curves
from compress.train.recipes import get_recipe
from compress.train.schedule import step_seed

SUPERNET_FILE = "supernet.safetensors"


@dataclass
class TrainResult:
    out: Path
    supernet: Path
    steps: int
    epochs: int
    wall_s: float
    eval: list[dict] = field(default_factory=list)
    resumed_from: int | None = None


def check_inputs(cfg: TrainConfig) -> None:
    """Fail fast with one-line errors (unknown family / dataset) before any heavy work."""
    from compress.core.errors import unknown
    from compress.data import dataset_info

    names = netapi.family_names()
    if cfg.family not in names:
        raise unknown("supernet family", cfg.family, names)
    dataset_info(cfg.data)
    check_device(cfg.device, cfg.nproc)


def check_device(device: str, nproc: int = 1) -> None:
    """``cpu`` or ``cuda`` (one GPU per process); a one-line error when the GPUs are not there."""
    if device == "cpu":
        return
    if device != "cuda":
        raise UsageError(f"--device {device!r} is not supported; use cpu or cuda (rank r takes cuda:r)")
    import torch

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if n == 0:
        raise UsageError("--device cuda: no CUDA GPU is visible to torch here; use --device cpu")
    if nproc > n:
        raise UsageError(
            f"--device cuda --nproc {nproc}: only {n} GPU(s) visible, and NCCL needs one GPU per "
            f"process; use --nproc {n} or --device cpu"
        )


def _deterministic_cuda() -> None:
    """cuDNN/cuBLAS pick run-to-run identical kernels, so a resumed CUDA run equals an uninterrupted one."""
    import torch

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True, warn_only=True)


def _augment(x, seed: int):
    """Random horizontal flip and a shift of up to 2 px (reflect padding), seeded per step."""
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(seed & 0x7FFF_FFFF_FFFF_FFFF)
    n, _, h, w = x.shape
    flip = torch.rand(n, generator=g) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
    xp = F.pad(x, (2, 2, 2, 2), mode="reflect")
    dx, dy = torch.randint(0, 5, (2,), generator=g).tolist()
    return xp[:, :, dy : dy + h, dx : dx + w].contiguous()


def _param_groups(net, wd: float) -> list[dict]:
    decay = [p for n, p in net.named_parameters() if p.ndim > 1]
    no = [p for n, p in net.named_parameters() if p.ndim <= 1]
    return [{"params": decay, "weight_decay": wd}, {"params": no, "weight_decay": 0.0}]


def prepare(cfg: TrainConfig):
    """Space, data and a fresh supernet for ``cfg`` (also used by the benchmarks)."""
    from compress.data import dataset_info, load_dataset
    from compress.supernet import get_space

    info = dataset_info(cfg.data)
    base = get_space(cfg.family)
    size = netapi.data_size(base, info.native_size or 32, cfg.image_size)
    space = netapi.get_space(
        cfg.family,
        num_classes=info.num_classes,
        in_channels=info.channels,
        image_size=cfg.image_size,
        overrides=cfg.space,
    )
    data = load_dataset(
        cfg.data,
        image_size=size,
        channels=info.channels,
        seed=cfg.seed,
        train_limit=cfg.train_limit,
        calib_size=cfg.calib_size,
    )
    return space, data


def train(cfg: TrainConfig, *, resume: bool = False, progress: bool = True) -> TrainResult:
    """Train a supernet as ``cfg`` says; see the module docstring. Returns where the results are.

    The run directory ``cfg.out`` is locked for the run (a second writer is refused, exit 2) and
    the temp files a killed run left there (``checkpoints/.step-*.pt.*.tmp``) are removed first.
    Workers of ``compress train --nproc K`` leave the lock to their launcher; under a plain
    ``torchrun`` rank 0 takes it.
    """
    from compress.core.runs import run_dir_lock

    check_inputs(cfg)
    if os.environ.get(distributed.LAUNCHED_ENV) == "1" or int(os.environ.get("RANK", "0") or 0) != 0:
        return _train(cfg, resume=resume, progress=progress)
    with run_dir_lock(cfg.out, command="compress train" + (" --resume" if resume else "")):
        return _train(cfg, resume=resume, progress=progress)


def _train(cfg: TrainConfig, *, resume: bool, progress: bool) -> TrainResult:
    import torch

    from compress.data import Batches

    check_inputs(cfg)
    if cfg.device == "cuda" and cfg.deterministic:
        _deterministic_cuda()
    d = distributed.init(cfg.device)
    t0 = time.perf_counter()
    out = Path(cfg.out)
    space, data = prepare(cfg)
    gb = cfg.batch_size * d.world
    batches_per_epoch = len(data.train) // gb
    if batches_per_epoch < 1:
        raise UsageError(
            f"the training split has {len(data.train)} images, fewer than one global batch of {gb}; lower --batch-size"
        )
    total = cfg.epochs * batches_per_epoch
    stop = min(total, cfg.max_steps or total)
    eta0 = cfg.base_lr * d.world
    recipe = get_recipe(cfg.recipe)(cfg, space, steps_per_epoch=batches_per_epoch, total_steps=total, eta0=eta0)

    torch.manual_seed(cfg.seed)
    net = netapi.build(space, seed=cfg.seed).to(d.device)
    opt = torch.optim.SGD(
        _param_groups(net, cfg.weight_decay), lr=eta0, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0
    )
    ck = Checkpointer(out, keep=cfg.keep_checkpoints)
    log = MetricsLog(out / "metrics.jsonl", enabled=d.main)
    state: dict[str, Any] = {"step": 0, "epoch": 0, "batch": 0, "passes": 0, "flags": {}}
    teacher = None
    resumed_from = None
    if d.main:
        out.mkdir(parents=True, exist_ok=True)
    if ck.latest() is not None and not (resume or d.restart > 0):
        raise UsageError(f"{out} already holds checkpoints; pass --resume to continue or choose another --out")
    if resume or d.restart > 0:
        saved = ck.load()
        if saved is not None:
            net.load_state_dict(saved["model"])
            opt.load_state_dict(saved["optimizer"])
            state = {k: saved["state"][k] for k in ("step", "epoch", "batch")} | {
                "flags": dict(saved["state"]["flags"])
            }
            state["passes"] = int(saved["state"].get("passes", 0))
            if saved.get("teacher") is not None:
                teacher = copy.deepcopy(net)
                teacher.load_state_dict(saved["teacher"])
                teacher.set_active(space.max_config())
                teacher.eval()
            set_rng_state(saved["rng"])
            resumed_from = state["step"]
            log.truncate(state["step"])
    distributed.broadcast_state(net)

    def save_ckpt() -> None:
        distributed.broadcast_state(net)  # buffers (BN running stats) from rank 0, on every rank alike
        if d.main:
            ck.save(
                {
                    "model": net.state_dict(),
                    "optimizer": opt.state_dict(),
                    "teacher": teacher.state_dict() if teacher is not None else None,
                    "state": {k: state[k] for k in ("step", "epoch", "batch", "passes")} | {"flags": state["flags"]},
                    "rng": rng_state(),
                    "config": cfg.model_dump_json(),
                },
                state["step"],
            )
        distributed.barrier()

    eval_s = [0.0]

    def run_eval(split_name: str = "val", extra: int = 0) -> list[dict]:
        te = time.perf_counter()
        try:
            return _eval(split_name, extra)
        finally:
            eval_s[0] += time.perf_counter() - te

    def _eval(split_name: str, extra: int) -> list[dict]:
        cfgs = [("min", recipe.min_cfg()), ("max", space.max_config())]
        if extra:
            cfgs += evaluate.parse_subnets(f"random:{extra}", space, seed=cfg.seed, kernel=recipe.kernel)[:extra]
        return evaluate.eval_subnets(net, space, cfgs, split=data.split(split_name), calib=data.calib)

    bar = _Progress(enabled=progress and d.main, total=stop, start=state["step"])
    net.train()
    try:
        while state["step"] < stop and state["epoch"] < cfg.epochs:
            epoch = state["epoch"]
            it = Batches(
                data.train,
                batch_size=gb,
                shuffle=True,
                seed=cfg.seed,
                epoch=epoch,
                drop_last=True,
                start=state["batch"],
            )
            for x, y in it:
                t = state["step"]
                if t >= stop:
                    break
                hooks.fire("train.step", step=t, rank=d.rank, restart=d.restart)  # test seam (compress.core.hooks)
                plan = recipe.plan(t, state["flags"])
                for ev in plan.events:
                    if ev == "reorganize":
                        netapi.reorganize(net)
                        opt.state.clear()  # momentum buffers no longer line up with permuted channels
                        state["flags"]["reorganized"] = True
                    elif ev == "snapshot-teacher":
                        distributed.broadcast_state(net)
                        teacher = copy.deepcopy(net)
                        teacher.set_active(space.max_config())
                        teacher.eval()
                        state["flags"]["teacher"] = True
                if cfg.augment:
                    x = _augment(x, step_seed(cfg.seed, t, -1))
                x = x[d.rank * cfg.batch_size : (d.rank + 1) * cfg.batch_size].to(d.device)
                y = y[d.rank * cfg.batch_size : (d.rank + 1) * cfg.batch_size].to(d.device)
                torch.manual_seed(step_seed(cfg.seed, t, -100 - d.rank))  # dropout etc.
                grads, losses = _run(net, plan, x, y, cfg, teacher if plan.use_teacher else None)
                distributed.all_reduce_mean(list(grads.values()), d.world)
                for n, p in net.named_parameters():
                    p.grad = grads.get(n)
                for g in opt.param_groups:
                    g["lr"] = plan.lr
                opt.step()
                opt.zero_grad(set_to_none=True)
                state["step"] += 1
                state["batch"] += 1
                state["passes"] += len(plan.terms)  # subnet forward/backward passes (compute units)
                if state["step"] % cfg.log_every == 0 or state["step"] == stop:
                    log.write(
                        {
                            "kind": "train",
                            "step": state["step"],
                            "epoch": epoch,
                            "phase": plan.phase,
                            "passes": state["passes"],
                            "lr": plan.lr,
                            "beta": plan.beta,
                            "loss": losses,
                        }
                    )
                bar.update(state["step"], losses, plan)
                if state["step"] % cfg.checkpoint_every == 0:
                    save_ckpt()
            else:
                state["epoch"] += 1
                state["batch"] = 0
                if (
                    d.main
                    and cfg.eval_every_epochs
                    and state["epoch"] % cfg.eval_every_epochs == 0
                    and state["epoch"] < cfg.epochs
                ):
                    rows = run_eval("val", cfg.eval_subnets)
                    log.write(
                        {
                            "kind": "eval",
                            "step": state["step"],
                            "epoch": state["epoch"],
                            "split": "val",
                            "passes": state["passes"],
                            "train_s": time.perf_counter() - t0 - eval_s[0],
                            "top1": {r["name"]: r["top1"] for r in rows},
                        }
                    )
                if d.main:
                    plot_curves(log.records(), out / "curves.png", title=f"{cfg.family} / {cfg.recipe} on {cfg.data}")
                save_ckpt()
                continue
            break
    finally:
        bar.close()
    if state["batch"] and state["step"] % cfg.checkpoint_every:
        save_ckpt()
    rows: list[dict] = []
    sup = out / SUPERNET_FILE
    if d.main:
        rows = run_eval("val", cfg.eval_subnets)
        log.write(
            {
                "kind": "eval",
                "step": state["step"],
                "epoch": state["epoch"],
                "split": "val",
                "passes": state["passes"],
                "train_s": time.perf_counter() - t0 - eval_s[0],
                "top1": {r["name"]: r["top1"] for r in rows},
            }
        )
        wall = time.perf_counter() - t0
        meta = {
            "recipe": {
                "name": cfg.recipe,
                "strategy": cfg.strategy,
                "epochs": cfg.epochs,
                "steps": state["step"],
                "world_size": d.world,
                "seed": cfg.seed,
                "config": cfg.model_dump(mode="json"),
            },
            "data": data.meta,
            "metrics": {"val": rows},
            "training": {"wall_s": round(wall, 1), "resumed_from": resumed_from},
        }
        netapi.save(net, sup, meta=meta, fp16=cfg.save_dtype == "float16")
        plot_curves(log.records(), out / "curves.png", title=f"{cfg.family} / {cfg.recipe} on {cfg.data}")
        atomic_write_json(
            out / "result.json",
            {
                "supernet": str(sup),
                "steps": state["step"],
                "epochs": state["epoch"],
                "passes": state["passes"],
                "bytes_sent_per_step_per_rank": distributed.SENT["bytes"] / max(1, state["step"] - (resumed_from or 0)),
                "wall_s": round(wall, 1),
                "resumed_from": resumed_from,
                "val": rows,
            },
        )
    distributed.barrier()
    return TrainResult(out, sup, state["step"], state["epoch"], time.perf_counter() - t0, rows, resumed_from)


def _run(net, plan, x, y, cfg: TrainConfig, teacher):
    from compress.train.steps import run_terms

    return run_terms(
        net,
        net.set_active,
        plan.terms,
        x,
        y,
        micro=cfg.accum_steps,
        label_smoothing=cfg.label_smoothing,
        inplace_kd=cfg.inplace_distillation and teacher is None,
        temperature=cfg.temperature,
        aggregation=cfg.aggregation,
        active_masks=lambda: netapi.active_masks(net),
        teacher=teacher,
        kd_ratio=cfg.kd_ratio if teacher is not None else 0.0,
        forward=netapi.forward,
    )


class _Progress:
    """rich progress on stderr with loss, LR and β (rank 0 only)."""

    def __init__(self, *, enabled: bool, total: int, start: int) -> None:
        self.p = None
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.p = Progress(
            TextColumn("train"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=Console(stderr=True),
            transient=False,
        )
        self.task = self.p.add_task("train", total=total, completed=start, info="")
        self.p.start()

    def update(self, step: int, losses: dict, plan) -> None:
        if self.p is None:
            return
        loss = losses.get("max", next(iter(losses.values()), float("nan")))
        self.p.update(
            self.task, completed=step, info=f"{plan.phase} loss {loss:.3f} lr {plan.lr:.4f} β {plan.beta:.3f}"
        )

    def close(self) -> None:
        if self.p is not None:
            self.p.stop()
