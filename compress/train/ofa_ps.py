"""OFA progressive shrinking (ALGORITHMS.md §5.5) within one epoch budget.

Phases: full model (CE), then elastic kernel, depth (two steps), expand (two steps) with KD from
the full model as trained at the end of the first phase (a frozen copy, the "teacher"). The
epoch budget is split in the paper's proportions (180/120/25/120/40/120 of 605 epochs); each phase
has its own cosine LR with OFA's relative peak. Channels are re-organised once, at the first
expand phase, as OFA does.
"""

from __future__ import annotations

from typing import Any

from compress.train.recipe import RECIPES, Plan, Recipe
from compress.train.schedule import ofa_lr, ofa_phase_at, ofa_phases
from compress.train.steps import SubnetTerm


@RECIPES.register("ofa-ps", aliases=("ofa",))
class OfaPS(Recipe):
    name = "ofa-ps"

    def __init__(self, cfg, space, *, steps_per_epoch: int, total_steps: int, eta0: float) -> None:
        super().__init__(cfg, space, steps_per_epoch=steps_per_epoch, total_steps=total_steps, eta0=eta0)
        kernel_elastic = cfg.elastic_kernel and any(len(st.kernels) > 1 for st in space.stages)
        self.phases = ofa_phases(total_steps, cfg.ofa_phase_fractions, kernel_elastic=kernel_elastic)

    def plan(self, t: int, flags: dict[str, Any]) -> Plan:
        c = self.cfg
        ph = ofa_phase_at(self.phases, t)
        lr = ofa_lr(ph, t, self.eta0, min_lr=c.min_lr)
        if ph.name == "full":
            return Plan([SubnetTerm(self.max_cfg(), 1.0, "max")], lr, 0.0, ph.name)
        events = []
        if not flags.get("teacher"):
            events.append("snapshot-teacher")
        if ph.name.startswith("expand") and c.reorganize_weights and not flags.get("reorganized"):
            events.append("reorganize")
        kernel = ph.kernel if self.kernel == "all" else "max"
        terms = [
            SubnetTerm(self.sample(self.rng(t, i), kernel=kernel, depth=ph.depth, expand=ph.expand), 1.0, "sub")
            for i in range(ph.n_subnets)
        ]
        return Plan(terms, lr, 1.0, ph.name, use_teacher=True, events=events)
