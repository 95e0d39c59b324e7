"""FTWT training (ALGORITHMS.md §4.3): CE + w_mask * mask BCE, cooldown, two optimisers, resume.

``L = CE + w_mask * (1/L) * sum_l sum_c mean_batch BCEWithLogits(P^l_c, g^l_c)``; ``w_mask`` is on
for epochs ``e < int(cooldown * epochs)`` and 0 afterwards, as in the released code. The backbone
uses SGD (momentum 0.9, wd 5e-4 on every backbone parameter) with a per-step cosine (the released
code's choice for MobileNetV2; the default here) or the released code's step schedule
(``schedule="step"``: x0.1 at 81/200, 122/200 and 151/200 of the epochs, per epoch); the
predictors SGD at ``mlr`` (momentum 0.9, wd 0, no schedule). The same loop (without gates) pre-trains baselines and fine-tunes
the static L1 baseline.

Deviations from the released code, on purpose:
- with ``int(cooldown * epochs) == 0`` (e.g. one epoch) the released code never trains the
  predictors; here the mask loss is then on for the first epoch, so short runs still learn masks;
- after the cooldown the released code keeps stepping the predictor optimiser with zero gradients,
  so momentum moves the predictors for a few more steps; here the predictor optimiser stops;
- the default backbone schedule is cosine, not step: the released steps are placed for 200 epochs,
  and at the few epochs run here they collapse (3 epochs: x0.01 after the first epoch; 1 epoch:
  x0.001 from the start). ``schedule="step"`` gives them, with no milestone before epoch 1.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from compress.core.errors import UsageError
from compress.core.runs import atomic_path, sha256_json
from compress.data import Batches, Split
from compress.nn.evaluate import top1
from compress.prune.ftwt import DEFAULT_MASS
from compress.prune.ftwt.wrap import backbone_parameters, configure, iter_gates, predictor_parameters


@dataclass
class FtwtTrainConfig:
    """Settings of FTWT's trainer (gate training, and the same loop without gates for baselines)."""

    epochs: int
    mass: float = DEFAULT_MASS
    lr: float = 0.01
    mlr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 128
    cooldown: float = 0.5
    w_mask: float = 1.0
    augment: bool = False
    seed: int = 0
    schedule: str = "cosine"


STEP_MILESTONES = (81 / 200, 122 / 200, 151 / 200)  # the released CIFAR job scripts' steps over 200 epochs
STEP_GAMMA = 0.1
SCHEDULES = ("step", "cosine")


def mask_epochs(cfg: FtwtTrainConfig) -> int:
    """Epochs with the mask loss on: ``int(cooldown * epochs)`` (released code), at least 1 when
    ``cooldown > 0`` (deviation: see the module docstring)."""
    n = int(cfg.cooldown * cfg.epochs)
    return max(n, 1) if cfg.cooldown > 0 else 0


def mask_weight(epoch: int, cfg: FtwtTrainConfig) -> float:
    """``w_mask`` for 0-based ``epoch``: on while ``epoch < mask_epochs(cfg)``, then 0."""
    return cfg.w_mask if epoch < mask_epochs(cfg) else 0.0


def backbone_lr(cfg: FtwtTrainConfig, epoch: int, step: int, total_steps: int) -> float:
    """Backbone learning rate: the released step schedule (per epoch) or cosine (per step)."""
    if cfg.schedule == "cosine":
        from compress.train.schedule import cosine_lr

        return cosine_lr(step, max(total_steps, 1), cfg.lr)
    drops = sum(1 for f in STEP_MILESTONES if epoch >= max(1, int(f * cfg.epochs)))
    return cfg.lr * STEP_GAMMA**drops


def mask_loss(model: nn.Module) -> torch.Tensor | None:
    """BCE of every gate's last logits against its mass labels: mean over batch, sum over filters,
    mean over layers. ``None`` when no gate collected anything."""
    terms = [
        F.binary_cross_entropy_with_logits(g.last_logits, g.last_labels, reduction="none").mean(0).sum()
        for _, g in iter_gates(model)
        if g.last_logits is not None
    ]
    return torch.stack(terms).mean() if terms else None


