"""IST accuracy options: the hidden-sum rescale hook, the fine-tune phase's validation and bytes."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _train_fixtures import tiny, tiny_args  # noqa: E402

torch = pytest.importorskip("torch")
torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]


def test_rescale_hooks_equal_scaling_the_consumer_weights(tmp_path):
    """A pre-hook multiplying the hidden input of pw2 by S is the same net as pw2's weight times S
    (so each chunk's contribution is an unbiased estimate of the full hidden sum)."""
    from compress.train import net as netapi
    from compress.train.ist import _rescale_hooks, hidden_layout
    from compress.train.loop import prepare

    space, data = prepare(tiny(tmp_path / "r"))
    net = netapi.build(space, seed=0).eval()
    net.set_active(space.max_config())
    ref = copy.deepcopy(net)
    layout = hidden_layout(net)
    assert layout, "the tiny ConvNeXt space has blocks with hidden channels"
    with torch.no_grad():
        for _, _, members in layout:
            for name, dims in members.items():
                if 1 in dims and name.endswith(".weight"):
                    dict(ref.named_parameters())[name].mul_(2.0)
    x = data.val.images[:8] if hasattr(data.val, "images") else next(iter(data.val))[0][:8]
    plain = netapi.forward(net, x)
    hooks = _rescale_hooks(net, layout, 2.0)
    with torch.no_grad():
        hooked, scaled = netapi.forward(net, x), netapi.forward(ref, x)
    assert torch.allclose(hooked, scaled, atol=1e-5) and not torch.allclose(hooked, plain, atol=1e-3)
    for h in hooks:
        h.remove()
    assert torch.allclose(netapi.forward(net, x), plain)


def test_finetune_longer_than_the_run_is_refused(tmp_path):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="ist_finetune_epochs"):
        tiny(tmp_path / "x", strategy="ist", ist_finetune_epochs=5)


@pytest.mark.slow
def test_ist_finetune_phase_trains_the_full_model_data_parallel(tmp_path):
    """The last epoch all-reduces every gradient: more bytes per step than plain IST, same steps."""
    from compress.train.distributed import torchrun_command

    out = tmp_path / "ft"
    args = tiny_args(
        out,
        strategy="ist",
        batch_size=32,
        base_lr=0.05,
        ist_rounds_iters=4,
        ist_finetune_epochs=1,
        epochs=4,
        train_limit=256,
        shrink_start=2,
        ramp_epochs=1,
        checkpoint_every=5,
    )
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    res = subprocess.run(torchrun_command(2, args), cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    result = json.loads((out / "result.json").read_text())
    assert result["steps"] == 16
    phases = [json.loads(ln).get("phase") for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert phases.count("finetune") == 4 and "ist" in phases  # 4 steps per epoch, log_every 1
    from compress.train import net as netapi
    from compress.train.loop import prepare

    space, _ = prepare(tiny(tmp_path / "shape"))
    grad_bytes = sum(p.numel() * 4 for p in netapi.build(space).parameters())
    # ring all-reduce of every gradient (S = 2: grad_bytes per rank) on 4 of the 16 steps, plus IST's exchanges
    assert result["bytes_sent_per_step_per_rank"] >= 0.25 * grad_bytes
