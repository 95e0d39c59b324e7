"""The training core shared by the loop and IST (issue #29): options, per-run traffic, manifest, IST resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _train_fixtures import tiny, tiny_args  # noqa: E402

from compress.core.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]


def test_options_take_model_defaults_file_values_and_given_options(tmp_path):
    from compress.train.config import TrainConfig
    from compress.train.options import config_from_options

    cfg = config_from_options({"out": tmp_path / "o", "lr": None, "kd": False, "fp16": True})
    assert cfg.family == TrainConfig.model_fields["family"].default and cfg.base_lr == 0.1625
    assert cfg.inplace_distillation is False and cfg.save_dtype == "float16"
    f = tmp_path / "c.yaml"
    f.write_text("epochs: 3\nbase_lr: 0.5\ndata: digits\n")
    cfg = config_from_options({"out": tmp_path / "o", "lr": 0.25, "epochs": None}, config_file=f)
    assert (cfg.epochs, cfg.base_lr, cfg.data) == (3, 0.25, "digits")  # typed option over file over model
    with pytest.raises(UsageError, match="--epochs must be at least 1"):
        config_from_options({"out": tmp_path, "epochs": 0})
    with pytest.raises(UsageError, match="--out is required"):
        config_from_options({})
    with pytest.raises(UsageError, match="train options: recipe"):
        config_from_options({"out": tmp_path, "recipe": "ofa-pz"})


def test_traffic_is_counted_per_run(tmp_path):
    import torch
    import torch.distributed as dist

    from compress.train import distributed

    a, b = distributed.init(), distributed.init()
    assert a.sent is not b.sent and a.sent.bytes == 0.0
    net = torch.nn.Linear(3, 2)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        distributed.broadcast_state(net, sent=a.sent)
        distributed.broadcast_state(net, sent=a.sent)
        distributed.broadcast_state(net, sent=b.sent)
    finally:
        dist.destroy_process_group()
    assert a.sent.bytes == 2 * (3 * 2 + 2) * 4 and b.sent.bytes == (3 * 2 + 2) * 4


def test_train_from_python_writes_the_manifest_as_the_cli_does(tmp_path):
    from compress.train import train

    res = train(tiny(tmp_path / "run", epochs=2, max_steps=2, eval_every_epochs=0), progress=False)
    man = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert man["command"] == "train" and man["seeds"] == {"seed": 0}
    assert "supernet.safetensors" in json.dumps(man["outputs"]) and res.steps == 2 and res.resumed_from is None


@pytest.mark.slow
def test_ist_resume_reports_where_it_resumed(tmp_path):
    """IST shares the loop's resume: ``resumed_from`` is the checkpoint's step (it was always null)."""
    from compress.train.distributed import torchrun_command

    out = tmp_path / "ist"
    kw = dict(strategy="ist", batch_size=32, base_lr=0.05, ist_rounds_iters=2, epochs=2, checkpoint_every=2)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    first = subprocess.run(
        torchrun_command(2, [*tiny_args(out, max_steps=4, **kw)]), cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert first.returncode == 0, first.stderr[-3000:]
    assert json.loads((out / "result.json").read_text())["resumed_from"] is None
    again = subprocess.run(
        torchrun_command(2, [*tiny_args(out, **kw), "--resume"]), cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert again.returncode == 0, again.stderr[-3000:]
    result = json.loads((out / "result.json").read_text())
    assert result["resumed_from"] == 4 and result["steps"] == 8


def test_progressive_training_resumes_from_its_epoch_checkpoint(tmp_path):
    """UPDP's progressive training on the shared EpochCheckpoint: a run stopped in epoch 2 resumes from
    epoch 1's checkpoint and ends with the uninterrupted run's weights; other settings are refused."""
    import timm
    import torch

    from compress.data import load_dataset
    from compress.prune.updp.progressive import ProgressiveConfig, train_progressive
    from compress.prune.updp.surgery import insert_pruned

    ds = load_dataset("digits", image_size=32, train_limit=96)
    cfg = ProgressiveConfig(epochs=2, batch_size=32, ramp_share=0.5)

    def student():
        torch.manual_seed(0)
        m = timm.create_model("test_convnext", num_classes=10, in_chans=1)
        insert_pruned(m, ["stages.1.blocks.0"], lam=0.0)
        return m

    whole = student()
    train_progressive(whole, None, ds.train, config=cfg, ckpt_dir=tmp_path / "a")

    class Stop(Exception):
        pass

    def stop_in_epoch_two(step, total, rec):
        if step > 3:  # 3 steps per epoch
            raise Stop

    broken = student()
    with pytest.raises(Stop):
        train_progressive(broken, None, ds.train, config=cfg, ckpt_dir=tmp_path / "b", progress=stop_in_epoch_two)
    assert json.loads((tmp_path / "b" / "ckpt.json").read_text())["epoch"] == 1
    resumed = student()
    res = train_progressive(resumed, None, ds.train, config=cfg, ckpt_dir=tmp_path / "b")
    assert res["steps"] == 6
    for (k, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k
    with pytest.raises(UsageError, match="other settings"):
        train_progressive(student(), None, ds.train, config=ProgressiveConfig(epochs=3), ckpt_dir=tmp_path / "b")
