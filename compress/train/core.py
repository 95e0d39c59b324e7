"""What every supernet training strategy shares: inputs, data, resume, checkpoints, metrics, outputs.

The data-parallel loop (:mod:`compress.train.loop`: DεpS, OFA-PS, BigNAS) and Independent Subnet
Training (:mod:`compress.train.ist`) differ in how a step updates the weights; everything around
the steps is here, once:

- :func:`check_inputs` / :func:`prepare`: one-line errors before heavy work, then space and data;
- :class:`TrainRun`: the run directory's checkpoints (``checkpoints/step-*.pt``, the format
  ``--resume`` reads), ``metrics.jsonl``, the timed evaluations, and the final
  ``supernet.safetensors``, ``curves.png`` and ``result.json``;
- :func:`augment` and :func:`param_groups`: the per-step augmentation and the SGD parameter groups.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compress.core.errors import UsageError
from compress.core.runs import atomic_write_json
from compress.train import distributed, evaluate, net as netapi
from compress.train.checkpoint import Checkpointer, rng_state
from compress.train.config import TrainConfig
from compress.train.metrics import MetricsLog, plot_curves

SUPERNET_FILE = "supernet.safetensors"


@dataclass
class TrainResult:
    out: Path
    supernet: Path
    steps: int
    epochs: int
    wall_s: float
    eval: list[dict] = field(default_factory=list)
    resumed_from: int | None = None


def check_inputs(cfg: TrainConfig) -> None:
    """Fail fast with one-line errors (unknown family / dataset) before any heavy work."""
    from compress.core.errors import unknown
    from compress.data import dataset_info

    names = netapi.family_names()
    if cfg.family not in names:
        raise unknown("supernet family", cfg.family, names)
    dataset_info(cfg.data)
    check_device(cfg.device, cfg.nproc)


def check_device(device: str, nproc: int = 1) -> None:
    """``cpu`` or ``cuda`` (one GPU per process); a one-line error when the GPUs are not there."""
    if device == "cpu":
        return
    if device != "cuda":
        raise UsageError(f"--device {device!r} is not supported; use cpu or cuda (rank r takes cuda:r)")
    import torch

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if n == 0:
        raise UsageError("--device cuda: no CUDA GPU is visible to torch here; use --device cpu")
    if nproc > n:
        raise UsageError(
            f"--device cuda --nproc {nproc}: only {n} GPU(s) visible, and NCCL needs one GPU per "
            f"process; use --nproc {n} or --device cpu"
        )


def deterministic_cuda() -> None:
    """cuDNN/cuBLAS pick run-to-run identical kernels, so a resumed CUDA run equals an uninterrupted one."""
    import torch

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True, warn_only=True)


def augment(x, seed: int):
    """Random horizontal flip and a shift of up to 2 px (reflect padding), seeded per step."""
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(seed & 0x7FFF_FFFF_FFFF_FFFF)
    n, _, h, w = x.shape
    flip = torch.rand(n, generator=g) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
    xp = F.pad(x, (2, 2, 2, 2), mode="reflect")
    dx, dy = torch.randint(0, 5, (2,), generator=g).tolist()
    return xp[:, :, dy : dy + h, dx : dx + w].contiguous()


def param_groups(net, wd: float) -> list[dict]:
    """SGD groups: weight decay on weights (ndim > 1), none on BN parameters and biases."""
    decay = [p for n, p in net.named_parameters() if p.ndim > 1]
    no = [p for n, p in net.named_parameters() if p.ndim <= 1]
    return [{"params": decay, "weight_decay": wd}, {"params": no, "weight_decay": 0.0}]


def sgd(net, cfg: TrainConfig, lr: float):
    """The SGD optimiser every strategy uses (momentum, Nesterov when momentum > 0, no decay on norms)."""
    import torch

    return torch.optim.SGD(
        param_groups(net, cfg.weight_decay), lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0
    )


def prepare(cfg: TrainConfig):
    """Space, data and a fresh supernet for ``cfg`` (also used by the benchmarks)."""
    from compress.data import dataset_info, load_dataset
    from compress.supernet import get_space

    info = dataset_info(cfg.data)
    base = get_space(cfg.family)
    size = netapi.data_size(base, info.native_size or 32, cfg.image_size)
    space = netapi.get_space(
        cfg.family,
        num_classes=info.num_classes,
        in_channels=info.channels,
        image_size=cfg.image_size,
        overrides=cfg.space,
    )
    data = load_dataset(
        cfg.data,
        image_size=size,
        channels=info.channels,
        seed=cfg.seed,
        train_limit=cfg.train_limit,
        calib_size=cfg.calib_size,
    )
    return space, data


@dataclass
class TrainRun:
    """One training run's process group, data, step counts and run-directory files (see the module docstring)."""

    cfg: TrainConfig
    d: distributed.Dist
    t0: float
    space: Any
    data: Any
    global_batch: int
    steps_per_epoch: int
    total: int
    stop: int
    ck: Checkpointer
    log: MetricsLog
    resumed_from: int | None = None
    eval_s: float = 0.0

    @classmethod
    def start(cls, cfg: TrainConfig, d: distributed.Dist, *, t0: float) -> TrainRun:
        """Space and data for ``cfg``; the step counts of one global batch (all ranks) per step."""
        out = Path(cfg.out)
        space, data = prepare(cfg)
        gb = cfg.batch_size * d.world
        per_epoch = len(data.train) // gb
        if per_epoch < 1:
            raise UsageError(
                f"the training split has {len(data.train)} images, fewer than one global batch of {gb}; "
                "lower --batch-size"
            )
        total = cfg.epochs * per_epoch
        stop = min(total, cfg.max_steps or total)
        run = cls(
            cfg,
            d,
            t0,
            space,
            data,
            gb,
            per_epoch,
            total,
            stop,
            Checkpointer(out, keep=cfg.keep_checkpoints),
            MetricsLog(out / "metrics.jsonl", enabled=d.main),
        )
        if d.main:
            out.mkdir(parents=True, exist_ok=True)
        return run

    @property
    def out(self) -> Path:
        return Path(self.cfg.out)

    def load_checkpoint(self, resume: bool) -> dict[str, Any] | None:
        """The latest checkpoint when resuming (``--resume`` or a torchrun restart), else None.

        Without ``resume`` a run directory that already holds checkpoints is refused. A loaded
        checkpoint sets :attr:`resumed_from` and drops the metrics logged after its step.
        """
        if not (resume or self.d.restart > 0):
            if self.ck.latest() is not None:
                raise UsageError(
                    f"{self.out} already holds checkpoints; pass --resume to continue or choose another --out"
                )
            return None
        saved = self.ck.load()
        if saved is not None:
            self.resumed_from = int(saved["state"]["step"])
            self.log.truncate(self.resumed_from)
        return saved

    def save_checkpoint(self, payload: dict[str, Any], step: int) -> None:
        """Rank 0 writes ``payload`` plus the RNG states and the config; every rank waits for it."""
        if self.d.main:
            self.ck.save({**payload, "rng": rng_state(), "config": self.cfg.model_dump_json()}, step)
        distributed.barrier()

    def evaluate(self, net, configs: list[tuple[str, Any]]) -> list[dict]:
        """Top-1 of ``configs`` on the validation split after BN recalibration (time kept out of ``train_s``)."""
        te = time.perf_counter()
        try:
            return evaluate.eval_subnets(net, self.space, configs, split=self.data.val, calib=self.data.calib)
        finally:
            self.eval_s += time.perf_counter() - te

    def log_eval(self, rows: list[dict], *, step: int, epoch: int, **extra: Any) -> None:
        """One ``kind: eval`` record of ``metrics.jsonl`` (``train_s`` excludes evaluation time)."""
        self.log.write(
            {
                "kind": "eval",
                "step": step,
                "epoch": epoch,
                "split": "val",
                **extra,
                "train_s": time.perf_counter() - self.t0 - self.eval_s,
                "top1": {r["name"]: r["top1"] for r in rows},
            }
        )

    def plot(self, title: str) -> None:
        plot_curves(self.log.records(), self.out / "curves.png", title=title)

    def write_outputs(
        self, net, rows: list[dict], *, recipe: dict, training: dict, result: dict[str, Any], title: str
    ) -> Path:
        """Rank 0's final files: the supernet (with its recipe, data and metrics), curves and ``result.json``."""
        sup = self.out / SUPERNET_FILE
        meta = {"recipe": recipe, "data": self.data.meta, "metrics": {"val": rows}, "training": training}
        netapi.save(net, sup, meta=meta, fp16=self.cfg.save_dtype == "float16")
        self.plot(title)
        atomic_write_json(self.out / "result.json", {"supernet": str(sup), **result})
        return sup
