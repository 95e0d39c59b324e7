"""FTWT end to end on digits: result keys, model-dir round trip, ONNX parity with gates, resume, bad args."""

import json

import numpy as np
import onnx
import pytest
import torch

from compress.core.errors import UsageError
from compress.prune import METHODS, prune

torch.set_num_threads(1)

FAST = dict(image_size=16, batch_size=64, train_limit=384, eval_limit=200, progress=False)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ftwt") / "run"
    res = prune(
        method="ftwt",
        model="small:resnet",
        data="digits",
        epochs=2,
        mass=0.9,
        seed=0,
        out=str(out),
        pretrain_epochs=2,
        **FAST,
    )
    return out, res


def test_result_keys_and_files(run):
    out, res = run
    for k in (
        "top1_before",
        "top1_after",
        "flops_reduction_mean",
        "flops_reduction_p10",
        "flops_reduction_p90",
        "predictor_macs",
        "flops_reduction_mean_with_predictors",
        "dense_macs",
        "runtime_note",
    ):
        assert k in res
    assert 0.0 <= res["flops_reduction_p10"] <= res["flops_reduction_mean"] + 1e-9 <= res["flops_reduction_p90"] + 2e-9
    assert res["gated_layers"] == 7 and "ftwt" in METHODS
    assert "cannot exploit the masks" in res["runtime_note"]
    # input dependence: entropy per layer, histogram over all test images, by class with names
    dep = res["input_dependence"]
    assert len(dep["layers"]) == 7 and 0.0 <= res["mask_entropy_mean"] <= 1.0
    assert sum(dep["histogram"]["counts"]) == 200 and len(dep["histogram"]["edges"]) == 51
    assert sum(c["n"] for c in dep["by_class"]) == 200 and all("name" in c for c in dep["by_class"])
    assert dep["p90_minus_p10"] == pytest.approx(res["flops_reduction_p90"] - res["flops_reduction_p10"])
    assert 0.0 <= res["flops_reduction_mean_released"] <= 1.0 and 0.9 < res["released_gated_share"] <= 1.0
    for f in (
        "metrics.json",
        "history.json",
        "manifest.json",
        "model/model.json",
        "model/model.safetensors",
        "model.onnx",
        "per_sample_macs.npy",
        "flops_hist.png",
    ):
        assert (out / f).is_file(), f
    man = json.loads((out / "manifest.json").read_text())
    assert "model/model.safetensors" in man["outputs"] and man["seeds"] == {"seed": 0}
    macs = np.load(out / "per_sample_macs.npy")
    assert macs.shape == (200,)
    assert abs(1 - macs.mean() / res["dense_macs"] - res["flops_reduction_mean"]) < 1e-6


def test_model_dir_round_trip_reinserts_gates(run):
    from compress.data import load_dataset
    from compress.models import load_model
    from compress.nn.evaluate import top1
    from compress.prune.ftwt.gates import GatedConv

    out, res = run
    lm = load_model(str(out / "model"))
    assert sum(isinstance(m, GatedConv) for m in lm.module.modules()) == 7
    assert lm.transforms[-1]["name"] == "ftwt-gates"
    test = load_dataset("digits", image_size=16, seed=0, train_limit=384).test.subset(200)
    assert top1(lm.module, test.images, test.labels) == pytest.approx(res["top1_after"])


def test_onnx_keeps_gates_in_graph_and_matches_torch(run):
    out, res = run
    par = res["export"]["parity"]
    assert par["passed"] and par["max_rel_err"] < 1e-4 and par["top1_agreement"] == 1.0
    ov = res["export"]["parity_openvino"]
    assert ov.get("skipped") or (ov["passed"] and ov["top1_agreement"] == 1.0)
    ops = [n.op_type for n in onnx.load(str(out / "model.onnx")).graph.node]
    assert ops.count("Greater") == 7  # one in-graph hard threshold per gate


def test_resume_from_checkpoint_gives_the_same_result(run, tmp_path):
    out, res = run
    again = prune(
        method="ftwt",
        model="small:resnet",
        data="digits",
        epochs=2,
        mass=0.9,
        seed=0,
        out=str(out),
        pretrain_epochs=2,
        export=False,
        **FAST,
    )
    assert again["top1_after"] == res["top1_after"]
    assert again["flops_reduction_mean"] == res["flops_reduction_mean"]


@pytest.mark.parametrize(
    "kw,msg",
    [
        ({"mode": "jiont"}, "unknown FTWT mode 'jiont'"),
        ({"mass": 0.0}, "mass must be in"),
        ({"mass": 1.5}, "mass must be in"),
        ({"epochs": 0}, "epochs must be"),
        ({"learning_rate": 0.1}, "unknown key 'learning_rate'"),
        ({"pool": "min"}, "pool"),
    ],
)
def test_bad_arguments_error_cleanly(kw, msg):
    args = dict(model="small:resnet", data="digits", epochs=1, **FAST) | kw
    with pytest.raises(UsageError, match=msg):
        prune(method="ftwt", **args)


def test_class_mismatch_is_a_usage_error(tmp_path):
    from compress.prune.ftwt.source import build_small_loaded

    lm = build_small_loaded("vgg", num_classes=3, in_chans=1, image_size=16)
    with pytest.raises(UsageError, match="classes"):
        prune(method="ftwt", model=lm, data="digits", epochs=1, **FAST)


def test_mass_default_is_held_once(monkeypatch):
    """``mass=None`` (what the CLI passes without --mass) means FtwtOptions' default, DEFAULT_MASS."""
    from compress.prune.ftwt import DEFAULT_MASS
    from compress.prune.ftwt.api import FtwtOptions, validate_options
    from compress.prune.ftwt.train import FtwtTrainConfig

    assert FtwtOptions().mass == DEFAULT_MASS == FtwtTrainConfig(epochs=1).mass
    o = validate_options(1, None, None, {}, out=None)
    assert (o.mass, o.mode, o.schedule) == (DEFAULT_MASS, "decoupled", "cosine")
    assert validate_options(1, 0.8, "joint", {}, out=None).mass == 0.8
