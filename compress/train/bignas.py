"""BigNAS-style baseline: sandwich steps with in-place KD from step 0 (no full-model phase, no ramp)."""

from __future__ import annotations

from typing import Any

from compress.train.recipe import RECIPES, Plan, Recipe
from compress.train.schedule import cosine_lr


@RECIPES.register("bignas")
class BigNAS(Recipe):
    name = "bignas"

    def plan(self, t: int, flags: dict[str, Any]) -> Plan:
        c = self.cfg
        lr = cosine_lr(
            t,
            self.total_steps,
            self.eta0,
            min_lr=c.min_lr,
            warmup_steps=int(round(c.warmup_epochs * self.steps_per_epoch)),
        )
        return Plan(self.sandwich(t, c.min_multiplier, c.other_multiplier), lr, c.min_multiplier, "shrink")
