"""Independent Subnet Training (ALGORITHMS.md §3) over torch.distributed collectives.

Each round (``R = ist_rounds_iters`` local steps):

1. every rank draws the same random partition of the hidden (expand / MLP) channels of every
   elastic block into ``S`` disjoint equal chunks (:func:`partition`, seeded by (seed, round));
2. rank ``s`` moves its chunk to the front (``permute_hidden``) and trains the narrow subnet
   (expand = max / S, everything else at its maximum) for R steps on its own data shard, with a
   fresh SGD optimizer (as ResIST) and no communication;
3. the pieces are written back: hidden-indexed tensors are exchanged with ``all_gather`` of each
   rank's own slice only (each channel comes from the one rank that owns it; weights joining
   channels of different chunks, as in a bottleneck's middle conv, keep their previous value), and
   every shared tensor (stem, downsampling, depthwise convs, norms, head) is averaged with
   ``all_reduce`` (ResIST).

Accuracy levers (options of ``compress train --strategy ist``; defaults chosen on short runs, see
docs/training.md "IST: when to pick it"):

- ``ist_rescale`` (on): while a worker trains its 1/S of the hidden channels, the layer that sums
  over them (ConvNeXt's ``pw2``, MBConv's ``project_conv``/SE, a bottleneck's ``conv2``/``conv3``)
  reads its input multiplied by S, as inverted dropout does. Without it every subnet learns to
  produce the whole residual output from half the channels and the reassembled model, which sums
  all S chunks, outputs about S times that: on a block without a norm after the sum (ConvNeXt) the
  full model is then off-scale. With it each chunk is an unbiased estimate of the full sum.
- ``ist_rounds_iters`` R: local steps between repartitions (fewer bytes per step as R grows).
- ``ist_lr_scale``: the local learning rate is ``base_lr x ist_lr_scale`` (per subnet; DDP's is
  ``base_lr x world``), on the same per-step cosine.
- ``ist_finetune_epochs``: the last epochs train the full model data-parallel (gradients averaged
  every step, as DDP), the final full-model phase of ResIST-style recipes; costs DDP's bytes for
  those steps.

IST trains the full model (the largest subnet); the recipe's sandwich phase is not run here.
Bytes are counted from the collectives' payloads with ring-algorithm costs (all-reduce of N bytes:
2(S-1)/S N sent per rank; all-gather of slices of N/S bytes: (S-1)/S N sent per rank).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from compress.core.errors import UsageError
from compress.core.runs import atomic_write_json
from compress.train import distributed, net as netapi
from compress.train.checkpoint import Checkpointer, rng_state
from compress.train.config import TrainConfig
from compress.train.metrics import MetricsLog, plot_curves
from compress.train.schedule import cosine_lr, step_seed


def partition(n: int, parts: int, rng: np.random.Generator) -> list[np.ndarray]:
    """A random permutation of ``range(n)`` cut into ``parts`` disjoint equal chunks (sorted)."""
    if parts < 1 or n % parts:
        raise UsageError(f"cannot split {n} hidden channels into {parts} equal parts")
    perm = rng.permutation(n)
    return [np.sort(c) for c in np.split(perm, parts)]


def ist_config(space: Any, parts: int):
    """The narrow subnet each worker trains: all maxima except expand = max / parts."""
    mx = space.max_config()
    expands = []
    for i, st in enumerate(space.stages):
        target = st.expands[-1] / parts
        if target not in st.expands:
            raise UsageError(
                f"IST with {parts} processes needs expand choice {target:g} in stage {i} "
                f"(choices {st.expands}); use --nproc {int(st.expands[-1] / st.expands[0])} or fewer"
            )
        expands.append([target] * mx.depths[i])
    return space.config(
        resolution=mx.resolution,
        width=mx.width,
        depths=list(mx.depths),
        kernels=[list(k) for k in mx.kernels],
        expands=expands,
    )


@dataclass
class Comm:
    sent_bytes: float = 0.0
    rounds: int = 0


def hidden_layout(net) -> list[tuple[int, int, dict[str, tuple[int, ...]]]]:
    """(block index, hidden size, {full tensor name: dims}) for every block with hidden channels."""
    out = []
    for i, blk in enumerate(net.blocks):
        hp = getattr(blk, "hidden_params", None)
        if hp:
            out.append((i, net.hidden_size(i), {f"blocks.{i}.{k}": v for k, v in hp.items()}))
    return out


def _owned_mask(shape, dims, idx_sets, device):
    import torch

    m = torch.ones(shape, dtype=torch.bool, device=device)
    for d in dims:
        v = torch.zeros(shape[d], dtype=torch.bool, device=device)
        v[torch.as_tensor(idx_sets, device=device)] = True
        view = [1] * len(shape)
        view[d] = shape[d]
        m &= v.view(view)
    return m


def assemble(net, layout, parts: list[dict[int, np.ndarray]], rank: int, world: int, before: dict, comm: Comm) -> None:
    """Write the workers' pieces back into every rank's copy (see module docstring)."""
    import torch
    import torch.distributed as dist

    tensors = dict(net.named_parameters()) | dict(net.named_buffers())
    hidden: dict[str, tuple[int, tuple[int, ...]]] = {}
    for bi, _, members in layout:
        for name, dims in members.items():
            hidden[name] = (bi, dims)
    with torch.no_grad():
        for name, t in tensors.items():
            if name in hidden:
                bi, dims = hidden[name]
                if len(dims) == 1:
                    d = dims[0]
                    mine = torch.as_tensor(parts[rank][bi], device=t.device)
                    piece = t.data.index_select(d, mine).contiguous()
                    got = [torch.empty_like(piece) for _ in range(world)]
                    dist.all_gather(got, piece)
                    for r in range(world):
                        t.data.index_copy_(d, torch.as_tensor(parts[r][bi], device=t.device), got[r])
                    comm.sent_bytes += (world - 1) * piece.numel() * piece.element_size()
                else:
                    own = _owned_mask(t.shape, dims, parts[rank][bi], t.device)
                    any_own = torch.zeros_like(own)
                    for r in range(world):
                        any_own |= _owned_mask(t.shape, dims, parts[r][bi], t.device)
                    buf = torch.where(own, t.data, torch.zeros_like(t.data))
                    dist.all_reduce(buf)
                    t.data.copy_(torch.where(any_own, buf, before[name]))
                    comm.sent_bytes += 2 * (world - 1) / world * buf.numel() * buf.element_size()
            elif t.is_floating_point():
                dist.all_reduce(t.data)
                t.data.div_(world)
                comm.sent_bytes += 2 * (world - 1) / world * t.numel() * t.element_size()
            else:
                dist.broadcast(t.data, 0)
    comm.rounds += 1


def _rescale_hooks(net, layout, factor: float) -> list:
    """Forward pre-hooks multiplying the input of every hidden-channel consumer by ``factor``."""
    handles = []
    mods = dict(net.named_modules())
    for _, _, members in layout:
        for name, dims in members.items():
            if 1 in dims and name.endswith(".weight"):
                mod = mods[name[: -len(".weight")]]
                handles.append(mod.register_forward_pre_hook(lambda m, args: (args[0] * factor, *args[1:])))
    return handles


def train_ist(cfg: TrainConfig, *, resume: bool = False, progress: bool = True):
    """IST training of the full model; writes the same run-dir files as :func:`compress.train.loop.train`."""
    import torch
    import torch.nn.functional as F

    from compress.data import Batches
    from compress.train.evaluate import eval_subnets
    from compress.train.loop import SUPERNET_FILE, TrainResult, _augment, _param_groups, check_inputs, prepare

    check_inputs(cfg)
    d = distributed.init(cfg.device)
    if d.world < 2:
        raise UsageError("--strategy ist needs at least 2 processes (--nproc 2 or torchrun)")
    t0 = time.perf_counter()
    out = Path(cfg.out)
    space, data = prepare(cfg)
    narrow = ist_config(space, d.world)
    gb = cfg.batch_size * d.world
    per_epoch = len(data.train) // gb
    if per_epoch < 1:
        raise UsageError(f"the training split has {len(data.train)} images, fewer than one global batch of {gb}")
    total = cfg.epochs * per_epoch
    stop = min(total, cfg.max_steps or total)
    R = cfg.ist_rounds_iters
    net = netapi.build(space, seed=cfg.seed).to(d.device)
    layout = hidden_layout(net)
    ck = Checkpointer(out, keep=cfg.keep_checkpoints)
    log = MetricsLog(out / "metrics.jsonl", enabled=d.main)
    step = 0
    if resume or d.restart > 0:
        saved = ck.load()
        if saved is not None:
            net.load_state_dict(saved["model"])
            step = int(saved["state"]["step"])
            log.truncate(step)
    elif ck.latest() is not None:
        raise UsageError(f"{out} already holds checkpoints; pass --resume to continue or choose another --out")
    comm = Comm()
    net.train()
    compute_s = 0.0
    eval_s = 0.0
    last_eval_epoch = step // per_epoch
    ft_start = max(0, total - int(round(cfg.ist_finetune_epochs * per_epoch)))
    local_lr = cfg.base_lr * cfg.ist_lr_scale
    ft_opt = None

    def local_batch(step: int):
        epoch, b = divmod(step, per_epoch)
        x, y = _batch(data.train, gb, cfg.seed, epoch, b, Batches)
        if cfg.augment:
            x = _augment(x, step_seed(cfg.seed, step, -1))
        torch.manual_seed(step_seed(cfg.seed, step, -100 - d.rank))
        return (
            epoch,
            x[d.rank * cfg.batch_size : (d.rank + 1) * cfg.batch_size],
            y[d.rank * cfg.batch_size : (d.rank + 1) * cfg.batch_size],
        )

    def after_steps(round_end: bool) -> None:
        """Evaluation at epoch ends and checkpoints (same cadence as before, in both phases)."""
        nonlocal last_eval_epoch, eval_s
        ep_now = step // per_epoch
        if cfg.eval_every_epochs and ep_now > last_eval_epoch and ep_now % cfg.eval_every_epochs == 0 and step < stop:
            last_eval_epoch = ep_now
            if d.main:
                te = time.perf_counter()
                rows_e = eval_subnets(net, space, [("max", space.max_config())], split=data.val, calib=data.calib)
                eval_s += time.perf_counter() - te
                log.write(
                    {
                        "kind": "eval",
                        "step": step,
                        "epoch": ep_now,
                        "split": "val",
                        "train_s": time.perf_counter() - t0 - eval_s,
                        "top1": {r["name"]: r["top1"] for r in rows_e},
                        "bytes_sent": comm.sent_bytes,
                    }
                )
                net.train()
            distributed.barrier()
        every = R if step < ft_start else 1
        if round_end and ((step // every) % max(1, cfg.checkpoint_every // every) == 0 or step >= stop):
            if d.main:
                ck.save(
                    {
                        "model": net.state_dict(),
                        "state": {"step": step, "epoch": step // per_epoch, "batch": 0, "flags": {}},
                        "rng": rng_state(),
                        "config": cfg.model_dump_json(),
                    },
                    step,
                )
            distributed.barrier()

    while step < stop:
        if step >= ft_start:  # the full-model data-parallel fine-tune (gradients averaged every step)
            if ft_opt is None:
                net.set_active(space.max_config())
                ft_opt = torch.optim.SGD(
                    _param_groups(net, cfg.weight_decay),
                    lr=cfg.base_lr,
                    momentum=cfg.momentum,
                    nesterov=cfg.nesterov and cfg.momentum > 0,
                )
            tc = time.perf_counter()
            epoch, x, y = local_batch(step)
            lr = cosine_lr(step, total, cfg.base_lr * d.world, min_lr=cfg.min_lr)
            for g in ft_opt.param_groups:
                g["lr"] = lr
            loss = F.cross_entropy(netapi.forward(net, x), y, label_smoothing=cfg.label_smoothing)
            ft_opt.zero_grad(set_to_none=False)
            loss.backward()
            grads = [p.grad for p in net.parameters() if p.grad is not None]
            before_b = distributed.SENT["bytes"]
            distributed.all_reduce_mean(grads, d.world)
            comm.sent_bytes += distributed.SENT["bytes"] - before_b
            ft_opt.step()
            step += 1
            compute_s += time.perf_counter() - tc
            if step % cfg.log_every == 0:
                log.write(
                    {
                        "kind": "train",
                        "step": step,
                        "epoch": epoch,
                        "phase": "finetune",
                        "lr": lr,
                        "beta": 0.0,
                        "loss": {"max": float(loss)},
                        "bytes_sent": comm.sent_bytes,
                    }
                )
            after_steps(step % per_epoch == 0 or step >= stop or step % cfg.checkpoint_every == 0)
            continue
        rnd = step // R
        rng = np.random.default_rng(step_seed(cfg.seed, rnd, -7))
        parts: list[dict[int, np.ndarray]] = [{} for _ in range(d.world)]
        for bi, n, _ in layout:
            for r, chunk in enumerate(partition(n, d.world, rng)):
                parts[r][bi] = chunk
        perms = {
            bi: np.concatenate([parts[d.rank][bi], np.setdiff1d(np.arange(n), parts[d.rank][bi])])
            for bi, n, _ in layout
        }
        before = {k: v.detach().clone() for k, v in (dict(net.named_parameters()) | dict(net.named_buffers())).items()}
        for bi, perm in perms.items():
            net.permute_hidden(bi, perm)
        net.set_active(narrow)
        hooks = _rescale_hooks(net, layout, float(d.world)) if cfg.ist_rescale else []
        opt = torch.optim.SGD(
            _param_groups(net, cfg.weight_decay),
            lr=local_lr,
            momentum=cfg.momentum,
            nesterov=cfg.nesterov and cfg.momentum > 0,
        )
        tc = time.perf_counter()
        for _ in range(min(R, stop - step, ft_start - step)):
            epoch, x, y = local_batch(step)
            lr = cosine_lr(step, total, local_lr, min_lr=cfg.min_lr)
            for g in opt.param_groups:
                g["lr"] = lr
            loss = F.cross_entropy(netapi.forward(net, x), y, label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if step % cfg.log_every == 0:
                log.write(
                    {
                        "kind": "train",
                        "step": step,
                        "epoch": epoch,
                        "phase": "ist",
                        "lr": lr,
                        "beta": 0.0,
                        "loss": {"max": float(loss)},
                        "bytes_sent": comm.sent_bytes,
                    }
                )
        compute_s += time.perf_counter() - tc
        for h in hooks:
            h.remove()
        inv = {bi: np.argsort(p) for bi, p in perms.items()}
        for bi, p in inv.items():
            net.permute_hidden(bi, p)
        net.set_active(space.max_config())
        assemble(net, layout, parts, d.rank, d.world, before, comm)
        after_steps(True)
    rows: list[dict] = []
    sup = out / SUPERNET_FILE
    wall = time.perf_counter() - t0
    bytes_per_step = comm.sent_bytes / max(1, stop)
    if d.main:
        net.set_active(space.max_config())
        te = time.perf_counter()
        rows = eval_subnets(net, space, [("max", space.max_config())], split=data.val, calib=data.calib)
        eval_s += time.perf_counter() - te
        log.write(
            {
                "kind": "eval",
                "step": step,
                "epoch": step // per_epoch,
                "split": "val",
                "train_s": time.perf_counter() - t0 - eval_s,
                "top1": {r["name"]: r["top1"] for r in rows},
            }
        )
        meta = {
            "recipe": {
                "name": "ist",
                "strategy": "ist",
                "epochs": cfg.epochs,
                "steps": step,
                "world_size": d.world,
                "local_steps": R,
                "config": cfg.model_dump(mode="json"),
            },
            "data": data.meta,
            "metrics": {"val": rows},
            "training": {"wall_s": round(wall, 1), "bytes_sent_per_step": bytes_per_step},
        }
        netapi.save(net, sup, meta=meta, fp16=cfg.save_dtype == "float16")
        plot_curves(log.records(), out / "curves.png", title=f"{cfg.family} / IST x{d.world} on {cfg.data}")
        atomic_write_json(
            out / "result.json",
            {
                "supernet": str(sup),
                "steps": step,
                "epochs": step // per_epoch,
                "wall_s": round(wall, 1),
                "resumed_from": None,
                "val": rows,
                "bytes_sent_per_step_per_rank": bytes_per_step,
                "compute_s": round(compute_s, 1),
            },
        )
    distributed.barrier()
    return TrainResult(out, sup, step, step // per_epoch, wall, rows)


def _batch(split, gb: int, seed: int, epoch: int, b: int, Batches):
    """Global batch ``b`` of ``epoch`` (the same order as the data-parallel loop)."""
    it = iter(Batches(split, batch_size=gb, shuffle=True, seed=seed, epoch=epoch, drop_last=True, start=b))
    return next(it)
