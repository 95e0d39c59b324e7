"""Accuracy predictor (MLP / ridge) on synthetic data, its files, its memo; vectorised cost of real spaces."""

from __future__ import annotations

import numpy as np
import pytest

from compress.search.predictor import LayeredPredictor, fit_predictor, kendall_tau, rmse


def _onehot(sizes):
    offs = np.concatenate([[0], np.cumsum(sizes)[:-1]])

    def enc(g):
        x = np.zeros((g.shape[0], int(np.sum(sizes))), dtype=np.float32)
        x[np.arange(g.shape[0])[:, None], offs[None, :] + g] = 1
        return x

    return enc


def _data(n=400, seed=0):
    rng = np.random.default_rng(seed)
    sizes = np.array([3] * 10)
    g = rng.integers(0, 3, (n, 10))
    w = rng.random((10, 3))
    y = 0.6 + 0.02 * w[np.arange(10)[None, :], g].sum(1) - 0.01 * (g[:, 0] == g[:, 1])
    return g, y + rng.normal(0, 0.002, n), _onehot(sizes)


def test_fit_reports_heldout_rmse_and_tau_and_beats_the_mean():
    g, y, enc = _data(300)
    pred, rep = fit_predictor(g, y, enc, seed=0, mlp_epochs=40)
    assert set(rep.metrics) == {"mlp", "ridge"} and rep.chosen in rep.metrics
    m = rep.metrics[rep.chosen]
    _, _, te = __import__("compress.search.predictor", fromlist=["split_indices"]).split_indices(len(y), seed=0)
    baseline = rmse(np.full(te.size, y.mean()), y[te])
    assert m["test_rmse"] < 0.5 * baseline
    assert m["test_kendall_tau"] > 0.6
    assert rmse(pred.predict_genes(g[te]), y[te]) == pytest.approx(m["test_rmse"])


def test_fit_is_deterministic_and_round_trips(tmp_path):
    g, y, enc = _data(200)
    a, _ = fit_predictor(g, y, enc, seed=1, mlp_epochs=20, kinds=("mlp",))
    b, _ = fit_predictor(g, y, enc, seed=1, mlp_epochs=20, kinds=("mlp",))
    np.testing.assert_array_equal(a.predict_genes(g), b.predict_genes(g))
    a.save(tmp_path / "p")
    c = LayeredPredictor.load(tmp_path / "p", enc)
    np.testing.assert_allclose(c.predict_genes(g), a.predict_genes(g), rtol=0, atol=0)
    # an ensemble of OFA's 3x400 MLP (members first), no bias on the output layer
    assert len(c.weights) == 4 and c.weights[1].shape == (5, 400, 400) and c.biases[-1] is None and c.members == 5


def test_ensemble_is_the_mean_of_its_members_and_one_member_is_a_plain_mlp():
    from compress.search.predictor import train_mlp

    g, y, enc = _data(120)
    x = enc(g)
    ws, bs, base = train_mlp(x, y, seed=3, epochs=15, members=3)
    ens = LayeredPredictor(ws, bs, base, enc)
    parts = [
        LayeredPredictor([w[m] for w in ws], [None if b is None else b[m] for b in bs], base, enc) for m in range(3)
    ]
    np.testing.assert_allclose(ens.predict_features(x), np.mean([p.predict_features(x) for p in parts], 0), rtol=1e-6)
    # members differ (own initialisation and minibatch order)
    assert not np.allclose(parts[0].predict_features(x), parts[1].predict_features(x))
    ws1, _, _ = train_mlp(x, y, seed=3, epochs=2, members=1)
    assert ws1[0].ndim == 2 and LayeredPredictor(ws1, [None] * 4, base, enc).members == 1


def test_memo_gives_identical_predictions():
    g, y, enc = _data(100)
    p, _ = fit_predictor(g, y, enc, seed=0, mlp_epochs=5, kinds=("mlp",))
    fresh = p.predict_features(enc(g))
    first = p.predict_genes(g)
    again = p.predict_genes(np.concatenate([g[::-1], g]))
    np.testing.assert_allclose(first, fresh, rtol=1e-6)
    np.testing.assert_array_equal(again[len(g) :], first)
    np.testing.assert_array_equal(again[: len(g)], first[::-1])


def test_kendall_tau_basic():
    assert kendall_tau(np.arange(5), np.arange(5)) == pytest.approx(1.0)
    assert kendall_tau(np.arange(5), -np.arange(5)) == pytest.approx(-1.0)


def test_corrupted_predictor_file_errors(tmp_path):
    from compress.core.errors import UsageError

    g, y, enc = _data(60)
    p, _ = fit_predictor(g, y, enc, seed=0, kinds=("ridge",))
    p.save(tmp_path / "p")
    (tmp_path / "p" / "predictor.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(UsageError):
        LayeredPredictor.load(tmp_path / "p", enc)


def test_vectorised_cost_matches_space_count():
    from compress.latency.space_cost import SpaceCost
    from compress.supernet import get_space

    space = get_space("mbv3-small-input")
    cost = SpaceCost(space, verify=0)
    g = space.sample_genes(np.random.default_rng(5), 40)
    for row, p, m in zip(g, cost.params_genes(g), cost.macs_genes(g)):
        c = space.count(space.from_genes(row))
        assert (c.params, c.macs) == (p, m)
    # channel multiples: count equals a direct check of the block specs
    for mult in (8, 16, 32):
        v = cost.channel_violations_genes(g[:10], mult)
        for row, vv in zip(g[:10], v):
            specs = space.block_specs(space.from_genes(row))
            direct = 0
            for s in specs:
                dims = [] if (s.kind == "conv" and s.in_ch == space.in_channels) else [s.in_ch]
                dims += [] if (s.kind == "linear" and s.out_ch == space.num_classes) else [s.out_ch]
                dims += [s.mid] if s.mid else []
                dims += [s.se_mid] if (s.se and s.se_mid) else []
                direct += sum(d % mult != 0 for d in dims)
            assert vv == direct


def test_pair_cache_keeps_each_protocol_and_never_writes_inside_the_package(tmp_path, monkeypatch) -> None:
    from pathlib import Path

    import compress
    from compress.search.dataset import cache_dir_for, collect_pairs
    from compress.supernet import get_space

    space = get_space("convnext-small-input")
    calls: list[str] = []

    class Fake:  # top-1 = a deterministic function of the config; counts real evaluations
        def __init__(self, tag: str) -> None:
            self.tag = tag

        def top1(self, cfg) -> float:
            calls.append(self.tag)
            return float(sum(cfg.depths)) / 10.0

    g1, y1 = collect_pairs(space, Fake("a"), tmp_path, n=6, seed=0, eval_key="protoA")
    collect_pairs(space, Fake("b"), tmp_path, n=6, seed=0, eval_key="protoB")
    g2, y2 = collect_pairs(space, Fake("a"), tmp_path, n=6, seed=0, eval_key="protoA")  # all cached
    assert calls == ["a"] * 6 + ["b"] * 6 and np.array_equal(g1, g2) and np.array_equal(y1, y2)
    # a checkpoint inside the installed package caches in the user cache, not beside itself
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    inside = Path(compress.__file__).resolve().parent / "supernet" / "default" / "supernet.safetensors"
    assert cache_dir_for(inside, sha="0" * 64) == tmp_path / "xdg" / "compress" / "search" / ("0" * 16)
