"""UPDP stage 3: progressive training (λ from 0 to 1 with KD from the unpruned model, then λ = 1).

Defaults [R, ALGORITHMS §1.7]: λ ramps linearly per iteration over the first ``ramp_share`` (40 %)
of the steps (``cosine`` and per-epoch ``step`` ramps are available), then stays at 1. Loss:
``(1 − kd_weight)·CE(label smoothing 0.1) + kd_weight·T²·KL(teacher ‖ student)`` with T = 1 and
``kd_weight`` 0.5; AdamW (lr 1e-3, wd 0.05) with a cosine learning rate. The teacher is the
unpruned model, frozen in eval mode. Each epoch ends with a checkpoint (``ckpt.safetensors`` +
``ckpt.json``) in ``ckpt_dir`` when given, and a run resumes from it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from compress.core.errors import UsageError
from compress.prune.updp.linearize import set_lambda
from compress.train.checkpoint import EpochCheckpoint
from compress.train.schedule import cosine_factor

SCHEDULES = ("linear", "cosine", "step", "constant")


def lambda_at(
    step: int, total: int, *, ramp_share: float = 0.4, schedule: str = "linear", steps_per_epoch: int = 1
) -> float:
    """λ after ``step`` of ``total`` steps.

    ``linear``: ``min(1, step / T_p)`` with ``T_p = ramp_share·total``; ``cosine``:
    ``(1 − cos(π·min(1, step/T_p)))/2``; ``step``: λ rises once per epoch (``floor`` of the linear ramp at
    epoch boundaries); ``constant``: λ = 1 from the start (the "no progressive schedule" baseline).

    >>> [round(lambda_at(s, 10, ramp_share=0.5), 2) for s in (0, 1, 5, 9)]
    [0.0, 0.2, 1.0, 1.0]
    """
    if schedule not in SCHEDULES:
        raise UsageError(f"unknown λ schedule '{schedule}'; choose one of: {', '.join(SCHEDULES)}")
    if not 0.0 <= ramp_share <= 1.0:
        raise UsageError(f"ramp share must be in [0, 1], got {ramp_share}")
    if schedule == "constant" or ramp_share == 0.0 or total <= 0:
        return 1.0
    tp = ramp_share * total
    if schedule == "step":
        epoch_start = (step // max(1, steps_per_epoch)) * max(1, steps_per_epoch)
        return min(1.0, epoch_start / tp)
    r = min(1.0, step / tp)
    return r if schedule == "linear" else 0.5 * (1.0 - math.cos(math.pi * r))


@dataclass
class ProgressiveConfig:
    """Settings of UPDP's progressive training (stage 3); see the module docstring for the defaults' sources."""

    epochs: int = 1
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    ramp_share: float = 0.4
    schedule: str = "linear"
    kd_weight: float = 0.5
    temperature: float = 1.0
    label_smoothing: float = 0.1
    augment: bool = False
    seed: int = 0
    max_steps: int | None = None


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``T²·KL(softmax(t/T) ‖ softmax(s/T))`` averaged over the batch."""
    t = temperature
    return (
        F.kl_div(
            F.log_softmax(student_logits / t, 1),
            F.log_softmax(teacher_logits / t, 1),
            reduction="batchmean",
            log_target=True,
        )
        * t
        * t
    )


def train_progressive(
    student: nn.Module,
    teacher: nn.Module | None,
    train_split,
    *,
    config: ProgressiveConfig,
    ckpt_dir: str | Path | None = None,
    progress: Callable[[int, int, dict], None] | None = None,
) -> dict:
    """Train ``student`` (with pruned blocks) in place; returns a summary with the λ trace."""
    from compress.data import Batches

    cfg = config
    if cfg.schedule not in SCHEDULES:
        raise UsageError(f"unknown λ schedule '{cfg.schedule}'; choose one of: {', '.join(SCHEDULES)}")
    if cfg.epochs < 0:
        raise UsageError(f"epochs must be >= 0, got {cfg.epochs}")
    torch.manual_seed(cfg.seed)
    steps_per_epoch = len(Batches(train_split, batch_size=cfg.batch_size, drop_last=True)) or 1
    total = cfg.epochs * steps_per_epoch
    if cfg.max_steps is not None:
        total = min(total, cfg.max_steps)
    opt = torch.optim.AdamW(
        [p for p in student.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=cfg.weight_decay
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_factor(s, total))
    if teacher is not None:
        teacher.eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
    start_epoch, step, trace = 0, 0, []
    ck = EpochCheckpoint(ckpt_dir, settings=asdict(cfg)) if ckpt_dir else None
    if ck is not None and ck.exists():
        rec, states = ck.load(student)
        opt.load_state_dict(states["opt"])
        sched.load_state_dict(states["sched"])
        start_epoch, step, trace = int(rec["epoch"]), int(rec["step"]), list(rec["trace"])
    losses: list[float] = []
    for epoch in range(start_epoch, cfg.epochs):
        student.train()
        for x, y in Batches(
            train_split, batch_size=cfg.batch_size, seed=cfg.seed, epoch=epoch, augment=cfg.augment, drop_last=True
        ):
            if step >= total:
                break
            lam = lambda_at(
                step, total, ramp_share=cfg.ramp_share, schedule=cfg.schedule, steps_per_epoch=steps_per_epoch
            )
            set_lambda(student, lam)
            out = student(x)
            loss = F.cross_entropy(out, y, label_smoothing=cfg.label_smoothing)
            if teacher is not None and cfg.kd_weight > 0:
                with torch.no_grad():
                    t_out = teacher(x)
                loss = (1 - cfg.kd_weight) * loss + cfg.kd_weight * kd_loss(out, t_out, cfg.temperature)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            step += 1
            if step % max(1, total // 20) == 0 or step == total:
                trace.append(
                    {"step": step, "lambda": round(lam, 4), "loss": round(sum(losses[-20:]) / len(losses[-20:]), 4)}
                )
                if progress:
                    progress(step, total, trace[-1])
        if ck is not None:
            ck.save(
                student,
                {"opt": opt.state_dict(), "sched": sched.state_dict()},
                {"epoch": epoch + 1, "step": step, "trace": trace},
            )
    set_lambda(student, 1.0)
    student.eval()
    return {
        "steps": step,
        "total_steps": total,
        "steps_per_epoch": steps_per_epoch,
        "final_loss": trace[-1]["loss"] if trace else None,
        "trace": trace,
        "config": asdict(cfg),
    }
