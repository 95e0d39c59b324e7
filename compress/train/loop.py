"""The one training loop every recipe and process count shares.

Per step: the recipe's plan (subnets, weights, LR, events) -> masked accumulation over the
subnets (:mod:`.steps`) -> one all-reduce of the accumulated gradients -> one SGD step.
Per-step seeds (augmentation, dropout, subnet sampling) derive from (seed, step, index), so a
resumed run repeats an uninterrupted one. Data, resume, checkpoints, metrics and the final files
are :mod:`compress.train.core`'s, shared with IST.
"""

from __future__ import annotations

import copy
import os
import time
from typing import Any

from compress.core import hooks
from compress.train import distributed, evaluate, net as netapi
from compress.train.checkpoint import set_rng_state
from compress.train.config import TrainConfig
from compress.train.core import (
    SUPERNET_FILE,
    TrainResult,
    TrainRun,
    augment,
    check_device,
    check_inputs,
    deterministic_cuda,
    prepare,
    sgd,
)
from compress.train.recipes import get_recipe
from compress.train.schedule import step_seed

__all__ = ["SUPERNET_FILE", "TrainResult", "check_device", "check_inputs", "prepare", "train"]


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
    check_inputs(cfg)
    if cfg.device == "cuda" and cfg.deterministic:
        deterministic_cuda()
    d = distributed.init(cfg.device)
    run = TrainRun.start(cfg, d, t0=time.perf_counter())
    loop = _Loop(run, resume=resume)
    loop.fit(progress=progress)
    return loop.finish()


