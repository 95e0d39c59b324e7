"""Pure schedule math for supernet training (ALGORITHMS.md §2.3-2.4, §5.5). No torch here.

Steps are global iteration indices ``t`` in ``[0, total_steps)``; ``steps_per_epoch`` converts the
epoch-valued knobs (``E_w``, ``W_s``) into step boundaries.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

TEACHER, RAMP, SHRINK = "teacher", "ramp", "shrink"


def cosine_lr(t: int, total_steps: int, eta0: float, *, min_lr: float = 0.0, warmup_steps: int = 0) -> float:
    """``eta(t) = 1/2 eta0 (1 + cos(pi t / T))`` floored at ``min_lr``, optional linear warm-up."""
    if total_steps <= 0:
        raise ValueError("total_steps must be positive")
    if warmup_steps > 0 and t < warmup_steps:
        return max(min_lr, eta0 * (t + 1) / warmup_steps)
    lr = 0.5 * eta0 * (1.0 + math.cos(math.pi * min(t, total_steps) / total_steps))
    return max(min_lr, lr)


def cosine_factor(t: int, total_steps: int) -> float:
    """The cosine multiplier ``1/2 (1 + cos(pi min(1, t / T)))`` for ``torch.optim.lr_scheduler.LambdaLR``.

    The same curve as :func:`cosine_lr` with ``eta0 = 1``, written as a factor of the optimiser's
    base LR (UPDP's progressive training); its rounding (``pi * (t / T)``) is kept so that runs and
    their saved scheduler states repeat bit for bit. ``T`` below 1 counts as 1.
    """
    return 0.5 * (1 + math.cos(math.pi * min(1.0, t / max(1, total_steps))))


@dataclass(frozen=True)
class DepsSchedule:
    """Step boundaries and β of DεpS (§2.3/§2.4).

    ``ramp_start = (E_w - W_s) * nBatch``, ``shrink_start = E_w * nBatch``; full model only before
    ``ramp_start``; sandwich with a β ramp in ``[ramp_start, shrink_start)``; β = m afterwards.
    """

    total_steps: int
    ramp_start: int
    shrink_start: int
    eta0: float
    min_lr: float = 0.0
    warmup_steps: int = 0

    @classmethod
    def from_epochs(
        cls,
        *,
        epochs: int,
        steps_per_epoch: int,
        e_w: float,
        w_s: float,
        eta0: float,
        min_lr: float = 0.0,
        warmup_epochs: float = 0.0,
    ) -> DepsSchedule:
        if steps_per_epoch <= 0 or epochs <= 0:
            raise ValueError("epochs and steps_per_epoch must be positive")
        total = epochs * steps_per_epoch
        shrink = min(total, int(round(e_w * steps_per_epoch)))
        ramp = max(0, min(shrink, int(round((e_w - w_s) * steps_per_epoch))))
        return cls(total, ramp, shrink, eta0, min_lr, int(round(warmup_epochs * steps_per_epoch)))

    def lr(self, t: int) -> float:
        return cosine_lr(t, self.total_steps, self.eta0, min_lr=self.min_lr, warmup_steps=self.warmup_steps)

    def phase(self, t: int) -> str:
        if t < self.ramp_start:
            return TEACHER
        if t < self.shrink_start:
            return RAMP
        return SHRINK

    def beta(self, t: int, multiplier: float = 1.0) -> float:
        """Subnet gradient weight: 0 before the ramp, ``eta_sub(i)/eta(t)`` inside it, ``m`` after.

        ``eta_sub(i) = (i / T) * m * eta(E_w)`` with ``i = t - ramp_start`` and
        ``T = shrink_start - ramp_start`` (= W_s * nBatch); ``eta(E_w)`` is the LR at the shrink start.
        """
        ph = self.phase(t)
        if ph == TEACHER:
            return 0.0
        if ph == SHRINK:
            return float(multiplier)
        window = self.shrink_start - self.ramp_start
        i = t - self.ramp_start
        eta_sub = (i / window) * multiplier * self.lr(self.shrink_start)
        return eta_sub / self.lr(t)


def step_seed(seed: int, step: int, index: int) -> int:
    """A 63-bit seed from (run seed, global step, subnet index): equal on every rank and on resume."""
    h = hashlib.blake2b(f"{seed}:{step}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") & 0x7FFF_FFFF_FFFF_FFFF


# --- OFA progressive shrinking (§5.5) ------------------------------------------------------------


@dataclass(frozen=True)
class OfaPhase:
    name: str
    start: int  # first global step
    stop: int  # one past the last step
    n_subnets: int  # subnets sampled per step
    lr_scale: float  # peak LR relative to eta0 (cosine restarts in every phase)
    kernel: str  # "max" or "all"
    depth: str  # "max", "top2" (two largest) or "all"
    expand: str  # "max", "top2" or "all"

    @property
    def steps(self) -> int:
        return self.stop - self.start


# name, n subnets per step, LR relative to eta0 (OFA's phase LRs 3e-2 / 2.5e-3 / 7.5e-3 over 0.1), elastic dims
OFA_PHASES = (
    ("full", 1, 1.0, "max", "max", "max"),
    ("kernel", 1, 0.3, "all", "max", "max"),
    ("depth-1", 2, 0.025, "all", "top2", "max"),
    ("depth-2", 2, 0.075, "all", "all", "max"),
    ("expand-1", 4, 0.025, "all", "all", "top2"),
    ("expand-2", 4, 0.075, "all", "all", "all"),
)


def ofa_phases(total_steps: int, fractions: tuple[float, ...], *, kernel_elastic: bool = True) -> list[OfaPhase]:
    """Split ``total_steps`` over OFA's phases in proportion to ``fractions`` (paper: 180/120/25/120/40/120).

    With ``kernel_elastic=False`` (a space with one kernel size) the kernel phase gets no steps.
    Phases with zero steps are dropped; boundaries cover ``[0, total_steps)`` exactly.
    """
    fr = list(fractions)
    if not kernel_elastic:
        fr[1] = 0.0
    s = sum(fr)
    if s <= 0:
        raise ValueError("ofa phase fractions sum to zero")
    cuts, acc = [0], 0.0
    for f in fr:
        acc += f
        cuts.append(int(round(total_steps * acc / s)))
    cuts[-1] = total_steps
    out = []
    for (name, n, lr, k, d, e), a, b in zip(OFA_PHASES, cuts[:-1], cuts[1:]):
        if b > a:
            out.append(OfaPhase(name, a, b, n, lr, k, d, e))
    return out


def ofa_phase_at(phases: list[OfaPhase], t: int) -> OfaPhase:
    for p in phases:
        if p.start <= t < p.stop:
            return p
    return phases[-1]


def ofa_lr(phase: OfaPhase, t: int, eta0: float, *, min_lr: float = 0.0) -> float:
    """Cosine within the phase, peak ``eta0 * lr_scale``."""
    return cosine_lr(
        t - phase.start, max(1, phase.steps), eta0 * phase.lr_scale, min_lr=min(min_lr, eta0 * phase.lr_scale)
    )
