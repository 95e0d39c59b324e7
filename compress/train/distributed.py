"""Process groups and the torchrun self-launch.

``compress train --nproc K`` re-executes itself as ``torchrun --nproc-per-node K -m compress.train
...``; under torchrun (``WORLD_SIZE`` set) :func:`init` joins the group (gloo on CPU, NCCL on GPUs).
Gradients are all-reduced once per step after the subnets' masked accumulation (the same sum
DDP computes, in one collective instead of one per backward).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field

from compress.core.errors import Failure


@dataclass
class Traffic:
    """Bytes this process sent through collectives during one run, by ring-algorithm cost
    (all-reduce of N bytes sends 2(S-1)/S N; broadcast of N bytes is counted as N for every rank).

    Each :func:`init` starts a fresh count, so a second ``train()`` in the same process reports
    its own bytes, not the sum of both runs.
    """

    bytes: float = 0.0


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: str = "cpu"
    restart: int = 0  # TORCHELASTIC_RESTART_COUNT: > 0 after a worker failure
    sent: Traffic = field(default_factory=Traffic, compare=False)  # this run's collective traffic

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def under_torchrun() -> bool:
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def init(device: str = "cpu") -> Dist:
    """Join the torchrun group if there is one; otherwise a single process."""
    import torch
    import torch.distributed as dist

    restart = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)
    if not under_torchrun() or int(os.environ["WORLD_SIZE"]) <= 1:
        return Dist(device=device, restart=restart)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device.startswith("cuda") and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    if not dist.is_initialized():
        import datetime

        # A fresh key prefix per restart: after a worker failure, the new group must not read the
        # dead workers' addresses that the previous attempt left in the rendezvous store.
        timeout = datetime.timedelta(minutes=10)
        agent_store = os.environ.get("TORCHELASTIC_USE_AGENT_STORE", "").lower() == "true"
        base = dist.TCPStore(
            os.environ["MASTER_ADDR"],
            int(os.environ["MASTER_PORT"]),
            world,
            is_master=(rank == 0 and not agent_store),
            timeout=timeout,
        )
        store = dist.PrefixStore(f"compress-train/attempt{restart}", base)
        dist.init_process_group(
            backend="nccl" if use_cuda else "gloo", store=store, rank=rank, world_size=world, timeout=timeout
        )
    return Dist(rank, world, local, device, restart)


def shutdown() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


LAUNCHED_ENV = "COMPRESS_TRAIN_LAUNCHED"  # set for workers started by `compress train --nproc K`


def all_reduce_mean(tensors: list, world: int, *, sent: Traffic | None = None) -> None:
    """Average a list of tensors over ranks in one flattened collective (no-op for one process);
    the bytes sent are added to ``sent`` (the run's :attr:`Dist.sent`)."""
    if world <= 1 or not tensors:
        return
    import torch
    import torch.distributed as dist

    flat = torch.cat([t.reshape(-1) for t in tensors])
    if sent is not None:
        sent.bytes += 2 * (world - 1) / world * flat.numel() * flat.element_size()
    dist.all_reduce(flat)
    flat.div_(world)
    off = 0
    for t in tensors:
        n = t.numel()
        t.copy_(flat[off : off + n].view_as(t))
        off += n


def broadcast_state(module, src: int = 0, *, sent: Traffic | None = None) -> None:
    """Make every rank hold rank ``src``'s parameters and buffers (bytes added to ``sent``)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    for t in [*module.parameters(), *module.buffers()]:
        if sent is not None:
            sent.bytes += t.numel() * t.element_size()
        dist.broadcast(t.data, src)


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def torchrun_command(nproc: int, args: list[str], *, max_restarts: int = 0) -> list[str]:
    """``python -m torch.distributed.run --nproc-per-node K --max-restarts R -m compress.train -- ARGS``
    (the ``--`` keeps torchrun's parser from reading our options as abbreviations of its own)."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        f"--max-restarts={max_restarts}",
        "-m",
        "compress.train",
        "--",
        *args,
    ]


def launch(nproc: int, args: list[str], *, max_restarts: int = 0, env: dict | None = None) -> int:
    """Run ``compress.train ARGS`` under torchrun with ``nproc`` workers; returns the exit code."""
    if shutil.which(sys.executable) is None:
        raise Failure(f"cannot find the Python interpreter {sys.executable} to start torchrun")
    cmd = torchrun_command(nproc, args, max_restarts=max_restarts)
    e = dict(os.environ if env is None else env)
    e.setdefault("OMP_NUM_THREADS", "1")
    e[LAUNCHED_ENV] = "1"
    return subprocess.run(cmd, env=e, check=False).returncode
