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
from typing import Any

import numpy as np

from compress.core.errors import UsageError
from compress.train import distributed, net as netapi
from compress.train.config import TrainConfig
from compress.train.core import SUPERNET_FILE, TrainResult, TrainRun, augment, check_inputs, sgd
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


def train_ist(cfg: TrainConfig, *, resume: bool = False, progress: bool = True) -> TrainResult:
    """IST training of the full model; writes the same run-dir files as :func:`compress.train.loop.train`."""
    check_inputs(cfg)
    d = distributed.init(cfg.device)
    if d.world < 2:
        raise UsageError("--strategy ist needs at least 2 processes (--nproc 2 or torchrun)")
    run = TrainRun.start(cfg, d, t0=time.perf_counter())
    ist = _Ist(run, resume=resume)
    ist.fit()
    return ist.finish()


class _Ist:
    """IST rounds, then the optional data-parallel fine-tune, over one :class:`~compress.train.core.TrainRun`."""

    def __init__(self, run: TrainRun, *, resume: bool) -> None:
        cfg, d = run.cfg, run.d
        self.run, self.cfg, self.d = run, cfg, d
        self.narrow = ist_config(run.space, d.world)
        self.net = netapi.build(run.space, seed=cfg.seed).to(d.device)
        self.layout = hidden_layout(self.net)
        self.step = 0
        saved = run.load_checkpoint(resume)
        if saved is not None:
            self.net.load_state_dict(saved["model"])
            self.step = int(saved["state"]["step"])
        self.comm = Comm()
        self.net.train()
        self.compute_s = 0.0
        self.last_eval_epoch = self.step // run.steps_per_epoch
        self.ft_start = max(0, run.total - int(round(cfg.ist_finetune_epochs * run.steps_per_epoch)))
        self.local_lr = cfg.base_lr * cfg.ist_lr_scale
        self.ft_opt = None

    def fit(self) -> None:
        while self.step < self.run.stop:
            if self.step >= self.ft_start:  # the full-model data-parallel fine-tune (gradients averaged every step)
                self._finetune_step()
            else:
                self._round()

    def _local_batch(self, step: int):
        """This rank's slice of global batch ``step`` (same order and augmentation as the data-parallel loop)."""
        import torch

        from compress.data import Batches

        cfg, d = self.cfg, self.d
        epoch, b = divmod(step, self.run.steps_per_epoch)
        x, y = _batch(self.run.data.train, self.run.global_batch, cfg.seed, epoch, b, Batches)
        if cfg.augment:
            x = augment(x, step_seed(cfg.seed, step, -1))
        torch.manual_seed(step_seed(cfg.seed, step, -100 - d.rank))
        return (
            epoch,
            x[d.rank * cfg.batch_size : (d.rank + 1) * cfg.batch_size],
            y[d.rank * cfg.batch_size : (d.rank + 1) * cfg.batch_size],
        )

    def _log_train(self, epoch: int, phase: str, lr: float, loss) -> None:
        if self.step % self.cfg.log_every == 0:
            self.run.log.write(
                {
                    "kind": "train",
                    "step": self.step,
                    "epoch": epoch,
                    "phase": phase,
                    "lr": lr,
                    "beta": 0.0,
                    "loss": {"max": float(loss)},
                    "bytes_sent": self.comm.sent_bytes,
                }
            )

    def _after_steps(self, round_end: bool) -> None:
        """Evaluation at epoch ends and checkpoints (same cadence as before, in both phases)."""
        run, cfg, step = self.run, self.cfg, self.step
        ep_now = step // run.steps_per_epoch
        every_ep = cfg.eval_every_epochs
        if every_ep and ep_now > self.last_eval_epoch and ep_now % every_ep == 0 and step < run.stop:
            self.last_eval_epoch = ep_now
            if self.d.main:
                rows = run.evaluate(self.net, [("max", run.space.max_config())])
                run.log_eval(rows, step=step, epoch=ep_now, bytes_sent=self.comm.sent_bytes)
                self.net.train()
            distributed.barrier()
        every = cfg.ist_rounds_iters if step < self.ft_start else 1
        if round_end and ((step // every) % max(1, cfg.checkpoint_every // every) == 0 or step >= run.stop):
            state = {"step": step, "epoch": step // run.steps_per_epoch, "batch": 0, "flags": {}}
            run.save_checkpoint({"model": self.net.state_dict(), "state": state}, step)

    def _finetune_step(self) -> None:
        """One full-model step with gradients averaged over the ranks (as DDP)."""
        import torch.nn.functional as F

        run, cfg, d, net = self.run, self.cfg, self.d, self.net
        if self.ft_opt is None:
            net.set_active(run.space.max_config())
            self.ft_opt = sgd(net, cfg, cfg.base_lr)
        tc = time.perf_counter()
        epoch, x, y = self._local_batch(self.step)
        lr = cosine_lr(self.step, run.total, cfg.base_lr * d.world, min_lr=cfg.min_lr)
        for g in self.ft_opt.param_groups:
            g["lr"] = lr
        loss = F.cross_entropy(netapi.forward(net, x), y, label_smoothing=cfg.label_smoothing)
        self.ft_opt.zero_grad(set_to_none=False)
        loss.backward()
        grads = [p.grad for p in net.parameters() if p.grad is not None]
        before_b = d.sent.bytes
        distributed.all_reduce_mean(grads, d.world, sent=d.sent)
        self.comm.sent_bytes += d.sent.bytes - before_b
        self.ft_opt.step()
        self.step += 1
        self.compute_s += time.perf_counter() - tc
        self._log_train(epoch, "finetune", lr, loss)
        step = self.step
        self._after_steps(step % run.steps_per_epoch == 0 or step >= run.stop or step % cfg.checkpoint_every == 0)

    def _partition(self) -> tuple[list[dict[int, np.ndarray]], dict[int, np.ndarray]]:
        """This round's chunks of every block's hidden channels per rank, and this rank's permutation."""
        d = self.d
        rng = np.random.default_rng(step_seed(self.cfg.seed, self.step // self.cfg.ist_rounds_iters, -7))
        parts: list[dict[int, np.ndarray]] = [{} for _ in range(d.world)]
        for bi, n, _ in self.layout:
            for r, chunk in enumerate(partition(n, d.world, rng)):
                parts[r][bi] = chunk
        perms = {
            bi: np.concatenate([parts[d.rank][bi], np.setdiff1d(np.arange(n), parts[d.rank][bi])])
            for bi, n, _ in self.layout
        }
        return parts, perms

    def _round(self) -> None:
        """One IST round: partition, up to R local steps on this rank's narrow subnet, reassembly."""
        import torch.nn.functional as F

        run, cfg, d, net = self.run, self.cfg, self.d, self.net
        parts, perms = self._partition()
        before = {k: v.detach().clone() for k, v in (dict(net.named_parameters()) | dict(net.named_buffers())).items()}
        for bi, perm in perms.items():
            net.permute_hidden(bi, perm)
        net.set_active(self.narrow)
        handles = _rescale_hooks(net, self.layout, float(d.world)) if cfg.ist_rescale else []
        opt = sgd(net, cfg, self.local_lr)
        tc = time.perf_counter()
        for _ in range(min(cfg.ist_rounds_iters, run.stop - self.step, self.ft_start - self.step)):
            epoch, x, y = self._local_batch(self.step)
            lr = cosine_lr(self.step, run.total, self.local_lr, min_lr=cfg.min_lr)
            for g in opt.param_groups:
                g["lr"] = lr
            loss = F.cross_entropy(netapi.forward(net, x), y, label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            self.step += 1
            self._log_train(epoch, "ist", lr, loss)
        self.compute_s += time.perf_counter() - tc
        for h in handles:
            h.remove()
        for bi, p in {bi: np.argsort(p) for bi, p in perms.items()}.items():
            net.permute_hidden(bi, p)
        net.set_active(run.space.max_config())
        assemble(net, self.layout, parts, d.rank, d.world, before, self.comm)
        self._after_steps(True)

    def finish(self) -> TrainResult:
        """Rank 0 evaluates the full model and writes the supernet, curves and ``result.json``."""
        run, cfg, d, step = self.run, self.cfg, self.d, self.step
        rows: list[dict] = []
        sup = run.out / SUPERNET_FILE
        wall = time.perf_counter() - run.t0
        bytes_per_step = self.comm.sent_bytes / max(1, run.stop - (run.resumed_from or 0))
        if d.main:
            self.net.set_active(run.space.max_config())
            rows = run.evaluate(self.net, [("max", run.space.max_config())])
            run.log_eval(rows, step=step, epoch=step // run.steps_per_epoch)
            recipe = {
                "name": "ist",
                "strategy": "ist",
                "epochs": cfg.epochs,
                "steps": step,
                "world_size": d.world,
                "local_steps": cfg.ist_rounds_iters,
                "config": cfg.model_dump(mode="json"),
            }
            result = {
                "steps": step,
                "epochs": step // run.steps_per_epoch,
                "wall_s": round(wall, 1),
                "resumed_from": run.resumed_from,
                "val": rows,
                "bytes_sent_per_step_per_rank": bytes_per_step,
                "compute_s": round(self.compute_s, 1),
            }
            training = {"wall_s": round(wall, 1), "bytes_sent_per_step": bytes_per_step}
            title = f"{cfg.family} / IST x{d.world} on {cfg.data}"
            sup = run.write_outputs(self.net, rows, recipe=recipe, training=training, result=result, title=title)
        distributed.barrier()
        return TrainResult(run.out, sup, step, step // run.steps_per_epoch, wall, rows, run.resumed_from)


def _batch(split, gb: int, seed: int, epoch: int, b: int, Batches):
    """Global batch ``b`` of ``epoch`` (the same order as the data-parallel loop)."""
    it = iter(Batches(split, batch_size=gb, shuffle=True, seed=seed, epoch=epoch, drop_last=True, start=b))
    return next(it)
