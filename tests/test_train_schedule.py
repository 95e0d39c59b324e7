"""Pure schedule math of compress.train (ALGORITHMS.md §2.3-2.4, §5.5): no torch, fast."""

from __future__ import annotations

import math

import pytest

from compress.train.config import TrainConfig
from compress.train.schedule import DepsSchedule, cosine_lr, ofa_phases, step_seed


def test_cosine_lr_endpoints_and_floor():
    assert cosine_lr(0, 100, 2.6) == pytest.approx(2.6)
    assert cosine_lr(50, 100, 2.6) == pytest.approx(1.3)
    assert cosine_lr(100, 100, 2.6, min_lr=2.5e-3) == pytest.approx(2.5e-3)
    assert cosine_lr(99, 100, 2.6, min_lr=0.5) == 0.5  # floored
    lrs = [cosine_lr(t, 100, 1.0) for t in range(101)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_paper_defaults_scale_with_epochs():
    c = TrainConfig(family="convnext-small-input", data="digits", out="x", epochs=270)
    assert c.e_w == pytest.approx(150) and c.w_s == pytest.approx(5)
    assert (c.dynamic_batch_size, c.aggregation, c.temperature, c.inplace_distillation, c.reorganize_weights) == (
        4,
        "sum",
        1.0,
        True,
        True,
    )
    assert (c.base_lr, c.min_lr, c.momentum, c.nesterov, c.weight_decay, c.label_smoothing) == (
        0.1625,
        2.5e-3,
        0.9,
        True,
        3e-5,
        0.1,
    )
    c2 = TrainConfig(family="f", data="d", out="x", epochs=27)
    assert c2.e_w == pytest.approx(15) and c2.w_s == pytest.approx(0.5)


def test_beta_zero_then_ramp_then_multiplier():
    # E_tot 10, E_w 6, W_s 2, 10 steps per epoch: ramp steps [40, 60)
    s = DepsSchedule.from_epochs(epochs=10, steps_per_epoch=10, e_w=6, w_s=2, eta0=1.0, min_lr=0.01)
    assert (s.ramp_start, s.shrink_start, s.total_steps) == (40, 60, 100)
    assert all(s.beta(t) == 0.0 and s.phase(t) == "teacher" for t in range(40))
    ramp = [s.beta(t) for t in range(40, 60)]
    assert ramp[0] == 0.0 and all(0 < b < 1 for b in ramp[1:])
    assert all(a < b for a, b in zip(ramp, ramp[1:]))  # strictly rising
    # the heuristic: beta * eta(t) = (i / T) * m * eta(E_w)  -> subnet LR rises linearly
    for t in range(40, 60):
        assert s.beta(t) * s.lr(t) == pytest.approx((t - 40) / 20 * s.lr(60))
    assert all(s.beta(t) == 1.0 and s.phase(t) == "shrink" for t in range(60, 100))
    assert s.beta(70, multiplier=0.5) == 0.5
    assert s.beta(50, multiplier=0.5) == pytest.approx(0.5 * s.beta(50))


def test_no_ramp_and_shrink_from_start():
    s = DepsSchedule.from_epochs(epochs=4, steps_per_epoch=5, e_w=2, w_s=0, eta0=1.0)
    assert s.ramp_start == s.shrink_start == 10
    assert s.beta(9) == 0.0 and s.beta(10) == 1.0
    b = DepsSchedule.from_epochs(epochs=4, steps_per_epoch=5, e_w=0, w_s=0, eta0=1.0)
    assert b.phase(0) == "shrink"


def test_step_seed_depends_on_all_parts_and_is_stable():
    seeds = {step_seed(s, t, i) for s in range(3) for t in range(20) for i in range(5)}
    assert len(seeds) == 300
    assert step_seed(0, 5, 2) == step_seed(0, 5, 2)
    assert 0 <= step_seed(123, 10**9, 7) < 2**63


def test_ofa_phases_cover_all_steps_in_order():
    ph = ofa_phases(605, TrainConfig(family="f", data="d", out="x").ofa_phase_fractions)
    assert [p.name for p in ph] == ["full", "kernel", "depth-1", "depth-2", "expand-1", "expand-2"]
    assert ph[0].start == 0 and ph[-1].stop == 605
    assert all(a.stop == b.start for a, b in zip(ph, ph[1:]))
    assert [p.steps for p in ph] == [180, 120, 25, 120, 40, 120]
    assert [p.n_subnets for p in ph] == [1, 1, 2, 2, 4, 4]
    nk = ofa_phases(100, (1, 1, 1, 1, 1, 1), kernel_elastic=False)
    assert "kernel" not in [p.name for p in nk] and nk[-1].stop == 100
    assert math.isclose(sum(p.steps for p in nk), 100)


def test_config_rejects_bad_values():
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        TrainConfig(family="f", data="d", out="x", epochs=0)
    with pytest.raises(ValidationError):
        TrainConfig(family="f", data="d", out="x", epochs=4, shrink_start=5)
    with pytest.raises(ValidationError):
        TrainConfig(family="f", data="d", out="x", aggregation="mean")
    with pytest.raises(ValidationError):
        TrainConfig(family="f", data="d", out="x", dynamic_batch_size=1)
