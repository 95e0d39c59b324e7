"""The pipeline's ``model: {file: my_model.py:build, weights: ...}`` source: your own plain-PyTorch
model, named the way ``--model`` names it on the command line.

Fast checks of the config (the reference parses; a malformed one, both kinds or neither are one-line
errors with the fix), of the preflight (a missing file, an import error or a missing factory is
reported before anything is written) and one end-to-end run on a tiny generated image folder:
prune (UPDP) -> export (ONNX) -> bench -> ``compress check``, then an edit of the model file redoes
the prune stage (the file's SHA-256 is an input of the stage).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from compress.core.errors import UsageError

MODEL_PY = """
import torch.nn as nn


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dw, self.bn = nn.Conv2d(c, c, 3, padding=1, groups=c), nn.BatchNorm2d(c)
        self.pw1, self.act, self.pw2 = nn.Conv2d(c, 2 * c, 1), nn.ReLU(), nn.Conv2d(2 * c, c, 1)

    def forward(self, x):
        return x + self.pw2(self.act(self.pw1(self.bn(self.dw(x)))))


def build(num_classes=3, in_chans=3):
    return nn.Sequential(
        nn.Conv2d(in_chans, 8, 3, padding=1), nn.ReLU(), Block(8), Block(8),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes),
    )
"""

HEAD = """
name: own
seed: 0
data: {name: "imagefolder:data/shapes"}
devices:
  - {name: local-cpu}
"""


def _load(tmp_path: Path, text: str):
    from compress.pipeline.config import load_pipeline

    p = tmp_path / "p.yaml"
    p.write_text(text)
    return load_pipeline(p)


def test_file_source_parses_and_names_the_cli_reference(tmp_path: Path) -> None:
    cfg = _load(tmp_path, HEAD + "model: {file: my_model.py:build, weights: w.safetensors, num_classes: 3}\n")
    assert cfg.model.file == "my_model.py:build" and cfg.model.timm is None
    assert cfg.model.ref == "my_model.py:build" and cfg.model.num_classes == 3
    timm = _load(tmp_path, HEAD + "model: {timm: resnet18}\n")
    assert timm.model.ref == "timm:resnet18"


@pytest.mark.parametrize(
    "model, expect",
    [
        ("{file: my_model.py}", ["model", "is not a model reference", "my_model.py:build"]),
        ("{file: my_model:build}", ["is not a model reference", "path/to/model.py:factory"]),
        ("{timm: resnet18, file: my_model.py:build}", ["give one of `timm: NAME` or `file:"]),
        ("{weights: w.safetensors}", ["give one of `timm: NAME` or `file:"]),
        ("{fiel: my_model.py:build}", ["unknown key 'fiel'", "did you mean 'file'"]),
    ],
)
def test_bad_model_source_is_one_line_with_the_fix(tmp_path: Path, model: str, expect: list[str]) -> None:
    with pytest.raises(UsageError) as ei:
        _load(tmp_path, HEAD + f"model: {model}\n")
    msg = str(ei.value)
    assert "\n" not in msg, msg
    for e in expect:
        assert e in msg, msg


@pytest.mark.parametrize(
    "source, expect",
    [
        ("", ["model.file: file not found", "fix: give the path of your model's .py file"]),
        (MODEL_PY.replace("def build(", "def biuld("), ["no callable 'build'", "did you mean 'biuld'", "fix: define"]),
        ("import no_such_module_here\n", ["importing it failed", "ModuleNotFoundError", "fix: fix my_model.py"]),
    ],
)
def test_preflight_checks_the_model_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, expect: list[str]
) -> None:
    from compress.cli.main import app

    monkeypatch.chdir(tmp_path)
    _shapes(tmp_path / "data" / "shapes", n=2)
    if source:
        (tmp_path / "my_model.py").write_text(source)
    (tmp_path / "p.yaml").write_text(HEAD + "model: {file: my_model.py:build}\n")
    r = CliRunner().invoke(app, ["pipeline", "p.yaml", "--out", "run", "--check-only"])
    assert r.exit_code == 2, r.output
    out = " ".join(r.output.split())  # rich wraps long lines
    for e in expect:
        assert e in out, out
    assert not (tmp_path / "run").exists()


def test_preflight_refuses_num_classes_that_do_not_match_the_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from compress.cli.main import app

    monkeypatch.chdir(tmp_path)
    _shapes(tmp_path / "data" / "shapes", n=2)
    (tmp_path / "my_model.py").write_text(MODEL_PY)
    (tmp_path / "p.yaml").write_text(HEAD + "model: {file: my_model.py:build, num_classes: 10}\n")
    r = CliRunner().invoke(app, ["pipeline", "p.yaml", "--out", "run", "--check-only"])
    out = " ".join(r.output.split())
    assert r.exit_code == 2, out
    assert (
        "model.num_classes is 10 but imagefolder:data/shapes has 3 classes" in out and "fix: set num_classes: 3" in out
    )
    (tmp_path / "p.yaml").write_text(HEAD + "model: {file: my_model.py:build, num_classes: 3}\n")
    r = CliRunner().invoke(app, ["pipeline", "p.yaml", "--out", "run", "--check-only"])
    assert r.exit_code == 0, r.output


def _shapes(root: Path, *, n: int) -> None:
    """3 classes of 16x16 images, one colour channel brightened per class (learnable, tiny)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for k, cls in enumerate(("a", "b", "c")):
        d = root / cls
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = rng.integers(0, 60, (16, 16, 3)).astype(np.uint8)
            img[..., k] += 150
            Image.fromarray(img).save(d / f"{i:03d}.png")


