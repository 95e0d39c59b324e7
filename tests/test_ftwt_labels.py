"""FTWT pure math: heatmap-mass labels and per-sample MACs (hand-made activations)."""

import pytest
import torch

from compress.prune.ftwt.labels import conv_macs, dense_conv_macs, mass_labels, peak_scores, reduction_stats

PAPER = [0.3, 0.3, 0.2, 0.1, 0.1, 0.03, 0.01]


def test_paper_example_keeps_four():
    lab = mass_labels(torch.tensor([PAPER]), 0.95)
    assert lab.tolist() == [[1, 1, 1, 1, 0, 0, 0]]


def test_labels_follow_sorting_not_position():
    perm = [6, 2, 0, 5, 3, 1, 4]
    scores = torch.tensor([[PAPER[i] for i in perm]])
    lab = mass_labels(scores, 0.95)[0]
    kept = sorted(PAPER[i] for i, keep in zip(perm, lab.tolist()) if keep)
    assert kept == sorted([0.3, 0.3, 0.2, 0.1])
    assert int(lab.sum()) == 4


@pytest.mark.parametrize("mass,k", [(0.2, 0), (0.3, 1), (0.6, 2), (0.77, 2), (0.8, 3), (0.9, 4), (0.999, 4)])
def test_mass_thresholds_on_normalised_scores(mass, k):
    # scores already sum to 1 so the cumulative mass is [.3, .6, .8, .9, 1.0] after sorting
    scores = torch.tensor([[0.3, 0.3, 0.2, 0.1, 0.1]])
    assert int(mass_labels(scores, mass).sum()) == k


def test_mass_one_drops_only_silent_filters():
    scores = torch.tensor([[0.5, 0.0, 1e-9, 0.2, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0]])
    lab = mass_labels(scores, 1.0)
    assert lab[0].tolist() == [1, 0, 0, 1, 0]
    assert lab[1].tolist() == [0, 0, 0, 0, 0]  # nothing fires: nothing kept, no NaN


def test_kept_mass_never_exceeds_r_and_is_per_sample():
    g = torch.Generator().manual_seed(0)
    scores = torch.rand(64, 32, generator=g) ** 3
    for r in (0.5, 0.8, 0.95):
        lab = mass_labels(scores, r)
        p = scores / scores.sum(1, keepdim=True)
        assert ((lab * p).sum(1) <= r + 1e-5).all()
        assert lab.sum(1).unique().numel() > 1  # k varies across inputs


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.01])
def test_mass_out_of_range(bad):
    with pytest.raises(ValueError):
        mass_labels(torch.ones(1, 3), bad)


def test_peak_scores_is_spatial_max_of_abs():
    a = torch.zeros(2, 3, 4, 4)
    a[0, 1, 2, 3] = -5.0
    a[1, 2, 0, 0] = 2.0
    assert peak_scores(a).tolist() == [[0, 5, 0], [0, 0, 2]]


def test_conv_macs_matches_paper_formula_for_dense_convs():
    ain = torch.tensor([[1, 1, 0, 1], [0, 0, 0, 1]])
    aout = torch.tensor([[1, 0, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]])
    m = conv_macs(ain, aout, out_hw=49, kernel=9)
    assert m.tolist() == [4 * 49 * 3 * 9, 6 * 49 * 1 * 9]
    assert dense_conv_macs(4, 6, out_hw=49, kernel=9) == 6 * 49 * 4 * 9


def test_depthwise_counts_channels_active_on_both_sides():
    ain = torch.tensor([[1, 1, 0, 0]])
    aout = torch.tensor([[1, 0, 1, 0]])
    assert conv_macs(ain, aout, out_hw=10, kernel=9, groups=4).item() == 1 * 10 * 9
    assert dense_conv_macs(4, 4, out_hw=10, kernel=9, groups=4) == 4 * 10 * 9


def test_reduction_stats():
    s = reduction_stats(torch.tensor([50.0, 100.0, 0.0, 25.0]), 100.0)
    assert s["mean"] == pytest.approx((0.5 + 0 + 1 + 0.75) / 4)
    assert s["min"] == 0.0 and s["max"] == 1.0
