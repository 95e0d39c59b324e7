"""Parity metrics and thresholds (pure math)."""

from __future__ import annotations

import numpy as np
import pytest

from compress.core.errors import UsageError
from compress.export.parity import THRESHOLDS, compare, judge


def test_identical_outputs():
    ref = np.random.default_rng(0).standard_normal((8, 10))
    m = compare(ref, ref.copy())
    assert m == {"max_abs_err": 0.0, "max_rel_err": 0.0, "top1_agreement": 1.0, "near_ties": 0}
    assert judge(m, "fp32") == (True, "")


def test_relative_error_is_against_output_scale():
    ref = np.array([[10.0, -2.0, 0.0], [1.0, 5.0, 3.0]])
    out = ref.copy()
    out[0, 2] += 0.01  # element-wise relative error would be infinite here (ref == 0)
    m = compare(ref, out)
    assert m["max_abs_err"] == pytest.approx(0.01)
    assert m["max_rel_err"] == pytest.approx(0.01 / 10.0)
    ok, why = judge(m, "fp32")
    assert not ok and "max_rel_err" in why
    assert judge(m, "fp16")[0]


def test_top1_agreement_and_near_ties():
    ref = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.4999], [0.0, 2.0]])
    out = ref.copy()
    out[2] = [0.4999, 0.5]  # a flip on a near-tie
    out[3] = [3.0, 2.0]  # a real flip
    m = compare(ref, out)
    assert m["top1_agreement"] == pytest.approx(0.5)
    assert m["near_ties"] >= 1
    assert not judge(m, "int8")[0]


def test_non_finite_outputs_fail():
    ref = np.ones((2, 3))
    out = ref.copy()
    out[1, 1] = np.nan
    m = compare(ref, out)
    assert m["max_abs_err"] == float("inf") and not judge(m, "bf16")[0]


def test_shape_mismatch_is_a_usage_error():
    with pytest.raises(UsageError, match="shape"):
        compare(np.ones((2, 3)), np.ones((2, 4)))


def test_thresholds_loosen_with_precision():
    order = ["fp32", "fp16", "bf16", "int8"]
    rel = [THRESHOLDS[p].max_rel_err for p in order]
    top = [THRESHOLDS[p].min_top1 for p in order]
    assert rel == sorted(rel) and top == sorted(top, reverse=True)
    assert THRESHOLDS["fp32"].max_rel_err == 1e-4


def test_input_sensitivity_flags_constant_models():
    from compress.export.parity import input_sensitivity

    rng = np.random.default_rng(0)
    assert input_sensitivity(np.tile(rng.standard_normal(10), (8, 1))) < 1e-12
    assert input_sensitivity(rng.standard_normal((8, 10))) > 0.1