def test_pipeline_prunes_exports_benches_and_gates_your_own_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch
    from safetensors.torch import save_file

    from compress.cli.main import app
    from compress.models.pyfile import build_pyfile

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))
    _shapes(tmp_path / "data" / "shapes", n=20)
    (tmp_path / "my_model.py").write_text(MODEL_PY)
    model = build_pyfile(tmp_path / "my_model.py", "build", num_classes=3).module
    with torch.no_grad():  # weights of our own, not the factory's seeded init
        for p in model.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    save_file(model.state_dict(), "w.safetensors")
    (tmp_path / "p.yaml").write_text(
        HEAD
        + """
model: {file: my_model.py:build, weights: w.safetensors, num_classes: 3}
prune: {method: updp, blocks: 1, epochs: 1, latency: macs-estimate}
export: {formats: [onnx], samples: 8}
bench: {device: local-cpu, runtimes: [onnxruntime], iterations: 10, warmup: 2, rounds: 1, threads: 1}
gates: {max_parity_err: 1.0e-3, max_top1_drop: 100}
"""
    )
    cli = CliRunner()
    r = cli.invoke(app, ["pipeline", "p.yaml", "--out", "run"])
    assert r.exit_code == 0, r.output
    base = json.loads(Path("run/stages/prune/model/model.json").read_text())["base"]
    assert base["kind"] == "pyfile" and base["factory"] == "build"
    assert base["path"] == str((tmp_path / "my_model.py").resolve())
    summary = json.loads(Path("run/summary.json").read_text())
    assert summary["accuracy"]["top1_before"] is not None and summary["accuracy"]["top1_after"] is not None

    r = cli.invoke(app, ["check", "run", "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert res["passed"] and {g["name"] for g in res["gates"]} == {"max-parity-err", "max-top1-drop"}
    parity = next(g for g in res["gates"] if g["name"] == "max-parity-err")
    assert 0 <= parity["measured"] < 1e-3

    # an edit of your model file redoes pruning (and what depends on it); nothing else changed, so
    # a plain re-run before the edit redoes nothing
    r = cli.invoke(app, ["pipeline", "p.yaml", "--out", "run"])
    assert r.exit_code == 0 and "all cached" in r.output, r.output
    (tmp_path / "my_model.py").write_text(MODEL_PY + "\n# edited\n")
    r = cli.invoke(app, ["pipeline", "p.yaml", "--out", "run"])
    assert r.exit_code == 0, r.output
    assert "stages run: prune" in r.output, r.output
