"""torchrun / gloo: data parallel equals one process, SIGKILL recovery, IST partitions and rounds."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _train_fixtures import tiny, tiny_args  # noqa: E402

torch = pytest.importorskip("torch")
torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]


def _params(run_dir: Path) -> dict:
    from safetensors.torch import load_file

    from compress.train import net as netapi
    from compress.train.loop import prepare

    sd = load_file(str(run_dir / "supernet.safetensors"))
    space, _ = prepare(tiny(run_dir))
    names = {n for n, _ in netapi.build(space).named_parameters()}
    return {k: v for k, v in sd.items() if k in names}


def _env(**extra) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    env.pop("COMPRESS_TEST_FAULT", None)
    env.update(extra)
    return env


def _kill_at(step: int, rank: int) -> dict:
    """The test seam (tests/seams/sitecustomize.py) SIGKILLs ``rank`` before ``step`` on the first attempt."""
    import json

    spec = {"point": "train.step", "when": {"step": step, "rank": rank, "restart": 0}, "do": "kill"}
    return {
        "PYTHONPATH": os.pathsep.join([str(ROOT / "tests" / "seams"), str(ROOT)]),
        "COMPRESS_TEST_FAULT": json.dumps(spec),
    }


def _cli(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "compress", "train", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _torchrun(args: list[str], env: dict, *, nproc: int = 2, max_restarts: int = 0) -> subprocess.CompletedProcess:
    from compress.train.distributed import torchrun_command

    return subprocess.run(
        torchrun_command(nproc, args, max_restarts=max_restarts),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


KW = dict(epochs=4, train_limit=256, shrink_start=2, ramp_epochs=1, checkpoint_every=5)


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """`compress train --nproc 2 --max-restarts 1` (self-launch under torchrun), 32 images per process,
    with rank 1 SIGKILLed before step 14 on the first attempt (fault injection)."""
    out = tmp_path_factory.mktemp("ddp") / "run"
    res = _cli(
        [*tiny_args(out, batch_size=32, base_lr=0.05, **KW), "--nproc", "2", "--max-restarts", "1"],
        _env(**_kill_at(14, 1)),
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return out, res


def test_sigkill_worker_resumes_from_last_checkpoint(ddp_run):
    """torchrun restarts both workers after the SIGKILL; they resume from the last checkpoint
    (the step-12 epoch end) and finish the run."""
    import json

    out, res = ddp_run
    import re

    assert re.search(r"exitcode\s*:?\s*-9", res.stderr), res.stderr[-2000:]  # the SIGKILL was seen
    result = json.loads((out / "result.json").read_text())
    assert result["resumed_from"] == 12 and result["steps"] == 16
    assert (out / "manifest.json").is_file() and (out / "curves.png").is_file()


def test_ddp_two_processes_match_one_process(ddp_run, tmp_path):
    """2 ranks x 32 images (eta0 = 2 x 0.05), killed and resumed == 1 rank x 64 images in 2
    micro-batches (eta0 = 0.1), uninterrupted: same global batches, per-micro-batch BN statistics and
    KD targets, so equal up to floating point."""
    from compress.train import train

    one = tmp_path / "one"
    train(tiny(one, batch_size=64, base_lr=0.1, accum_steps=2, **KW), progress=False)
    p2, p1 = _params(ddp_run[0]), _params(one)
    worst = max(float((p2[k] - p1[k]).abs().max()) for k in p1)
    assert worst < 1e-4, worst


def test_ist_partitions_are_disjoint_and_cover_every_channel():
    from compress.train.ist import partition

    rng = np.random.default_rng(0)
    for n, s in [(16, 2), (48, 4), (96, 3), (8, 8)]:
        parts = partition(n, s, rng)
        assert len(parts) == s and all(len(p) == n // s for p in parts)
        allidx = np.concatenate(parts)
        assert len(allidx) == n and set(allidx.tolist()) == set(range(n))
    a = partition(32, 2, np.random.default_rng(1))
    b = partition(32, 2, np.random.default_rng(1))
    c = partition(32, 2, np.random.default_rng(2))
    assert all((x == y).all() for x, y in zip(a, b)) and any((x != y).any() for x, y in zip(a, c))
    from compress.core.errors import UsageError

    with pytest.raises(UsageError):
        partition(10, 3, rng)


@pytest.mark.slow
def test_ist_two_workers_train_and_exchange_less_than_ddp(tmp_path):
    import json

    out = tmp_path / "ist"
    res = _torchrun(tiny_args(out, strategy="ist", batch_size=32, base_lr=0.05, ist_rounds_iters=4, **KW), _env())
    assert res.returncode == 0, res.stderr[-3000:]
    result = json.loads((out / "result.json").read_text())
    assert result["steps"] == 16 and 0 <= result["val"][0]["top1"] <= 1
    params = sum(v.numel() * 4 for v in _params(out).values())
    ddp_bytes_per_step = 2 * (2 - 1) / 2 * params  # ring all-reduce of every gradient, every step
    assert 0 < result["bytes_sent_per_step_per_rank"] < ddp_bytes_per_step / 2
