"""`compress train --device cuda`: one-line errors without GPUs; on a CUDA machine, each recipe trains
there, evaluates (BN recalibration, top-1), resumes bit-identically and matches the CPU run closely."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from _train_fixtures import load_state, tiny  # noqa: E402

from compress.cli.main import app

HAS_CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU (none visible to torch here)")


def test_device_errors_are_one_line(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["train", "--data", "digits", "--out", str(tmp_path / "o"), "--device", "tpu"])
    assert res.exit_code == 2 and "--device 'tpu' is not supported; use cpu or cuda" in res.output
    if HAS_CUDA:  # more processes than GPUs: NCCL needs one GPU per process
        args, needle = ["--device", "cuda", "--nproc", "64"], "GPU(s) visible, and NCCL needs one GPU per process"
    else:
        args, needle = ["--device", "cuda"], "--device cuda: no CUDA GPU is visible to torch here"
    res = runner.invoke(app, ["train", "--data", "digits", "--out", str(tmp_path / "o2"), *args])
    assert res.exit_code == 2, res.output
    line = res.output.strip().splitlines()[-1]
    assert line.startswith("error: ") and needle in line and "Traceback" not in res.output


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("recipe", ["deps", "ofa-ps", "bignas"])
def test_recipe_on_cuda_resumes_and_matches_cpu(tmp_path, recipe):
    from compress.train import train

    kw = dict(recipe=recipe, elastic_kernel=True)
    if recipe != "deps":
        kw.update(shrink_start=None, ramp_epochs=None)
    gpu = train(tiny(tmp_path / "gpu", device="cuda", **kw), progress=False)
    assert all(0 <= r["top1"] <= 1 for r in gpu.eval)
    part = train(tiny(tmp_path / "part", device="cuda", max_steps=13, **kw), progress=False)
    assert part.steps == 13
    whole = train(tiny(tmp_path / "part", device="cuda", **kw), resume=True, progress=False)
    assert whole.resumed_from == 13 and whole.steps == gpu.steps
    sg, sr = load_state(gpu.supernet), load_state(whole.supernet)
    assert all(torch.equal(sg[k], sr[k]) for k in sg), "a resumed CUDA run must equal the uninterrupted one"
    cpu = train(tiny(tmp_path / "cpu", **kw), progress=False)
    sc = load_state(cpu.supernet)
    # same seeds and data order: only floating-point order differs between the devices
    worst = max(float((sg[k].float() - sc[k].float()).abs().max()) for k in sc if sc[k].is_floating_point())
    assert worst < 5e-2, f"CUDA and CPU runs diverged: max |Δw| {worst:.3g}"
