"""Export + parity for a UPDP-merged model directory (ONNX Runtime and OpenVINO, dynamic batch)."""

from __future__ import annotations

import torch

from compress.prune.updp.latency import MacsBlockLatency

torch.set_num_threads(1)


def test_merged_model_exports_with_parity(tmp_path):
    from compress.export import export_model
    from compress.prune import prune

    r = prune(
        method="updp",
        model="timm:test_convnext",
        data="digits",
        epochs=1,
        blocks=2,
        out=tmp_path / "run",
        progress=False,
        latency=MacsBlockLatency(),
        train_limit=128,
        score_images=64,
        seed=0,
    )
    assert r["merge_check"]["ok"]
    res = export_model(
        str(tmp_path / "run" / "model"),
        out=tmp_path / "exp",
        formats=["onnx", "openvino"],
        batch="dynamic",
        data="digits",
        samples=16,
    )
    out = res.to_json()
    assert res.passed, out
    assert len(out["formats"]) >= 2
    for f in out["formats"]:
        assert f["passed"] and f["max_rel_err"] < 1e-4 and f["top1_agreement"] >= 0.99
        assert len(f["sha256"]) == 64
