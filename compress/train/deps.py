"""DεpS (ALGORITHMS.md §2.3-2.5): full model first, one channel re-organisation, then sandwich
steps with in-place KD and the ε-ramp of the subnets' gradient weight β."""

from __future__ import annotations

from typing import Any

from compress.train.recipe import RECIPES, Plan, Recipe
from compress.train.schedule import DepsSchedule
from compress.train.steps import SubnetTerm


@RECIPES.register("deps")
class Deps(Recipe):
    name = "deps"

    def __init__(self, cfg, space, *, steps_per_epoch: int, total_steps: int, eta0: float) -> None:
        super().__init__(cfg, space, steps_per_epoch=steps_per_epoch, total_steps=total_steps, eta0=eta0)
        self.schedule = DepsSchedule.from_epochs(
            epochs=cfg.epochs,
            steps_per_epoch=steps_per_epoch,
            e_w=cfg.e_w,
            w_s=cfg.w_s,
            eta0=eta0,
            min_lr=cfg.min_lr,
            warmup_epochs=cfg.warmup_epochs,
        )

    def plan(self, t: int, flags: dict[str, Any]) -> Plan:
        s, c = self.schedule, self.cfg
        lr, phase = s.lr(t), s.phase(t)
        if phase == "teacher":
            return Plan([SubnetTerm(self.max_cfg(), c.max_multiplier, "max")], lr, 0.0, phase)
        events = []
        if c.reorganize_weights and not flags.get("reorganized"):
            events.append("reorganize")
        b_min, b_other = s.beta(t, c.min_multiplier), s.beta(t, c.other_multiplier)
        return Plan(self.sandwich(t, b_min, b_other), lr, b_min, phase, events=events)
