"""Recipe strategy objects: what each step trains (subnets and their weights), the LR and β.

A recipe is pure scheduling plus small hooks; :mod:`compress.train.loop` runs every recipe
with the same step (:func:`compress.train.steps.run_terms`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from compress.core.registry import Registry
from compress.train import net as netapi
from compress.train.config import TrainConfig
from compress.train.schedule import step_seed
from compress.train.steps import SubnetTerm


@dataclass
class Plan:
    """What one step does."""

    terms: list[SubnetTerm]
    lr: float
    beta: float
    phase: str
    use_teacher: bool = False
    events: list[str] = field(default_factory=list)  # e.g. "reorganize", "snapshot-teacher"


class Recipe:
    name = "base"

    def __init__(self, cfg: TrainConfig, space: Any, *, steps_per_epoch: int, total_steps: int, eta0: float) -> None:
        self.cfg, self.space = cfg, space
        self.steps_per_epoch, self.total_steps, self.eta0 = steps_per_epoch, total_steps, eta0
        self.kernel = "all" if cfg.elastic_kernel else "max"

    def plan(self, t: int, flags: dict[str, Any]) -> Plan:  # pragma: no cover - abstract
        raise NotImplementedError

    # helpers shared by the recipes
    def rng(self, t: int, index: int) -> np.random.Generator:
        return np.random.default_rng(step_seed(self.cfg.seed, t, index))

    def max_cfg(self):
        return self.space.max_config()

    def min_cfg(self):
        return netapi.min_config(self.space, kernel=self.kernel)

    def sandwich(self, t: int, beta_min: float, beta_other: float) -> list[SubnetTerm]:
        """Largest (weight ``max_multiplier``), smallest, then ``n - 2`` random subnets (§2.5)."""
        c = self.cfg
        terms = [SubnetTerm(self.max_cfg(), c.max_multiplier, "max"), SubnetTerm(self.min_cfg(), beta_min, "min")]
        for i in range(2, c.dynamic_batch_size):
            terms.append(SubnetTerm(self.sample(self.rng(t, i)), beta_other, "random"))
        return terms

    def sample(self, rng: np.random.Generator, **restrict: str):
        if self.cfg.sampling == "compofa":
            return compofa_sample(self.space, rng, kernel=restrict.get("kernel", self.kernel))
        restrict.setdefault("kernel", self.kernel)
        return netapi.restricted_sample(self.space, rng, **restrict)


def compofa_sample(space: Any, rng: np.random.Generator, *, kernel: str = "max"):
    """CompOFA compound sampling (§2.2): depth d with probability ∝ its combinations, expand tied to depth."""
    depths, kernels, expands = [], [], []
    for st in space.stages:
        weights = np.array([len(st.expands) ** d for d in st.depths], dtype=float)
        d = st.depths[int(rng.choice(len(st.depths), p=weights / weights.sum()))]
        rank = st.depths.index(d)
        e = st.expands[min(rank, len(st.expands) - 1)]
        depths.append(d)
        kernels.append(
            [st.kernels[-1] if kernel == "max" else st.kernels[int(rng.integers(len(st.kernels)))] for _ in range(d)]
        )
        expands.append([e] * d)
    return space.config(
        resolution=space.resolutions[-1], width=space.width_mults[-1], depths=depths, kernels=kernels, expands=expands
    )


# Filled by the recipe modules when they are imported; :mod:`compress.train.recipes` imports them all.
RECIPES: Registry[type[Recipe]] = Registry("training recipe")
