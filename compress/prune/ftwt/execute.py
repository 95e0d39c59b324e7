"""Gather-executed dynamic inference: batch-1 CPU execution that skips the gated channels.

A dense runtime computes every channel of a gated model and then multiplies by the mask, so FTWT's
FLOPs reduction is not speed there (:mod:`compress.prune.ftwt.deploy`). Here each
:class:`~compress.prune.ftwt.gates.GatedConv` is replaced by a :class:`GatherConv` that, for one
image:

1. runs the predictor on the layer input (pool, softmax, 1x1 conv; a few hundred MACs) and takes the
   indices of the kept output filters;
2. takes the indices of the input channels that are not all zero (masked by the previous gate, or
   dead after its ReLU for this image);
3. gathers the kept rows and live columns of the BN-folded weight (``index_select``) and runs the
   conv on the live input channels only; depthwise convs keep the channels live on both sides;
4. writes the activated result into a zero tensor of the full channel count, so residual adds,
   pooling and the classifier run unchanged.

Outputs equal the masked-dense model's up to float rounding (checked by :func:`check_gather`). The
gather costs index ops and a weight copy per layer per image; it wins where a layer's skipped MACs
outweigh that (wide layers, high per-image sparsity) and loses on small layers, where a handful of
extra small tensor ops costs more than the few MACs saved. :func:`gather_vs_dense_latency` times
dense, masked-dense and gather-executed in one interleaved, canary-controlled run
(:mod:`compress.bench.timing`). ONNX export is unaffected: it stays the dense-with-gates graph.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from compress.core.errors import UsageError
from compress.prune.ftwt.gates import GatedConv


class GatherConv(nn.Module):
    """Batch-1 gather execution of one :class:`GatedConv` (BN folded into the conv; eval only)."""

    def __init__(self, gated: GatedConv) -> None:
        super().__init__()
        conv, bn, g = gated.conv, gated.bn, gated.gate
        if not isinstance(bn, nn.BatchNorm2d) or bn.running_var is None or bn.running_mean is None:
            raise UsageError("gather execution needs Conv -> BatchNorm2d with running statistics at every gate")
        scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
        shift = bn.bias.detach() - bn.running_mean * scale
        bias = conv.bias.detach() * scale + shift if conv.bias is not None else shift
        self.register_buffer("weight", (conv.weight.detach() * scale.view(-1, 1, 1, 1)).contiguous())
        self.register_buffer("bias", bias.contiguous())
        self.register_buffer("fc_w", g.fc.weight.detach().flatten(1).t().contiguous())  # (C_in, C_out)
        self.register_buffer("fc_b", g.fc.bias.detach().clone())
        self.stride, self.padding, self.dilation = conv.stride, conv.padding, conv.dilation
        self.groups, self.cin, self.cout = conv.groups, conv.in_channels, conv.out_channels
        self.depthwise = self.groups > 1 and self.groups == self.cin == self.cout
        self.pool, self.softmax = g.pool, g.softmax
        self.act = gated.act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] != 1:
            raise UsageError(f"gather execution runs one image at a time (batch 1), got batch {x.shape[0]}")
        s = x.mean(dim=(2, 3)) if self.pool == "avg" else x.amax(dim=(2, 3))
        if self.softmax:
            s = torch.softmax(s, dim=1)
        keep_out = torch.addmm(self.fc_b.unsqueeze(0), s, self.fc_w)[0] > 0
        live_in = x[0].abs().amax(dim=(1, 2)) > 0
        if self.depthwise:
            return self._depthwise(x, keep_out, live_in)
        if self.groups != 1:  # general grouped conv: dense conv, then mask (no gather)
            y = self.act(F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups))
            return y * keep_out.to(y.dtype).view(1, -1, 1, 1)
        oi = keep_out.nonzero().flatten()
        ii = live_in.nonzero().flatten()
        h, w = self._out_hw(x)
        out = x.new_zeros(1, self.cout, h, w)
        if oi.numel() == 0:
            return out
        b = self.bias.index_select(0, oi)
        if ii.numel() == 0:  # no live input: every kept filter outputs its folded bias
            return out.index_copy_(1, oi, self.act(b).view(1, -1, 1, 1).expand(1, -1, h, w))
        wt = self.weight.index_select(0, oi).index_select(1, ii)
        y = self.act(F.conv2d(x.index_select(1, ii), wt, b, self.stride, self.padding, self.dilation))
        return out.index_copy_(1, oi, y)

    def _out_hw(self, x: torch.Tensor) -> tuple[int, int]:
        k, p, d, s = self.weight.shape[2:], self.padding, self.dilation, self.stride
        h = (x.shape[2] + 2 * p[0] - d[0] * (k[0] - 1) - 1) // s[0] + 1
        w = (x.shape[3] + 2 * p[1] - d[1] * (k[1] - 1) - 1) // s[1] + 1
        return h, w

    def _depthwise(self, x: torch.Tensor, keep_out: torch.Tensor, live_in: torch.Tensor) -> torch.Tensor:
        both = (keep_out & live_in).nonzero().flatten()
        h, w = self._out_hw(x)
        out = x.new_zeros(1, self.cout, h, w)
        # kept filters whose input channel is all zero output their (folded) bias everywhere
        idle = (keep_out & ~live_in).nonzero().flatten()
        if idle.numel():
            out.index_copy_(1, idle, self.act(self.bias.index_select(0, idle)).view(1, -1, 1, 1).expand(1, -1, h, w))
        if both.numel():
            y = F.conv2d(
                x.index_select(1, both),
                self.weight.index_select(0, both),
                self.bias.index_select(0, both),
                self.stride,
                self.padding,
                self.dilation,
                int(both.numel()),
            )
            out.index_copy_(1, both, self.act(y))
        return out


class FoldedConv(nn.Module):
    """``act(conv(x))`` with the BN folded in: the dense reference, so that BN folding (which the
    gather path does) is not counted as a gain of the gather."""

    def __init__(self, gated: GatedConv) -> None:
        super().__init__()
        ref = GatherConv(gated)
        self.register_buffer("weight", ref.weight)
        self.register_buffer("bias", ref.bias)
        self.stride, self.padding, self.dilation, self.groups = ref.stride, ref.padding, ref.dilation, ref.groups
        self.act = gated.act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups))


def folded_dense(model: nn.Module) -> nn.Module:
    """An eval-mode copy of the dense ``model`` with BN folded into the convs at FTWT's gate sites."""
    from compress.prune.ftwt.wrap import insert_gates

    m = copy.deepcopy(model).eval()
    insert_gates(m)
    return _swap(m, FoldedConv)


