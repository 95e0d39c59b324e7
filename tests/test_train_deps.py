"""DεpS step semantics (ALGORITHMS.md §2.4-2.5) and exact resume, on digits with a tiny space."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _train_fixtures import load_state, tiny  # noqa: E402

torch = pytest.importorskip("torch")
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from compress.train import net as netapi
    from compress.train.loop import prepare

    cfg = tiny(tmp_path_factory.mktemp("deps") / "run")
    space, data = prepare(cfg)
    return cfg, space, data, netapi


def _grads(net, terms, x, y, **kw):
    from compress.train import net as netapi
    from compress.train.steps import run_terms

    return run_terms(
        net, net.set_active, terms, x, y, forward=netapi.forward, active_masks=lambda: netapi.active_masks(net), **kw
    )


def test_plan_follows_the_schedule(setup):
    from compress.train.recipes import get_recipe

    cfg, space, data, _ = setup
    spe = 8
    rec = get_recipe("deps")(cfg, space, steps_per_epoch=spe, total_steps=4 * spe, eta0=0.05)
    # shrink_start 2 epochs, ramp 1 epoch: teacher [0, 8), ramp [8, 16), shrink [16, 32)
    for t in range(8):
        p = rec.plan(t, {})
        assert p.phase == "teacher" and len(p.terms) == 1 and p.terms[0].role == "max" and p.beta == 0.0
    ramp = [rec.plan(t, {"reorganized": True}) for t in range(8, 16)]
    assert [p.phase for p in ramp] == ["ramp"] * 8
    betas = [p.terms[1].weight for p in ramp]
    assert betas[0] == 0.0 and all(a < b for a, b in zip(betas, betas[1:])) and betas[-1] < 1.0
    assert all(p.terms[0].weight == 1.0 for p in ramp)  # largest subnet: max_multiplier
    first = rec.plan(8, {})
    assert first.events == ["reorganize"]  # once, at the first non-teacher step
    for t in range(16, 32):
        p = rec.plan(t, {"reorganized": True})
        assert p.phase == "shrink" and [q.weight for q in p.terms] == [1.0] * 4
        assert [q.role for q in p.terms] == ["max", "min", "random", "random"]
        assert p.terms[1].config == rec.min_cfg()
    # every rank / a resumed run draws the same random subnets at a step; other steps differ
    assert rec.plan(20, {}).terms[2].config == rec.plan(20, {}).terms[2].config
    assert len({str(rec.plan(t, {}).terms[2].config) for t in range(16, 32)}) > 1


def test_smallest_gets_kd_gradient_scaled_by_beta(setup):
    """G = grad(CE_ls(max)) + β · grad(T² CE(softmax(z_min/T), softmax(z_max/T)))."""
    from compress.train.steps import SubnetTerm, soft_ce

    cfg, space, data, netapi = setup
    net = netapi.build(space, seed=1)
    x, y = data.train.images[:32], data.train.labels[:32]
    mx, mn = space.max_config(), netapi.min_config(space, kernel="max")
    # reference gradients computed by hand
    net.set_active(mx)
    z = netapi.forward(net, x)
    torch.nn.functional.cross_entropy(z, y, label_smoothing=0.1).backward()
    g_max = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
    net.zero_grad(set_to_none=True)
    p_t = torch.softmax(z.detach(), 1)
    net.set_active(mn)
    soft_ce(netapi.forward(net, x), p_t).backward()
    g_min = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
    net.zero_grad(set_to_none=True)
    for beta in (0.0, 0.3, 1.0):
        G, losses = _grads(net, [SubnetTerm(mx, 1.0, "max"), SubnetTerm(mn, beta, "min")], x, y)
        for n in G:
            ref = g_max.get(n, torch.zeros_like(G[n])) + beta * g_min.get(n, torch.zeros_like(G[n]))
            torch.testing.assert_close(G[n], ref, atol=1e-6, rtol=1e-5)
        assert set(losses) == {"max", "min"}
    # β = 0: exactly the full model's gradient (the smallest subnet contributes nothing)
    G0, _ = _grads(net, [SubnetTerm(mx, 1.0, "max"), SubnetTerm(mn, 0.0, "min")], x, y)
    assert all(torch.equal(G0[n], g_max.get(n, torch.zeros_like(G0[n]))) for n in G0)


def test_aggregation_avg_and_sqrt_divide_by_mask_counts(setup):
    from compress.train.steps import SubnetTerm

    cfg, space, data, netapi = setup
    net = netapi.build(space, seed=2)
    x, y = data.train.images[:16], data.train.labels[:16]
    mx, mn = space.max_config(), netapi.min_config(space, kernel="max")
    terms = [SubnetTerm(mx, 1.0, "max"), SubnetTerm(mn, 1.0, "min")]
    Gs, _ = _grads(net, terms, x, y, aggregation="sum")
    Ga, _ = _grads(net, terms, x, y, aggregation="avg")
    Gq, _ = _grads(net, terms, x, y, aggregation="sqrt")
    net.set_active(mx)
    m_max = netapi.active_masks(net)
    net.set_active(mn)
    m_min = netapi.active_masks(net)
    n = "blocks.0.pw1.weight"
    count = m_max[n].float() + m_min[n].float()
    assert count.max() == 2 and (count == 1).any()  # shared and max-only elements both exist
    torch.testing.assert_close(Ga[n], torch.where(count > 0, Gs[n] / count.clamp_min(1), torch.zeros_like(Gs[n])))
    torch.testing.assert_close(
        Gq[n], torch.where(count > 0, Gs[n] / count.clamp_min(1).sqrt(), torch.zeros_like(Gs[n]))
    )


def test_micro_batches_equal_one_batch_without_batch_statistics(setup):
    """accum_steps splits the batch; with BN in eval mode (no batch statistics) the mean is the same."""
    from compress.train.steps import SubnetTerm

    cfg, space, data, netapi = setup
    net = netapi.build(space, seed=3).eval()
    x, y = data.train.images[:32], data.train.labels[:32]
    terms = [SubnetTerm(space.max_config(), 1.0, "max"), SubnetTerm(netapi.min_config(space), 0.5, "min")]
    G1, _ = _grads(net, terms, x, y)
    G2, _ = _grads(net, terms, x, y, micro=2)
    for n in G1:
        torch.testing.assert_close(G1[n], G2[n], atol=1e-6, rtol=1e-4)


def test_run_changes_weights_and_resume_is_bitwise(tmp_path):
    """A 32-step DεpS run (teacher, ramp, shrink) and the same run stopped at step 13 and resumed
    give bit-identical weights (per-step seeds, saved optimizer and data position)."""
    from compress.train import train
    from compress.train.metrics import MetricsLog

    a = train(tiny(tmp_path / "a"), progress=False)
    recs = MetricsLog(tmp_path / "a" / "metrics.jsonl").records()
    train_recs = [r for r in recs if r["kind"] == "train"]
    assert [r["phase"] for r in train_recs][:8] == ["teacher"] * 8
    assert {r["phase"] for r in train_recs} == {"teacher", "ramp", "shrink"}
    assert all(r["beta"] == 0 for r in train_recs if r["phase"] == "teacher")
    assert all(r["beta"] == 1 for r in train_recs if r["phase"] == "shrink")
    assert all("min" not in r["loss"] for r in train_recs if r["phase"] == "teacher")
    assert all("min" in r["loss"] for r in train_recs if r["phase"] != "teacher")
    assert (tmp_path / "a" / "curves.png").stat().st_size > 1000
    assert a.steps == 32 and {r["name"] for r in a.eval} == {"min", "max"}

    b1 = train(tiny(tmp_path / "b", max_steps=13), progress=False)
    assert b1.steps == 13
    with pytest.raises(Exception, match="--resume"):
        train(tiny(tmp_path / "b"), progress=False)
    b2 = train(tiny(tmp_path / "b"), resume=True, progress=False)
    assert b2.resumed_from == 13 and b2.steps == 32
    sa, sb = load_state(a.supernet), load_state(b2.supernet)
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    init = {
        k: v
        for k, v in __import__("compress.train.net", fromlist=["x"])
        .build(__import__("compress.train.loop", fromlist=["x"]).prepare(tiny(tmp_path / "c"))[0], seed=0)
        .state_dict()
        .items()
    }
    changed = [k for k in sa if k.endswith("weight") and not torch.equal(sa[k], init[k])]
    assert len(changed) > 10
    steps = [r["step"] for r in MetricsLog(tmp_path / "b" / "metrics.jsonl").records() if r["kind"] == "train"]
    assert steps == sorted(set(steps))  # the resumed log has no duplicated steps


@pytest.mark.parametrize("recipe", ["bignas", "ofa-ps"])
def test_baseline_recipes_run(tmp_path, recipe):
    from compress.train import train
    from compress.train.metrics import MetricsLog

    res = train(
        tiny(
            tmp_path / recipe,
            recipe=recipe,
            epochs=3,
            shrink_start=None,
            ramp_epochs=None,
            elastic_kernel=True,
            train_limit=128,
        ),
        progress=False,
    )
    phases = [r["phase"] for r in MetricsLog(tmp_path / recipe / "metrics.jsonl").records() if r["kind"] == "train"]
    if recipe == "bignas":
        assert set(phases) == {"shrink"}
    else:
        assert phases[0] == "full" and phases[-1] == "expand-2" and "kernel" in phases
    assert res.steps == 12 and all(0 <= r["top1"] <= 1 for r in res.eval)
