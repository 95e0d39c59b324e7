"""compress.search end to end on a tiny supernet (digits): constraints, determinism, several devices,
infeasible budgets, the estimated-latency warning, run files, the model resolver and the CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _search_fixtures import make_checkpoint  # noqa: E402

FAST = dict(population=24, generations=15, predictor_samples=24, calib_images=64, val_images=120)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    return make_checkpoint(tmp_path_factory.mktemp("search") / "tiny.safetensors", train_steps=20)


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    return tmp_path_factory.mktemp("tables")  # empty: every device is roofline-estimated


def _search(ckpt, tables, **kw):
    from compress.search.api import search

    return search(supernet=ckpt, tables=tables, **{**FAST, **kw})


def _check_candidate(space, cost, lat, c, *, budget=None, max_params=None, max_macs=None, multiple=None):
    cfg = space.config_from_dict(c.config)
    g = space.to_genes(cfg)[None]
    cnt = space.count(cfg)
    assert (cnt.params, cnt.macs) == (c.params, c.macs)
    assert lat.predict_genes(g)[0] == pytest.approx(c.predicted_latency_ms, rel=1e-9)
    if budget is not None:
        assert c.predicted_latency_ms <= budget + 1e-12
    if max_params is not None:
        assert cnt.params <= max_params
    if max_macs is not None:
        assert cnt.macs <= max_macs
    if multiple:
        assert cost.channel_violations_genes(g, multiple)[0] == 0
        for s in space.block_specs(cfg):
            dims = [s.mid] if s.mid else []
            dims += [s.se_mid] if s.se else []
            assert all(d % multiple == 0 for d in dims)


def test_constraints_hold_for_every_returned_candidate(ckpt, tables):
    from compress.latency.predict import LatencyModel
    from compress.latency.space_cost import SpaceCost
    from compress.supernet import load_checkpoint

    space = load_checkpoint(ckpt).space
    cost = SpaceCost(space)
    lat = LatencyModel.load(device="local-cpu", space=space, tables=tables, warn=False)
    g = space.sample_genes(np.random.default_rng(0), 400)
    lats = lat.predict_genes(g)
    budget = float(np.quantile(lats, 0.4))
    max_params = int(np.quantile(cost.params_genes(g), 0.6))
    for algo in ("evolution", "nsga2", "random"):
        r = _search(
            ckpt,
            tables,
            devices=["local-cpu"],
            latency_ms=budget,
            max_params=max_params,
            channel_multiple=8,
            algorithm=algo,
        )
        dev = r.devices[0]
        assert dev.pareto, algo
        for c in [dev.selected, *dev.pareto]:
            _check_candidate(space, cost, lat, c, budget=budget, max_params=max_params, multiple=8)
        lats_front = [c.predicted_latency_ms for c in dev.pareto]
        accs_front = [c.predicted_top1 for c in dev.pareto]
        assert lats_front == sorted(lats_front) and accs_front == sorted(accs_front)
        assert dev.selected.predicted_top1 == pytest.approx(max(accs_front))


def test_same_seed_same_result_and_cache_reuse(ckpt, tables, tmp_path):
    a = _search(ckpt, tables, devices=["local-cpu"], latency_ms=10.0, seed=3, out=tmp_path / "a")
    b = _search(ckpt, tables, devices=["local-cpu"], latency_ms=10.0, seed=3, out=tmp_path / "b")
    assert b.predictor["cached"] is True
    da, db = a.to_dict(), b.to_dict()
    for k in ("selected", "pareto", "budget_ms", "device"):
        assert da[k] == db[k]
    assert (tmp_path / "a" / "pareto.csv").read_text() == (tmp_path / "b" / "pareto.csv").read_text()


def test_several_devices_give_one_front_and_subnet_each(ckpt, tables, tmp_path):
    r = _search(ckpt, tables, devices=["jetson", "local-cpu"], out=tmp_path / "run")
    d = r.to_dict()
    assert list(d["devices"]) == ["jetson-orin-nano", "local-cpu"]
    for name, dev in d["devices"].items():
        assert dev["device"] == name and dev["latency_source"] == "estimated" and dev["budget_ms"] is None
        assert dev["pareto"] and dev["selected"]["config"] in [c["config"] for c in dev["pareto"]]
        for k in ("config", "predicted_latency_ms", "predicted_top1", "params", "macs"):
            assert k in dev["selected"]
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert {
        "result.json",
        "pareto.csv",
        "pareto.png",
        "manifest.json",
        "subnet-jetson-orin-nano.json",
        "subnet-local-cpu.json",
    } <= files
    rows = (tmp_path / "run" / "pareto.csv").read_text().splitlines()
    assert {r.split(",")[0] for r in rows[1:]} == {"jetson-orin-nano", "local-cpu"}
    assert (tmp_path / "run" / "pareto.png").read_bytes()[:4] == b"\x89PNG"


def test_infeasible_budget_names_smallest_latency_and_config(ckpt, tables):
    from compress.core.errors import UsageError
    from compress.latency.predict import LatencyModel
    from compress.supernet import load_checkpoint

    space = load_checkpoint(ckpt).space
    lat = LatencyModel.load(device="local-cpu", space=space, tables=tables, warn=False)
    true_min = float(lat.predict_genes(space.sample_genes(np.random.default_rng(0), 5000)).min())
    with pytest.raises(UsageError) as e:
        _search(ckpt, tables, devices=["local-cpu"], latency_ms=1e-6)
    msg = str(e.value)
    assert "infeasible" in msg and "smallest reachable is" in msg and '"resolution"' in msg
    reported = float(msg.split("smallest reachable is ")[1].split(" ms")[0])
    assert reported <= true_min + 1e-3


def test_selected_subnet_file_loads_as_a_static_model(ckpt, tables, tmp_path):
    import torch

    from compress.models import load_model

    r = _search(ckpt, tables, devices=["local-cpu"], latency_ms=10.0, out=tmp_path / "run", rerank=3)
    sel = r.devices[0].selected
    assert sel.measured_top1 is not None and 0.0 <= sel.measured_top1 <= 1.0
    rec = json.loads((tmp_path / "run" / "subnet.json").read_text())
    assert (
        rec["format"] == "compress-subnet"
        and rec["config"] == sel.config
        and rec["measured"]["top1"] == sel.measured_top1
    )
    for ref in (tmp_path / "run", tmp_path / "run" / "subnet.json"):
        lm = load_model(ref)
        assert lm.source["config"] == sel.config and lm.predictions["device"] == "local-cpu"
        x = torch.zeros(2, *lm.input_shape)
        assert lm.module(x).shape == (2, 10)
    # measured top-1 of the loaded (recalibrated) model equals the search's rerank measurement
    from compress.search.dataset import SubnetEvaluator, eval_data_for
    from compress.supernet import load_checkpoint, read_checkpoint_header, resize_input

    data = eval_data_for(read_checkpoint_header(ckpt), calib_images=64, val_images=120)
    lm = load_model(tmp_path / "run" / "subnet.json")
    with torch.no_grad():
        pred = lm.module(resize_input(data.val_images, lm.input_shape[-1])).argmax(1)
    assert float((pred == data.val_labels).float().mean()) == pytest.approx(sel.measured_top1)
    del SubnetEvaluator, load_checkpoint


def test_cli_jetson_warns_estimated_and_json_keys(ckpt, tables):
    from typer.testing import CliRunner

    import compress.latency.predict as lp
    from compress.cli.main import app

    lp._WARNED.clear()
    args = [
        "search",
        "--device",
        "jetson",
        "--latency-ms",
        "50",
        "--supernet",
        str(ckpt),
        "--tables",
        str(tables),
        "--population",
        "16",
        "--generations",
        "5",
        "--predictor-samples",
        "24",
        "--json",
    ]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    err = res.stderr
    assert "ESTIMATED" in err and "compress profile --device jetson-orin-nano" in err
    assert err.count("ESTIMATED") == 1
    d = json.loads(res.stdout)
    for k in ("device", "runtime", "budget_ms", "latency_source", "selected", "pareto"):
        assert k in d
    assert d["device"] == "jetson-orin-nano" and d["latency_source"] == "estimated" and d["budget_ms"] == 50


def test_cli_errors_are_one_line(ckpt, tables):
    from typer.testing import CliRunner

    from compress.cli.main import app

    base = [
        "search",
        "--supernet",
        str(ckpt),
        "--tables",
        str(tables),
        "--population",
        "16",
        "--generations",
        "5",
        "--predictor-samples",
        "24",
    ]
    r = CliRunner().invoke(app, [*base, "--device", "jetsn"])
    assert r.exit_code == 2 and "did you mean" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = CliRunner().invoke(app, [*base, "--device", "local-cpu", "--latency-ms", "0.000001"])
    assert r.exit_code == 2 and "smallest reachable" in r.stderr
    r = CliRunner().invoke(app, [*base, "--device", "local-cpu", "--algorithm", "evolutoin"])
    assert r.exit_code == 2 and "evolution" in r.stderr
    r = CliRunner().invoke(app, [*base, "--device", "local-cpu", "--latency-ms", "5", "--pareto"])
    assert r.exit_code == 2


def test_public_function_is_compress_search(ckpt, tables):
    import compress
    import compress.search.api  # noqa: F401 - importing the subpackage must not break compress.search(...)

    r = compress.search(devices=["local-cpu"], latency_ms=10.0, supernet=ckpt, tables=tables, **FAST)
    assert r.devices[0].device == "local-cpu" and r.devices[0].selected.predicted_latency_ms <= 10.0


def test_refinement_scores_top_candidates_refits_and_repeats_from_the_cache(ckpt, tables, monkeypatch):
    from compress.search.dataset import SubnetEvaluator

    calls: list[int] = []
    real = SubnetEvaluator.top1
    monkeypatch.setattr(SubnetEvaluator, "top1", lambda self, cfg: calls.append(1) or real(self, cfg))
    r0 = _search(ckpt, tables, devices=["local-cpu"], latency_ms=10.0, seed=11, refine=0)
    assert r0.devices[0].refinement == [] and r0.predictor["refined_subnets"] == 0 and r0.devices[0].refine_s == 0
    calls.clear()
    a = _search(ckpt, tables, devices=["local-cpu"], latency_ms=10.0, seed=11, refine=2)
    rounds = a.devices[0].refinement
    assert 1 <= len(rounds) <= 2 and rounds[0]["evaluated"] >= 1 and a.devices[0].refine_s > 0
    scored = sum(rd["evaluated"] for rd in rounds)
    assert a.predictor["refined_subnets"] == scored and len(calls) <= scored
    for rd in rounds:
        if rd["evaluated"]:
            assert abs(rd["mean_error"]) <= rd["max_abs_error"] + 1e-12 and 0 <= rd["best_measured_top1"] <= 1
    # every scored subnet is in the pair cache, flagged as refinement data
    pairs = [
        row for f in Path(a.predictor["cache"]).parent.glob("pairs-*.json") for row in json.loads(f.read_text())["rows"]
    ]
    assert sum(1 for row in pairs if row.get("refine")) >= len(calls)
    # the repeat evaluates nothing (measurements and refitted predictors come from the cache): same result
    calls.clear()
    b = _search(ckpt, tables, devices=["local-cpu"], latency_ms=10.0, seed=11, refine=2)
    assert calls == [] and b.devices[0].refinement == rounds
    assert a.to_dict()["selected"] == b.to_dict()["selected"]
    assert isinstance(a.devices[0].selected_in_predictor_data, bool)