def gather_model(model: nn.Module) -> nn.Module:
    """An eval-mode deep copy of a gated ``model`` with every :class:`GatedConv` gather-executed."""
    return _swap(copy.deepcopy(model).eval(), GatherConv)


def _swap(m: nn.Module, cls: type[nn.Module]) -> nn.Module:
    swaps = [(n, mod) for n, mod in m.named_modules() if isinstance(mod, GatedConv)]
    if not swaps:
        raise UsageError("the model has no FTWT gates to gather-execute")
    for name, mod in swaps:
        parent_name, _, attr = name.rpartition(".")
        parent = m.get_submodule(parent_name) if parent_name else m
        setattr(parent, attr, cls(mod))
    return m


@torch.no_grad()
def check_gather(gated: nn.Module, gathered: nn.Module, images: torch.Tensor) -> dict[str, float]:
    """Max relative output difference and top-1 agreement of gather vs masked-dense, image by image."""
    gated.eval()
    err, agree = 0.0, 0
    for i in range(images.shape[0]):
        a, b = gated(images[i : i + 1]), gathered(images[i : i + 1])
        err = max(err, float((a - b).abs().max()) / max(float(a.abs().max()), 1e-12))
        agree += int(a.argmax(1) == b.argmax(1))
    return {"max_rel_err": err, "top1_agreement": agree / max(images.shape[0], 1)}