def train(
    model: nn.Module,
    train_split: Split,
    *,
    cfg: FtwtTrainConfig,
    checkpoint: str | Path | None = None,
    progress: bool = True,
    desc: str = "train",
    val: Split | None = None,
    log: Callable[[str], None] | None = None,
    stop_after: int | None = None,
) -> list[dict[str, Any]]:
    """Train ``model`` in place; returns the per-epoch history.

    With ``checkpoint`` set, the state after every epoch is written there atomically and a later call
    with the same config resumes after the last finished epoch (a checkpoint made with a different
    config is refused). Gated models get the FTWT mask loss; others plain CE. ``stop_after`` ends
    the run after that many epochs of the ``cfg.epochs`` schedule (a compute cap: the schedule is
    unchanged and a later call without it resumes to the end).
    """
    log = log or (lambda s: print(s, file=sys.stderr))
    if cfg.schedule not in SCHEDULES:
        raise UsageError(f"schedule must be one of {', '.join(SCHEDULES)}, got {cfg.schedule!r}")
    torch.manual_seed(cfg.seed)
    gated = any(True for _ in iter_gates(model))
    opt_b = torch.optim.SGD(backbone_parameters(model), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    opt_p = (
        torch.optim.SGD(predictor_parameters(model), lr=cfg.mlr, momentum=cfg.momentum, weight_decay=0.0)
        if gated
        else None
    )
    fingerprint = sha256_json(
        {
            "cfg": asdict(cfg),
            "n": len(train_split),
            "gated": gated,
            "params": [list(p.shape) for p in model.parameters()],
        }
    )[:16]
    ckpt = Path(checkpoint) if checkpoint else None
    start, history = _resume(ckpt, fingerprint, model, opt_b, opt_p)
    if start:
        log(f"{desc}: resuming after epoch {start}/{cfg.epochs} from {ckpt}")
    configure(model, mass=cfg.mass)
    for epoch in range(start, min(cfg.epochs, stop_after or cfg.epochs)):
        w = mask_weight(epoch, cfg) if gated else 0.0
        rec = {"epoch": epoch + 1, "w_mask": w}
        rec |= _run_epoch(model, train_split, cfg, epoch, (opt_b, opt_p), w, progress=progress, desc=desc)
        if val is not None:
            rec["val_acc"] = top1(model, val.images, val.labels, batch_size=512)
        history.append(rec)
        log(
            f"{desc} epoch {epoch + 1}/{cfg.epochs}: "
            + ", ".join(f"{k}={v:.4f}" for k, v in rec.items() if isinstance(v, float))
        )
        if ckpt is not None:
            state = {"fingerprint": fingerprint, "epoch": epoch + 1, "model": model.state_dict()}
            state |= {"opt_b": opt_b.state_dict(), "opt_p": opt_p.state_dict() if opt_p is not None else {}}
            with atomic_path(ckpt) as tmp:
                torch.save({**state, "history": history}, tmp)
    model.eval()
    return history


def _resume(
    ckpt: Path | None, fingerprint: str, model: nn.Module, opt_b: torch.optim.Optimizer, opt_p: Any
) -> tuple[int, list[dict[str, Any]]]:
    """Load the state of a previous run with the same fingerprint: ``(epochs done, history)``."""
    if ckpt is None or not ckpt.is_file():
        return 0, []
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many types for bad files
        raise UsageError(
            f"{ckpt}: cannot read the training checkpoint ({str(err).splitlines()[0]}); delete it to start over"
        ) from None
    if state.get("fingerprint") != fingerprint:
        raise UsageError(f"{ckpt} was written by a run with different settings; use another --out or delete it")
    model.load_state_dict(state["model"])
    opt_b.load_state_dict(state["opt_b"])
    if opt_p is not None:
        opt_p.load_state_dict(state["opt_p"])
    return int(state["epoch"]), list(state["history"])


def _run_epoch(
    model: nn.Module,
    train_split: Split,
    cfg: FtwtTrainConfig,
    epoch: int,
    opts: tuple[torch.optim.Optimizer, torch.optim.Optimizer | None],
    w: float,
    *,
    progress: bool,
    desc: str,
) -> dict[str, float]:
    """One epoch: CE (+ ``w`` x mask BCE while ``w > 0``); the predictor optimiser steps only then."""
    opt_b, opt_p = opts
    gated = opt_p is not None
    configure(model, collect=gated and w > 0)
    model.train()
    steps_per_epoch = len(Batches(train_split, batch_size=cfg.batch_size, drop_last=True))
    total = steps_per_epoch * cfg.epochs
    sums = {"ce": 0.0, "mask": 0.0, "acc": 0.0, "n": 0}
    batches = Batches(
        train_split, batch_size=cfg.batch_size, seed=cfg.seed, epoch=epoch, augment=cfg.augment, drop_last=True
    )
    for b, (x, y) in enumerate(_progress(batches, progress, f"{desc} epoch {epoch + 1}/{cfg.epochs}")):
        for group in opt_b.param_groups:
            group["lr"] = backbone_lr(cfg, epoch, epoch * steps_per_epoch + b, total)
        out = model(x)
        ce = F.cross_entropy(out, y)
        ml = mask_loss(model) if w > 0 else None
        loss = ce + w * ml if ml is not None else ce
        opt_b.zero_grad(set_to_none=True)
        if opt_p is not None:
            opt_p.zero_grad(set_to_none=True)
        loss.backward()
        opt_b.step()
        if opt_p is not None and w > 0:
            opt_p.step()
        n = int(y.shape[0])
        sums["ce"] += float(ce.detach()) * n
        sums["mask"] += float(ml.detach()) * n if ml is not None else 0.0
        sums["acc"] += float((out.argmax(1) == y).sum())
        sums["n"] += n
    configure(model, collect=False)
    n = max(sums["n"], 1)
    return {"ce": sums["ce"] / n, "mask_loss": sums["mask"] / n, "train_acc": sums["acc"] / n}


def _progress(batches: Batches, enabled: bool, desc: str):
    if not enabled:
        return batches
    from rich.progress import track

    return track(
        batches,
        description=desc,
        total=len(batches),
        transient=True,
        console=__import__("rich.console", fromlist=["Console"]).Console(stderr=True),
    )