class _Loop:
    """The data-parallel loop of one :class:`~compress.train.core.TrainRun` (module docstring)."""

    def __init__(self, run: TrainRun, *, resume: bool) -> None:
        import torch

        cfg, d = run.cfg, run.d
        self.run, self.cfg, self.d = run, cfg, d
        eta0 = cfg.base_lr * d.world
        self.recipe = get_recipe(cfg.recipe)(
            cfg, run.space, steps_per_epoch=run.steps_per_epoch, total_steps=run.total, eta0=eta0
        )
        torch.manual_seed(cfg.seed)
        self.net = netapi.build(run.space, seed=cfg.seed).to(d.device)
        self.opt = sgd(self.net, cfg, eta0)
        self.state: dict[str, Any] = {"step": 0, "epoch": 0, "batch": 0, "passes": 0, "flags": {}}
        self.teacher = None
        saved = run.load_checkpoint(resume)
        if saved is not None:
            self._restore(saved)
        distributed.broadcast_state(self.net, sent=d.sent)
        self.title = f"{cfg.family} / {cfg.recipe} on {cfg.data}"

    def _restore(self, saved: dict[str, Any]) -> None:
        """Model, optimiser, loop position, teacher and RNG states of a checkpoint."""
        self.net.load_state_dict(saved["model"])
        self.opt.load_state_dict(saved["optimizer"])
        st = saved["state"]
        self.state = {k: st[k] for k in ("step", "epoch", "batch")} | {"flags": dict(st["flags"])}
        self.state["passes"] = int(st.get("passes", 0))
        if saved.get("teacher") is not None:
            self.teacher = copy.deepcopy(self.net)
            self.teacher.load_state_dict(saved["teacher"])
            self.teacher.set_active(self.run.space.max_config())
            self.teacher.eval()
        set_rng_state(saved["rng"])

    def save(self) -> None:
        """A checkpoint of the current step (buffers first made equal on every rank)."""
        distributed.broadcast_state(self.net, sent=self.d.sent)  # BN running stats from rank 0
        st = self.state
        self.run.save_checkpoint(
            {
                "model": self.net.state_dict(),
                "optimizer": self.opt.state_dict(),
                "teacher": self.teacher.state_dict() if self.teacher is not None else None,
                "state": {k: st[k] for k in ("step", "epoch", "batch", "passes")} | {"flags": st["flags"]},
            },
            st["step"],
        )

    def evaluate(self) -> list[dict]:
        """Min, max and ``eval_subnets`` random subnets on the validation split, logged to the metrics."""
        cfg = self.cfg
        cfgs = [("min", self.recipe.min_cfg()), ("max", self.run.space.max_config())]
        if cfg.eval_subnets:
            extra = evaluate.parse_subnets(
                f"random:{cfg.eval_subnets}", self.run.space, seed=cfg.seed, kernel=self.recipe.kernel
            )
            cfgs += extra[: cfg.eval_subnets]
        rows = self.run.evaluate(self.net, cfgs)
        self.run.log_eval(rows, step=self.state["step"], epoch=self.state["epoch"], passes=self.state["passes"])
        return rows

    def fit(self, *, progress: bool) -> None:
        """Epochs until ``stop`` steps; a last checkpoint when the run stops inside an epoch."""
        run, state = self.run, self.state
        bar = _Progress(enabled=progress and self.d.main, total=run.stop, start=state["step"])
        self.net.train()
        try:
            while state["step"] < run.stop and state["epoch"] < self.cfg.epochs:
                if not self._epoch(bar):
                    break
        finally:
            bar.close()
        if state["batch"] and state["step"] % self.cfg.checkpoint_every:
            self.save()

    def _epoch(self, bar: _Progress) -> bool:
        """The rest of the current epoch; False when ``stop`` came first (no epoch end then)."""
        from compress.data import Batches

        cfg, state = self.cfg, self.state
        batches = Batches(
            self.run.data.train,
            batch_size=self.run.global_batch,
            shuffle=True,
            seed=cfg.seed,
            epoch=state["epoch"],
            drop_last=True,
            start=state["batch"],
        )
        for x, y in batches:
            if state["step"] >= self.run.stop:
                return False
            self._step(x, y, bar)
        self._end_epoch()
        return True

    def _events(self, events: list[str]) -> None:
        for ev in events:
            if ev == "reorganize":
                netapi.reorganize(self.net)
                self.opt.state.clear()  # momentum buffers no longer line up with permuted channels
                self.state["flags"]["reorganized"] = True
            elif ev == "snapshot-teacher":
                distributed.broadcast_state(self.net, sent=self.d.sent)
                self.teacher = copy.deepcopy(self.net)
                self.teacher.set_active(self.run.space.max_config())
                self.teacher.eval()
                self.state["flags"]["teacher"] = True

    def _step(self, x, y, bar: _Progress) -> None:
        """One optimisation step on this rank's slice of the global batch ``x, y``."""
        import torch

        cfg, d, state = self.cfg, self.d, self.state
        t = state["step"]
        hooks.fire("train.step", step=t, rank=d.rank, restart=d.restart)  # test seam (compress.core.hooks)
        plan = self.recipe.plan(t, state["flags"])
        self._events(plan.events)
        if cfg.augment:
            x = augment(x, step_seed(cfg.seed, t, -1))
        x = x[d.rank * cfg.batch_size : (d.rank + 1) * cfg.batch_size].to(d.device)
        y = y[d.rank * cfg.batch_size : (d.rank + 1) * cfg.batch_size].to(d.device)
        torch.manual_seed(step_seed(cfg.seed, t, -100 - d.rank))  # dropout etc.
        grads, losses = _run(self.net, plan, x, y, cfg, self.teacher if plan.use_teacher else None)
        distributed.all_reduce_mean(list(grads.values()), d.world, sent=d.sent)
        for n, p in self.net.named_parameters():
            p.grad = grads.get(n)
        for g in self.opt.param_groups:
            g["lr"] = plan.lr
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        state["step"] += 1
        state["batch"] += 1
        state["passes"] += len(plan.terms)  # subnet forward/backward passes (compute units)
        if state["step"] % cfg.log_every == 0 or state["step"] == self.run.stop:
            self.run.log.write(
                {
                    "kind": "train",
                    "step": state["step"],
                    "epoch": state["epoch"],
                    "phase": plan.phase,
                    "passes": state["passes"],
                    "lr": plan.lr,
                    "beta": plan.beta,
                    "loss": losses,
                }
            )
        bar.update(state["step"], losses, plan)
        if state["step"] % cfg.checkpoint_every == 0:
            self.save()

    def _end_epoch(self) -> None:
        """Epoch bookkeeping, the periodic evaluation (rank 0), the curves and a checkpoint."""
        cfg, state = self.cfg, self.state
        state["epoch"] += 1
        state["batch"] = 0
        every = cfg.eval_every_epochs
        if self.d.main and every and state["epoch"] % every == 0 and state["epoch"] < cfg.epochs:
            self.evaluate()
        if self.d.main:
            self.run.plot(self.title)
        self.save()

    def finish(self) -> TrainResult:
        """Rank 0 evaluates and writes the supernet, curves and ``result.json``; every rank returns."""
        run, cfg, state = self.run, self.cfg, self.state
        rows: list[dict] = []
        sup = run.out / SUPERNET_FILE
        if self.d.main:
            rows = self.evaluate()
            wall = time.perf_counter() - run.t0
            recipe = {
                "name": cfg.recipe,
                "strategy": cfg.strategy,
                "epochs": cfg.epochs,
                "steps": state["step"],
                "world_size": self.d.world,
                "seed": cfg.seed,
                "config": cfg.model_dump(mode="json"),
            }
            result = {
                "steps": state["step"],
                "epochs": state["epoch"],
                "passes": state["passes"],
                "bytes_sent_per_step_per_rank": self.d.sent.bytes / max(1, state["step"] - (run.resumed_from or 0)),
                "wall_s": round(wall, 1),
                "resumed_from": run.resumed_from,
                "val": rows,
            }
            training = {"wall_s": round(wall, 1), "resumed_from": run.resumed_from}
            sup = run.write_outputs(self.net, rows, recipe=recipe, training=training, result=result, title=self.title)
        distributed.barrier()
        return TrainResult(
            run.out, sup, state["step"], state["epoch"], time.perf_counter() - run.t0, rows, run.resumed_from
        )


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
