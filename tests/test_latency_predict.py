"""Vectorised predictor and calibration fitting on synthetic tables and arrays."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest

from compress.core.errors import UsageError
from compress.latency import predict as predict_mod
from compress.latency.calibrate import Calibration, fit
from compress.latency.compiled import compile_space
from compress.latency.predict import LatencyModel
from compress.latency.signature import signature_of
from compress.latency.table import Entry, LatencyTable
from compress.supernet import get_space


def _synthetic_table(space, comp, *, drop_every: int = 0) -> LatencyTable:
    """A table whose entries are a deterministic function of the signature (not measured: a fixture)."""
    t = LatencyTable.new(device="local-cpu", runtime="onnxruntime", precision="fp32", batch=1, space="syn")
    for i, s in enumerate(comp.signatures):
        if drop_every and i % drop_every == 1:
            continue
        ms = 1e-3 * (s.in_hw * s.in_hw * (s.in_ch + s.out_ch + s.mid) * s.kernel) / 1e3 + 0.01
        t.add(s, Entry(count=10, median_ms=ms, mean_ms=ms, std_ms=0.0, min_ms=ms, p10_ms=ms))
    return t


@pytest.mark.parametrize("family", ["mbv3-small-input", "ofa-mbv3"])
def test_vectorised_equals_per_config_sum(family: str) -> None:
    space = get_space(family)
    comp = compile_space(space)
    table = _synthetic_table(space, comp)
    model = LatencyModel.from_table(table, space, compiled=comp)
    genes = space.sample_genes(np.random.default_rng(5), 100)
    fast = model.predict_sum_genes(genes)
    slow = [sum(table.lookup(signature_of(s)) for s in space.block_specs(space.from_genes(g))) for g in genes]
    np.testing.assert_allclose(fast, slow, rtol=1e-12)
    counts = model.count_genes(genes)
    assert all(c == len(space.block_specs(space.from_genes(g))) for c, g in zip(counts, genes))
    assert model.predict(space.from_genes(genes[0])) == pytest.approx(fast[0])
    assert model.source == "measured" and model.n_interpolated == 0


def test_missing_entries_are_interpolated_and_flagged() -> None:
    space = get_space("convnext-small-input")
    comp = compile_space(space)
    table = _synthetic_table(space, comp, drop_every=7)
    model = LatencyModel.from_table(table, space, compiled=comp)
    assert model.n_interpolated + model.n_estimated == sum(1 for i in range(len(comp.signatures)) if i % 7 == 1)
    assert np.all(model.sig_ms > 0)
    bd = model.breakdown(space.max_config())
    assert {r["source"] for r in bd} <= {"measured", "interpolated", "estimated"}


def test_scores_100k_configs_fast() -> None:
    space = get_space("ofa-mbv3")
    comp = compile_space(space)
    model = LatencyModel.from_table(_synthetic_table(space, comp), space, compiled=comp)
    genes = space.sample_genes(np.random.default_rng(0), 100_000)
    model.predict_genes(genes[:10])
    t0 = time.process_time()  # CPU time: wall time on a shared 2-core machine measures the neighbours
    out = model.predict_genes(genes)
    dt = time.process_time() - t0
    assert out.shape == (100_000,) and np.all(out > 0)
    assert dt < 1.0, f"100k configs took {dt:.2f} s of CPU"  # typically 0.05-0.1 s


def test_calibration_recovers_a_known_gap_and_picks_per_kind_when_it_pays() -> None:
    rng = np.random.default_rng(0)
    s = rng.uniform(1, 10, 40)
    n = rng.integers(10, 30, 40).astype(float)
    y = 1.3 * s + 0.05 * n + 0.4
    cal = fit({"sum": s, "blocks": n}, y)
    assert cal.model in ("linear",) and cal.loo_mape < 1e-6
    np.testing.assert_allclose(cal.coef, [1.3, 0.05, 0.4], rtol=1e-6)
    # two kinds that the runtime speeds up differently: per-kind wins clearly
    a, b = rng.uniform(1, 5, 40), rng.uniform(1, 5, 40)
    y2 = 0.6 * a + 1.8 * b + 0.3
    cal2 = fit({"sum": a + b, "blocks": n, "sum_conv": a, "sum_mbconv": b}, y2)
    assert cal2.model == "per_kind" and cal2.loo_mape < 1.0
    assert cal2.candidates["linear"] > cal2.loo_mape
    back = Calibration.from_dict(cal2.to_dict())
    np.testing.assert_allclose(back.apply({"sum": a + b, "blocks": n, "sum_conv": a, "sum_mbconv": b}), y2, rtol=1e-6)
    with pytest.raises(UsageError, match="at least 4"):
        fit({"sum": s[:3], "blocks": n[:3]}, y[:3])


def test_estimated_model_warns_once_and_missing_table_can_be_an_error(tmp_path, monkeypatch) -> None:
    buf = io.StringIO()
    monkeypatch.setattr(predict_mod, "_WARNED", set())
    monkeypatch.setattr(predict_mod.sys, "stderr", buf)
    m1 = LatencyModel.load(device="jetson", space="convnext-small-input", tables=tmp_path)
    m2 = LatencyModel.load(device="jetson", space="convnext-small-input", tables=tmp_path)
    assert m1.source == m2.source == "estimated"
    text = buf.getvalue()
    assert text.count("ESTIMATED") == 1 and "compress profile --device jetson-orin-nano --remote" in text
    g = m1.space.sample_genes(np.random.default_rng(1), 64)
    assert np.all(m1.predict_genes(g) > 0)
    with pytest.raises(UsageError, match="no measured latency table.*compress profile --device local-cpu"):
        LatencyModel.load(device="local-cpu", space="convnext-small-input", tables=tmp_path, allow_estimate=False)
    with pytest.raises(UsageError, match="unknown runtime 'onnxruntim'"):
        LatencyModel.load(device="local-cpu", runtime="onnxruntim", space="convnext-small-input", tables=tmp_path)
