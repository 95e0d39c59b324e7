"""FTWT gather execution (skips gated channels at batch 1), input-dependence report, released-code
FLOPs accounting, and the paper-plan small models."""

import pytest
import torch

from compress.core.errors import UsageError
from compress.prune.ftwt.accounting import input_dependence, measure_flops
from compress.prune.ftwt.execute import check_gather, folded_dense, gather_model, gather_vs_dense_latency
from compress.prune.ftwt.models import build_small, parse_small_name
from compress.prune.ftwt.wrap import find_sites, insert_gates, iter_gates

torch.set_num_threads(1)


def _gated(name, width=None, bias_mean=0.0, seed=0):
    """A small model with real BN statistics and gates whose biases switch about half the channels off."""
    torch.manual_seed(seed)
    m = build_small(name, width=width, seed=seed)
    m.train()
    with torch.no_grad():
        m(torch.randn(32, 1, 28, 28))  # non-trivial running statistics
    m.eval()
    dense = build_small(name, width=width, seed=seed)
    dense.load_state_dict(m.state_dict())
    insert_gates(m)
    g = torch.Generator().manual_seed(seed)
    for _, gate in iter_gates(m):
        gate.fc.bias.data = bias_mean + torch.randn(gate.fc.bias.shape, generator=g)
    return m, dense


@pytest.mark.parametrize("name,width", [("resnet", None), ("mobilenetv2", None), ("mobilenetv1-cifar", 0.125)])
def test_gather_matches_masked_dense(name, width):
    m, _ = _gated(name, width)
    x = torch.randn(6, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    res = check_gather(m, gather_model(m), x)
    assert res["max_rel_err"] < 1e-5 and res["top1_agreement"] == 1.0
    assert sum(int(not g.enabled) for _, g in iter_gates(m)) == 0  # the original is left as it was


def test_gather_handles_all_off_and_no_live_input():
    m, _ = _gated("mobilenetv1-cifar", 0.125, bias_mean=-50.0)  # every gate off
    x = torch.randn(2, 1, 28, 28)
    assert check_gather(m, gather_model(m), x)["max_rel_err"] < 1e-6
    with pytest.raises(UsageError, match="batch 1"):
        gather_model(m)(x)


def test_folded_dense_equals_dense_and_latency_has_a_drift_verdict():
    m, dense = _gated("resnet")
    x = torch.randn(4, 1, 28, 28)
    assert check_gather(dense.eval(), folded_dense(dense), x)["max_rel_err"] < 1e-5
    r = gather_vs_dense_latency(m, dense, x[:2], iterations=4, rounds=2)
    assert r["dense_ms"] > 0 and r["gather_ms"] > 0 and r["masked_ms"] > 0
    assert r["drift"]["status"] in ("stable", "normalised", "uncontrolled") and r["parity"]["top1_agreement"] == 1.0
    assert len(r["per_layer"]) == 7 and all(x["dense_us"] > 0 and x["gather_us"] > 0 for x in r["per_layer"])
    assert 0 <= r["layers_gather_faster"] <= 7


def test_input_dependence_entropy_histogram_and_classes():
    static = torch.tensor([[1, 0, 1]] * 4, dtype=torch.bool)
    alternating = torch.tensor([[1, 0], [0, 1], [1, 0], [0, 1]], dtype=torch.bool)
    red = torch.tensor([0.1, 0.3, 0.1, 0.3], dtype=torch.float64)
    dep = input_dependence({"a": static, "b": alternating}, red, torch.tensor([0, 1, 0, 1]))
    assert dep["layers"][0]["entropy_bits"] == 0.0 and dep["layers"][0]["varying_frac"] == 0.0
    assert dep["layers"][1]["entropy_bits"] == pytest.approx(1.0) and dep["layers"][1]["varying_frac"] == 1.0
    assert dep["mask_entropy_mean"] == pytest.approx(0.5)
    assert sum(dep["histogram"]["counts"]) == 4 and dep["histogram"]["counts"][5] == 2  # 0.1 -> bin [0.10, 0.12)
    assert [(c["label"], c["n"], round(c["mean"], 6)) for c in dep["by_class"]] == [(0, 2, 0.1), (1, 2, 0.3)]


def test_released_accounting_counts_gate_chain_and_free_depthwise():
    """Released: active_out * HW * floor(prev / groups) * k^2 over gated convs only."""
    m = build_small("mobilenetv1-cifar", width=0.125)
    insert_gates(m)
    gates = [g for _, g in iter_gates(m)]
    for g in gates:  # all on
        g.fc.weight.data.zero_()
        g.fc.bias.data.fill_(1.0)
    x = torch.rand(3, 1, 28, 28)
    full = measure_flops(m, x)
    fc_macs = 128 * 10
    assert full["flops_reduction_mean_released"] == pytest.approx(fc_macs / full["dense_macs"], rel=1e-6)
    gates[0].fc.bias.data[0] = -1.0  # one stem filter off: the next (depthwise) conv becomes "free"
    part = measure_flops(m, x)
    dw = next(mod for mod in m.modules() if isinstance(mod, torch.nn.Conv2d) and mod.groups > 1)
    dw_macs = dw.out_channels * 28 * 28 * 9
    assert (
        part["flops_reduction_mean_released"]
        > full["flops_reduction_mean_released"] + dw_macs / full["dense_macs"] * 0.99
    )


def test_paper_plan_models_and_widths():
    assert len(find_sites(build_small("resnet56", width=0.25))) == 1 + 2 * 27
    assert len(find_sites(build_small("mobilenetv1-cifar", width=0.125))) == 1 + 2 * 13
    v = build_small("vgg16", width=0.125)
    assert len(find_sites(v)) == 13 and v(torch.zeros(1, 1, 28, 28)).shape == (1, 10)
    assert parse_small_name("vgg16@0.5") == ("vgg16", 0.5) and parse_small_name("resnet") == ("resnet", None)
    with pytest.raises(UsageError, match="width multiplier"):
        parse_small_name("vgg16@wide")
    with pytest.raises(UsageError, match="fixed width"):
        build_small("resnet", width=2.0)


def test_crossover_rows_and_gather_parity_at_each_share():
    from compress.prune.ftwt.execute import crossover

    rows = crossover(channels=(8,), hw=(4,), kept=(1.0, 0.5), reps=2)
    assert [(r["channels"], r["hw"], r["kept"]) for r in rows] == [(8, 16, 1.0), (8, 16, 0.5)]
    assert all(r["dense_us"] > 0 and r["gather_us"] > 0 for r in rows)
