"""`compress train` / `compress eval`: clean errors for bad arguments, eval JSON, subnet files."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from _train_fixtures import TINY_SPACE  # noqa: E402

from compress.cli.main import app

runner = CliRunner()


@pytest.mark.parametrize(
    "args, needle",
    [
        (
            ["--family", "convnext-smal-input", "--data", "digits"],
            "unknown supernet family 'convnext-smal-input' (did you mean 'convnext-small-input'",
        ),
        (["--data", "imagefolder:/nonexistent/dir"], "imagefolder path not found"),
        (["--data", "fashion-mnits"], "unknown dataset 'fashion-mnits'"),
        (["--epochs", "0"], "--epochs must be at least 1"),
        (["--recipe", "ofa-pz"], "train options: recipe"),
        (["--aggregation", "mean"], "aggregation"),
    ],
)
def test_train_bad_arguments_error_cleanly(tmp_path, args, needle):
    res = runner.invoke(app, ["train", "--out", str(tmp_path / "o"), *args])
    assert res.exit_code == 2, res.output
    line = res.output.strip().splitlines()[-1]
    assert line.startswith("error: ") and needle in line, res.output
    assert "Traceback" not in res.output


def test_train_requires_out():
    res = runner.invoke(app, ["train", "--data", "digits"])
    assert res.exit_code == 2 and "--out is required" in res.output


def test_ist_needs_two_processes(tmp_path):
    res = runner.invoke(
        app, ["train", "--out", str(tmp_path / "o"), "--data", "digits", "--strategy", "ist", "--epochs", "1"]
    )
    assert res.exit_code == 2 and "needs at least 2 processes" in res.output


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    from compress.supernet import save_checkpoint
    from compress.train import net as netapi

    space = netapi.get_space("convnext-small-input", num_classes=10, in_channels=1, image_size=8, overrides=TINY_SPACE)
    p = tmp_path_factory.mktemp("ck") / "supernet.safetensors"
    save_checkpoint(p, netapi.build(space, seed=0))
    return p, space


def test_eval_json_lists_subnets(tiny_ckpt, tmp_path):
    p, space = tiny_ckpt
    res = runner.invoke(
        app,
        [
            "eval",
            str(p),
            "--data",
            "digits",
            "--subnets",
            "min,max,random:2",
            "--json",
            "--calib-size",
            "64",
            "--out",
            str(tmp_path / "ev"),
        ],
    )
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert [r["name"] for r in rows] == ["min", "max", "random0", "random1"]
    for r in rows:
        assert set(r) >= {"config", "top1", "params", "macs"} and 0.0 <= r["top1"] <= 1.0
        assert r["params"] == space.count(space.config_from_dict(r["config"])).params
    assert rows[0]["macs"] < rows[1]["macs"]
    assert (tmp_path / "ev" / "eval.json").is_file() and (tmp_path / "ev" / "manifest.json").is_file()


def test_eval_accepts_search_subnet_file(tiny_ckpt, tmp_path):
    p, space = tiny_ckpt
    cfg = space.min_config().to_dict()
    sub = tmp_path / "subnet.json"
    sub.write_text(json.dumps({"format": "compress-subnet", "version": 1, "supernet": {"path": str(p)}, "config": cfg}))
    res = runner.invoke(app, ["eval", str(sub), "--data", "digits", "--json", "--calib-size", "64"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert rows[0]["name"] == "subnet" and rows[0]["config"] == cfg
    res2 = runner.invoke(
        app, ["eval", str(p), "--data", "digits", "--subnets", f"max,{sub}", "--json", "--calib-size", "64"]
    )
    assert res2.exit_code == 0, res2.output
    assert [r["name"] for r in json.loads(res2.stdout)] == ["max", "subnet"]


def test_eval_bad_inputs(tiny_ckpt):
    p, _ = tiny_ckpt
    res = runner.invoke(app, ["eval", str(p), "--data", "digits", "--subnets", "medium"])
    assert res.exit_code == 2 and "bad subnet spec 'medium'" in res.output
    res = runner.invoke(app, ["eval", "/nonexistent.safetensors", "--data", "digits"])
    assert res.exit_code == 2 and "checkpoint not found" in res.output