@torch.no_grad()
def per_layer_times(gated: nn.Module, image: torch.Tensor, *, reps: int = 30) -> list[dict[str, Any]]:
    """Where the gather wins and where it costs more: for each gated layer, on its real input for one
    image, the median time of the BN-folded dense conv and of the gather conv (alternating A B A B,
    ``reps`` each; a breakdown, not drift-controlled: the whole-model figure is the controlled one)."""
    inputs: dict[str, torch.Tensor] = {}
    mods = {n: m for n, m in gated.named_modules() if isinstance(m, GatedConv)}
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: inputs.__setitem__(n, i[0])) for n, m in mods.items()]
    try:
        gated.eval()(image[:1])
    finally:
        for h in hooks:
            h.remove()
    rows = []
    for name, mod in mods.items():
        x, dense, gath = inputs[name], FoldedConv(mod), GatherConv(mod)
        td, tg = [], []
        for _ in range(reps):
            for f, acc in ((dense, td), (gath, tg)):
                t0 = time.perf_counter()
                f(x)
                acc.append(1e6 * (time.perf_counter() - t0))
        keep = float((mod.gate.logits(x) > 0).float().mean())
        live = float((x[0].abs().amax(dim=(1, 2)) > 0).float().mean())
        td.sort()
        tg.sort()
        rows.append(
            {
                "name": name,
                "cin": mod.conv.in_channels,
                "cout": mod.conv.out_channels,
                "groups": mod.conv.groups,
                "in_hw": int(x.shape[2] * x.shape[3]),
                "kept_out_frac": keep,
                "live_in_frac": live,
                "dense_us": td[reps // 2],
                "gather_us": tg[reps // 2],
            }
        )
    return rows


@torch.no_grad()
def crossover(
    *,
    channels: tuple[int, ...] = (64, 256, 1024),
    hw: tuple[int, ...] = (16, 4),
    kept: tuple[float, ...] = (1.0, 0.75, 0.5, 0.25, 0.1),
    reps: int = 30,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Where the gather pays: one C x C 3x3 conv (BN folded, ReLU) on an ``hw x hw`` map, dense vs
    gather with a share ``kept`` of the output filters kept and of the input channels live (the same
    share on both sides, as when a gated layer feeds another). Median of ``reps`` alternating runs."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for c in channels:
        conv, bn = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c).eval()
        gated = GatedConv(conv, bn, nn.ReLU()).eval()
        dense, gath = FoldedConv(gated), GatherConv(gated)
        for s in hw:
            for k in kept:
                n = max(1, int(round(k * c)))
                x = torch.randn(1, c, s, s, generator=g)
                x[:, n:] = 0.0  # dead input channels
                gath.fc_w.zero_()
                gath.fc_b.fill_(-1.0)
                gath.fc_b[:n] = 1.0  # the predictor keeps the first n filters
                td, tg = [], []
                for _ in range(reps):
                    for f, acc in ((dense, td), (gath, tg)):
                        t0 = time.perf_counter()
                        f(x)
                        acc.append(1e6 * (time.perf_counter() - t0))
                td.sort()
                tg.sort()
                rows.append(
                    {"channels": c, "hw": s * s, "kept": k, "dense_us": td[reps // 2], "gather_us": tg[reps // 2]}
                )
    return rows


def _canary() -> nn.Module:
    """A fixed dense conv stack timed between rounds for drift control (random init, seed 0)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1)).eval()


@torch.no_grad()
def gather_vs_dense_latency(
    gated: nn.Module,
    dense: nn.Module,
    images: torch.Tensor,
    *,
    threads: int = 1,
    iterations: int = 40,
    rounds: int = 5,
    seed: int = 0,
) -> dict[str, Any]:
    """Batch-1 CPU latency (torch eager) of the dense model (BN folded), the masked-dense gated model and the
    gather-executed gated model, interleaved by :func:`compress.bench.timing.time_items` with a
    canary. One timed call runs every image of ``images`` once (batch 1) and reports the mean ms
    per image, so the masks' per-image variation is inside each sample."""
    from compress.bench.timing import Item, TimingConfig, run_to_dict, time_items

    prev_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    gathered = gather_model(gated)
    gated = gated.eval()
    dense_f = folded_dense(dense)
    parity = check_gather(gated, gathered, images)
    dense_parity = check_gather(dense.eval(), dense_f, images)
    xs = [images[i : i + 1].contiguous() for i in range(images.shape[0])]
    canary = _canary()
    cx = torch.randn(1, 1, 28, 28, generator=torch.Generator().manual_seed(seed))

    def per_image(model: nn.Module):
        def fn() -> float:
            t0 = time.perf_counter()
            for x in xs:
                model(x)
            return 1000.0 * (time.perf_counter() - t0) / len(xs)

        return fn

    def canary_fn() -> None:
        canary(cx)

    try:
        run = time_items(
            [Item("dense", per_image(dense_f)), Item("masked", per_image(gated)), Item("gather", per_image(gathered))],
            canary=canary_fn,
            config=TimingConfig(warmup=3, iterations=iterations, rounds=rounds),
        )
    finally:
        torch.set_num_threads(prev_threads)
    d, m, g = (run.items[k] for k in ("dense", "masked", "gather"))
    layers = per_layer_times(gated, images[:1])
    return {
        "runtime": "torch eager (CPU)",
        "threads": threads,
        "batch": 1,
        "images": len(xs),
        "dense_ms": d.estimate_ms,
        "masked_ms": m.estimate_ms,
        "gather_ms": g.estimate_ms,
        "gather_over_dense": g.estimate_ms / d.estimate_ms,
        "parity": parity,
        "dense_folded_parity": dense_parity,
        "note": "dense = the baseline with BN folded into the convs (as the gather path folds it); masked = the "
        "gated model as trained (dense compute, then mask); gather = kept filters x live input channels only",
        "drift": run.drift.to_dict(),
        "noisy": bool(d.noisy or m.noisy or g.noisy),
        "timing": run_to_dict(run),
        "per_layer": layers,
        "layers_gather_faster": sum(1 for r in layers if r["gather_us"] < r["dense_us"]),
    }
