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
    # three kinds that the runtime speeds up differently: per-kind wins clearly
    a, b, c = rng.uniform(1, 5, 40), rng.uniform(1, 5, 40), rng.uniform(1, 5, 40)
    y2 = 0.6 * a + 1.8 * b + 1.1 * c + 0.3
    f2 = {"sum": a + b + c, "blocks": n, "sum_conv": a, "sum_mbconv": b, "sum_pool": c}
    cal2 = fit(f2, y2)
    assert cal2.model == "per_kind" and cal2.loo_mape < 1.0 and cal2.loo_max_error_pct < 1.0
    assert cal2.candidates["linear"] > cal2.loo_mape and cal2.candidates["split"] > cal2.loo_mape
    back = Calibration.from_dict(cal2.to_dict())
    np.testing.assert_allclose(back.apply(f2), y2, rtol=1e-6)
    # the dominant kind scaled apart from the rest: "split" (4 coefficients) is a candidate with 12
    # samples, where per-kind (5 coefficients here) is not, and recovers the gap
    m = 12
    main, rest = rng.uniform(2, 8, m), rng.uniform(0.5, 2, m)
    y3 = 0.7 * main + 1.6 * rest + 0.02 * n[:m] + 0.1
    f3 = {"sum": main + rest, "blocks": n[:m], "sum_convnext": main, "sum_conv": rest * 0.5, "sum_pool": rest * 0.5}
    cal3 = fit(f3, y3)
    assert "per_kind" not in cal3.candidates and cal3.model == "split"
    assert cal3.features == ["sum_convnext", "rest_convnext", "blocks", "1"] and cal3.loo_mape < 1e-6
    np.testing.assert_allclose(
        Calibration.from_dict(cal3.to_dict()).apply(
            {k: v for k, v in f3.items() if k in ("sum", "blocks", "sum_convnext")}
        ),
        y3,
        rtol=1e-6,
    )
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


def test_calibration_set_covers_extremes_and_the_front_and_gflop_feature() -> None:
    from compress.latency.profile import calibration_genes
    from compress.latency.space_cost import SpaceCost

    space = get_space("convnext-small-input")
    comp = compile_space(space)
    model = LatencyModel.from_table(_synthetic_table(space, comp), space, compiled=comp)
    g, roles = calibration_genes(space, model, np.random.default_rng(0), 14, pool=512)
    g2, roles2 = calibration_genes(space, model, np.random.default_rng(0), 14, pool=512)
    assert np.array_equal(g, g2) and roles == roles2  # seeded
    assert len(g) == 14 and len({r.tobytes() for r in g}) == 14  # distinct
    assert np.array_equal(g[0], space.to_genes(space.min_config())) and np.array_equal(
        g[1], space.to_genes(space.max_config())
    )
    assert (
        roles[:2] == ["extreme", "extreme"] and roles.count("front") == 4 and "quantile" in roles and "random" in roles
    )
    # front rows carry more compute per predicted millisecond than the random rows on average
    macs, raw = SpaceCost(space).macs_genes(g).astype(float), model.predict_sum_genes(g)
    dens = macs / raw
    front = [i for i, r in enumerate(roles) if r == "front"]
    rand = [i for i, r in enumerate(roles) if r in ("random", "quantile")]
    assert dens[front].mean() > dens[rand].mean()
    feats = model.features_genes(g, per_kind=True)
    assert np.all(feats["gflop"] > 0) and feats["gflop"][1] > feats["gflop"][0]


def test_table_of_a_changed_space_is_named_not_silently_ignored(tmp_path, monkeypatch) -> None:
    # item 5 of requests_from_search: the space's hash changed, the table was no longer found, and
    # search silently used the roofline estimate ("calibration None", 5x the measurement)
    buf = io.StringIO()
    monkeypatch.setattr(predict_mod, "_WARNED", set())
    monkeypatch.setattr(predict_mod.sys, "stderr", buf)
    old = tmp_path / "local-cpu" / "onnxruntime__fp32__b1__convnext-small-input-0badc0de.json"
    old.parent.mkdir(parents=True)
    old.write_text("{}")
    m = LatencyModel.load(device="local-cpu", runtime="onnxruntime", space="convnext-small-input", tables=tmp_path)
    assert m.source == "estimated" and m.calibration is None
    text = buf.getvalue()
    assert "ESTIMATED" in text and old.name in text and "NOT used" in text


def test_calibration_never_worse_than_the_plain_sum() -> None:
    # measurements that are the sum plus heavy noise: any fitted correction only chases the noise
    rng = np.random.default_rng(3)
    s = rng.uniform(1, 2, 10)
    y = s * rng.choice([0.7, 1.3], 10)
    cal = fit({"sum": s, "blocks": np.arange(10.0)}, y)
    fitted = min(v for k, v in cal.candidates.items() if k != "identity")
    assert fitted > cal.candidates["identity"] and cal.model == "identity"  # this data: fitting loses
    assert cal.loo_mape <= cal.candidates["identity"] + 1e-9
    if cal.model == "identity":
        np.testing.assert_allclose(cal.apply({"sum": s}), s)
