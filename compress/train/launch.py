"""Run a training as its config says: here, or as ``nproc`` torchrun workers; then its manifest.

What ``compress train`` does and what ``compress.train.train(cfg)`` in a notebook does are the
same: with ``cfg.nproc > 1`` outside torchrun this process claims the run directory for its
workers, starts them under torchrun (``python -m compress.train``; the config travels as a JSON
file) and returns the result they wrote; otherwise it trains (DDP-style loop, or IST) and the
process that trained as rank 0 writes ``manifest.json``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from compress.train import distributed
from compress.train.config import TrainConfig
from compress.train.core import SUPERNET_FILE, TrainResult, check_inputs

RUN_FILES = (SUPERNET_FILE, "metrics.jsonl", "curves.png", "result.json")


def train(
    cfg: TrainConfig,
    *,
    resume: bool = False,
    progress: bool = True,
    max_restarts: int = 3,
    threads: int | None = None,
) -> TrainResult:
    """Train as ``cfg`` says (module docstring). ``max_restarts``: torchrun restarts after a worker
    failure (with ``nproc > 1``); ``threads``: torch intra-op threads per process."""
    if cfg.nproc > 1 and not distributed.under_torchrun():
        return launch(cfg, resume=resume, max_restarts=max_restarts, threads=threads)
    if threads:
        import torch

        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)
    if cfg.strategy == "ist":
        from compress.train.ist import train_ist as run
    else:
        from compress.train.loop import train as run
    res = run(cfg, resume=resume, progress=progress)
    if int(os.environ.get("RANK", "0") or 0) == 0:
        write_manifest(cfg)
    return res


def launch(cfg: TrainConfig, *, resume: bool, max_restarts: int, threads: int | None) -> TrainResult:
    """Start ``cfg.nproc`` workers under torchrun on ``cfg`` and wait; the result they wrote."""
    from compress.core.errors import Failure
    from compress.core.runs import claim_run_dir

    check_inputs(cfg)
    claim_run_dir(cfg.out, command=f"compress train --nproc {cfg.nproc}", for_children=True)
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    with tempfile.TemporaryDirectory(prefix="compress-train-") as tmp:
        cfg_file = Path(tmp) / "train-config.json"
        cfg_file.write_text(cfg.model_dump_json())
        args = ["--config", str(cfg_file), "--out", str(cfg.out)]
        args += ["--resume"] if resume else []
        args += ["--threads", str(threads)] if threads else []
        rc = distributed.launch(cfg.nproc, args, max_restarts=max_restarts, env=env)
    if rc != 0:
        raise Failure(f"distributed training failed (exit code {rc}); see the log above; rerun with --resume")
    return read_result(cfg.out)


def read_result(out: str | Path) -> TrainResult:
    """The :class:`TrainResult` a finished run left in ``out/result.json``."""
    from compress.core.runs import read_json

    r = read_json(Path(out) / "result.json", what="training result")
    return TrainResult(
        Path(out), Path(r["supernet"]), r["steps"], r["epochs"], r["wall_s"], r.get("val", []), r.get("resumed_from")
    )


def write_manifest(cfg: TrainConfig) -> None:
    """``manifest.json``: the config, the seed and the run's files with their hashes."""
    from compress.core.runs import RunDir

    out = Path(cfg.out)
    run = RunDir(out, command="train", seeds={"seed": cfg.seed})
    run.add_input("config", value=cfg.model_dump(mode="json"))
    for name in RUN_FILES:
        if (out / name).is_file():
            run.add_output(out / name)
    run.save_manifest()
