"""One optimisation step over several subnets (ALGORITHMS.md §2.5): losses, in-place KD and
per-parameter masked gradient accumulation with "sum" / "avg" / "sqrt" aggregation.

The caller has already sliced the global batch for this rank; ``micro`` splits it further into
micro-batches (gradient accumulation), which lets one process reproduce a K-process run exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class SubnetTerm:
    """One subnet of a step: its config, gradient weight (β or multiplier) and role."""

    config: Any
    weight: float
    role: str  # "max", "min", "random", "teacher-kd" ...


def soft_ce(logits: torch.Tensor, target_probs: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``T^2 * CE(softmax(z/T), p_T)`` averaged over the batch."""
    logp = F.log_softmax(logits / temperature, dim=1)
    return -(target_probs * logp).sum(dim=1).mean() * (temperature**2)


def masked_accumulate(
    params: Sequence[tuple[str, nn.Parameter]],
    G: dict[str, torch.Tensor],
    M: dict[str, torch.Tensor] | None,
    weight: float,
    masks: dict[str, torch.Tensor] | None,
) -> None:
    """``G += w * mask ⊙ grad``; ``M += w * mask``; then zero the grads.

    ``masks`` maps parameter names to the active-element masks of the subnet just run; when it is
    None the mask is "element has a gradient" (used only for the "sum" aggregation, where masks
    do not change the result because inactive elements get no gradient).
    """
    for name, p in params:
        g = p.grad
        if g is None:
            continue
        m = masks.get(name) if masks is not None else None
        if m is not None:
            G[name].add_(g * m.to(g.dtype), alpha=weight)
            if M is not None:
                M[name].add_(m.to(g.dtype), alpha=weight)
        else:
            G[name].add_(g, alpha=weight)
            if M is not None:
                M[name].add_(torch.ones_like(g), alpha=weight)
        p.grad = None


def aggregate(G: dict[str, torch.Tensor], M: dict[str, torch.Tensor] | None, how: str) -> dict[str, torch.Tensor]:
    """``sum``: G; ``avg``: G / M; ``sqrt``: G / sqrt(M) (elements with M = 0 stay 0)."""
    if how == "sum" or M is None:
        return G
    out = {}
    for k, g in G.items():
        m = M[k]
        denom = m if how == "avg" else m.sqrt()
        out[k] = torch.where(m > 0, g / denom.clamp_min(1e-12), torch.zeros_like(g))
    return out


def run_terms(
    net: nn.Module,
    set_active: Callable[[Any], None],
    terms: Sequence[SubnetTerm],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    micro: int = 1,
    label_smoothing: float = 0.1,
    inplace_kd: bool = True,
    temperature: float = 1.0,
    aggregation: str = "sum",
    active_masks: Callable[[], dict[str, torch.Tensor]] | None = None,
    teacher: nn.Module | None = None,
    kd_ratio: float = 0.0,
    skip_zero_weight: bool = False,
    forward: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Run the subnets of one step in order and return (aggregated gradients, loss per role).

    - The first term is the "largest" subnet: CE with label smoothing; its softened output is the
      in-place KD target ``p_T`` for the others (``inplace_kd``; otherwise they use CE).
    - With a ``teacher`` (OFA-PS), every term uses ``CE_ls + kd_ratio * soft_ce(teacher)``.
    Gradients are left in ``.grad`` of nothing: the return value holds them, unreduced across ranks.
    """
    fwd = forward or (lambda m, inp: m(inp))
    params = [(n, p) for n, p in net.named_parameters() if p.requires_grad]
    G = {n: torch.zeros_like(p) for n, p in params}
    need_m = aggregation in ("avg", "sqrt")
    M = {n: torch.zeros_like(p) for n, p in params} if need_m else None
    xs, ys = x.chunk(micro), y.chunk(micro)
    nmicro = len(xs)
    targets: list[torch.Tensor] = []
    teacher_probs: list[torch.Tensor] = []
    if teacher is not None and kd_ratio > 0:
        with torch.no_grad():
            teacher_probs = [F.softmax(fwd(teacher, xi) / temperature, dim=1) for xi in xs]
    losses: dict[str, float] = {}
    for i, term in enumerate(terms):
        if skip_zero_weight and term.weight == 0.0 and i > 0:
            continue
        set_active(term.config)
        for p in net.parameters():
            p.grad = None
        total = 0.0
        for j, (xi, yi) in enumerate(zip(xs, ys)):
            z = fwd(net, xi)
            if teacher_probs:
                loss = F.cross_entropy(z, yi, label_smoothing=label_smoothing) + kd_ratio * soft_ce(
                    z, teacher_probs[j], temperature
                )
            elif i == 0 or not inplace_kd:
                loss = F.cross_entropy(z, yi, label_smoothing=label_smoothing)
            else:
                loss = soft_ce(z, targets[j], temperature)
            if i == 0 and inplace_kd and not teacher_probs:
                targets.append(F.softmax(z.detach() / temperature, dim=1))
            (loss / nmicro).backward()
            total += float(loss.detach()) / nmicro
        masks = active_masks() if (need_m and active_masks is not None) else None
        masked_accumulate(params, G, M, term.weight, masks)
        key = term.role if term.role in ("max", "min") else f"{term.role}{i}"
        losses[key] = total
    return aggregate(G, M, aggregation), losses
