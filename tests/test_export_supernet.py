"""Export + parity for subnets of each supernet family, loaded through model directories
(base kind ``subnet``) so the export goes through ``compress.models.load_model`` like a user's."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from compress.export.api import export_model
from compress.export.onnx import read_metadata
from compress.models import LoadedModel, save_model_dir

torch.set_num_threads(1)
supernet = pytest.importorskip("compress.supernet")

FAMILIES = [
    pytest.param("mbv3-small-input", id="mbv3-small-input"),
    pytest.param("convnext-small-input", id="convnext-small-input", marks=pytest.mark.slow),
    pytest.param("ofa-mbv3", id="ofa-mbv3", marks=pytest.mark.slow),
    pytest.param("ofa-resnet", id="ofa-resnet", marks=pytest.mark.slow),
]


def _subnet_dir(family: str, path):
    from compress.supernet.bn import recalibrate_bn
    from compress.supernet.source import subnet_source

    net = supernet.build_supernet(family, seed=0)
    space = net.space
    cfg = space.sample(np.random.default_rng(0))
    net.set_active(cfg)
    module = net.export_active().eval()
    dataset = None
    if space.in_channels == 1 and space.num_classes == 10:
        from compress.data import load_dataset

        dataset = "digits"
        calib = load_dataset("digits", image_size=cfg.resolution, channels=1).calib.images[:256]
    else:
        calib = torch.randn(
            64, space.in_channels, cfg.resolution, cfg.resolution, generator=torch.Generator().manual_seed(0)
        )
    # random-initialised subnets whose BN stats were never estimated ignore their input; recalibrate
    # so that parity compares input-dependent outputs
    module = recalibrate_bn(module, cfg, calib)
    lm = LoadedModel(
        module=module,
        input_shape=(space.in_channels, cfg.resolution, cfg.resolution),
        num_classes=space.num_classes,
        source=subnet_source(space, cfg),
        dataset=dataset,
    )
    return save_model_dir(path, lm), cfg


@pytest.mark.parametrize("family", FAMILIES)
def test_subnet_export_and_parity(family, tmp_path):
    mdir, cfg = _subnet_dir(family, tmp_path / "model")
    res = export_model(str(mdir), out=tmp_path / "out", formats=["onnx", "ov"], samples=12, threads=1)
    for f in res.formats:
        assert f["passed"] is True, f["parity"]
        assert f["parity"]["warning"] == "", f["parity"]["warning"]  # outputs depend on the input
    meta = read_metadata(tmp_path / "out" / "model.onnx")
    assert json.loads(meta["compress.subnet"]) == cfg.to_dict()
    assert json.loads(meta["compress.source"])["family"] == family
