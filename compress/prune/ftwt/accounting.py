"""Per-sample FLOPs (MACs) accounting of a gated model, by forward hooks.

For every Conv2d and Linear layer and every sample:
- an *input* channel is active unless it is exactly zero at every spatial position for that sample
  (masked by the previous gate, or zero for any other reason: this is what a channel-skipping kernel
  could skip);
- an *output* channel is active unless the layer's gate (or static mask) switched it off;
- MACs follow :func:`compress.prune.ftwt.labels.conv_macs`
  (``active_out * H*W * active_in/groups * k^2`` for ordinary convs).
The dense reference is the same layers with every channel active (thop-style conv+linear MACs,
no BN/ReLU/pooling). The predictors' own cost (pooling adds + the 1x1 conv MACs) is counted
separately and reported both apart and added in.

The released code's accounting is reported next to ours (``flops_reduction_mean_released``). It
counts only the gated convs, in execution order, as ``active_out * H*W * floor(prev / groups) * k^2``
where ``prev`` is the previous *gate's* active count, against thop's dense MACs of the whole model.
It differs from the exact count here in both directions. In its favour: (1) in a ResNet the input of
a block's first conv is ``relu(masked conv2 + shortcut)``, which has more live channels than conv2's
mask says; (2) for a depthwise conv ``floor(prev / groups)`` is 0 as soon as one channel of the
previous layer is masked, so depthwise layers count as free; (3) ungated layers (shortcut convs,
the classifier) are in the dense total but never in the dynamic one (``released_gated_share`` is the
share of the dense MACs in gated convs; where it is well below 1, e.g. ConvNeXt blocks gated only
at their depthwise conv, the released figure is meaningless). Against it: input channels that
are zero for another reason (a kept filter whose ReLU output is all zero for this input) count as
active there and as skippable here.

:func:`input_dependence` summarises how much the masks change from image to image: per-layer mask
entropy across test images, the per-image reduction histogram, and the reduction by class.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from compress.prune.ftwt.gates import ChannelGate, GatedConv, StaticMask
from compress.prune.ftwt.labels import conv_macs, dense_conv_macs, reduction_stats


class _Recorder:
    """Forward hooks on every conv/linear (not the predictors' 1x1 convs): per-sample MACs, active
    channel fractions, gate masks and the released code's gate-chain MACs."""

    def __init__(self, model: nn.Module) -> None:
        self.gate_of: dict[int, ChannelGate] = {}
        self.static_of: dict[int, StaticMask] = {}
        for m in model.modules():
            if isinstance(m, GatedConv):
                self.gate_of[id(m.conv)] = m.gate
            elif isinstance(m, StaticMask):
                self.static_of[id(m.conv)] = m
        fcs = {id(g.fc) for g in self.gate_of.values()}
        self.layers = [
            (n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and id(m) not in fcs
        ]
        self.per_layer: dict[str, dict[str, Any]] = {}
        self.pred_macs: dict[int, int] = {}
        self.released: list[torch.Tensor] = []  # per batch: the released code's dynamic MACs (gated convs only)
        self.prev: torch.Tensor | None = None  # the previous gate's active count, in execution order
        self.masks: dict[str, list[torch.Tensor]] = {}

    def new_batch(self, n: int) -> None:
        self.released.append(torch.zeros(n, dtype=torch.float64))
        self.prev = None

    def hook(self, name: str) -> Any:
        def fn(mod: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            x = inp[0]
            if isinstance(mod, nn.Linear):
                ain = x.reshape(x.shape[0], -1) != 0
                aout = torch.ones(x.shape[0], mod.out_features, dtype=torch.bool)
                macs = conv_macs(ain, aout, out_hw=1, kernel=1)
                dense = dense_conv_macs(mod.in_features, mod.out_features, out_hw=1, kernel=1)
            else:
                ain = x.abs().amax(dim=(2, 3)) > 0
                hw = int(out.shape[2] * out.shape[3])
                k = int(mod.kernel_size[0] * mod.kernel_size[1])
                aout = self._active_out(name, mod, x, hw * k)
                macs = conv_macs(ain, aout, out_hw=hw, kernel=k, groups=mod.groups)
                dense = dense_conv_macs(mod.in_channels, mod.out_channels, out_hw=hw, kernel=k, groups=mod.groups)
            gated = id(mod) in self.gate_of or id(mod) in self.static_of
            rec = self.per_layer.setdefault(
                name, {"dense_macs": dense, "macs": [], "active_in": [], "active_out": [], "gated": gated}
            )
            rec["macs"].append(macs)
            rec["active_in"].append(ain.float().mean(1))
            rec["active_out"].append(aout.float().mean(1))

        return fn

    def _active_out(self, name: str, mod: nn.Module, x: torch.Tensor, hwk: int) -> torch.Tensor:
        aout = torch.ones(x.shape[0], mod.out_channels, dtype=torch.bool)
        g = self.gate_of.get(id(mod))
        if g is not None and g.enabled:
            aout = g.logits(x) > 0
            self.pred_macs[id(g)] = int(g.in_channels * g.out_channels + g.in_channels * x.shape[2] * x.shape[3])
            prev = self.prev if self.prev is not None else torch.full((x.shape[0],), float(x.shape[1]))
            n_out = aout.float().sum(1)
            self.released[-1] += n_out * hwk * torch.div(prev, mod.groups, rounding_mode="floor")
            self.prev = n_out
            self.masks.setdefault(name, []).append(aout.clone())
        s = self.static_of.get(id(mod))
        if s is not None:
            aout = (s.mask != 0).unsqueeze(0).expand(x.shape[0], -1)
        return aout


@torch.no_grad()
def measure_flops(
    model: nn.Module, images: torch.Tensor, *, batch_size: int = 256, labels: torch.Tensor | None = None
) -> dict[str, Any]:
    """Run ``images`` through ``model`` (eval mode) and account MACs per sample; see module doc.

    With gates, the result also has ``per_sample_masks`` (layer name -> (N, C) bool) and
    ``input_dependence`` (see :func:`input_dependence`; by class when ``labels`` are given)."""
    rec = _Recorder(model)
    handles = [m.register_forward_hook(rec.hook(n)) for n, m in rec.layers]
    was = model.training
    model.eval()
    try:
        for i in range(0, images.shape[0], batch_size):
            rec.new_batch(min(batch_size, images.shape[0] - i))
            model(images[i : i + batch_size])
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    return _summarise(rec, int(images.shape[0]), labels)


def _summarise(rec: _Recorder, samples: int, labels: torch.Tensor | None) -> dict[str, Any]:
    per_layer = rec.per_layer
    dense_total = sum(r["dense_macs"] for r in per_layer.values())
    macs = sum(torch.cat(r["macs"]) for r in per_layer.values())
    predictor = sum(rec.pred_macs.values())
    stats = reduction_stats(macs, dense_total)
    with_pred = reduction_stats(macs + predictor, dense_total)
    layers_out = [
        {
            "name": n,
            "gated": r["gated"],
            "dense_macs": r["dense_macs"],
            "mean_macs": float(torch.cat(r["macs"]).mean()),
            "active_in_frac": float(torch.cat(r["active_in"]).mean()),
            "active_out_frac": float(torch.cat(r["active_out"]).mean()),
        }
        for n, r in per_layer.items()
    ]
    result: dict[str, Any] = {
        "samples": samples,
        "dense_macs": int(dense_total),
        "macs_mean": float(macs.mean()),
        **{f"flops_reduction_{k}": stats[k] for k in ("mean", "p10", "p50", "p90", "min", "max")},
        "predictor_macs": int(predictor),
        "predictor_overhead_frac": predictor / dense_total if dense_total else 0.0,
        "flops_reduction_mean_with_predictors": with_pred["mean"],
        "per_sample_macs": macs,
        "layers": layers_out,
    }
    if rec.masks:
        per_sample_masks = {n: torch.cat(v) for n, v in rec.masks.items()}
        result["flops_reduction_mean_released"] = float(1.0 - torch.cat(rec.released).mean() / dense_total)
        # the share of the dense MACs the released accounting can see (1.0 when every conv is gated)
        gated_dense = sum(r["dense_macs"] for n, r in per_layer.items() if n in rec.masks)
        result["released_gated_share"] = gated_dense / dense_total if dense_total else 0.0
        result["per_sample_masks"] = per_sample_masks
        result["input_dependence"] = input_dependence(per_sample_masks, 1.0 - macs.double() / dense_total, labels)
    return result


def _entropy_bits(p: torch.Tensor) -> torch.Tensor:
    """Binary entropy H(p) in bits, elementwise (0 at p = 0 or 1)."""
    p = p.double().clamp(0.0, 1.0)
    h = -(p * torch.log2(p.clamp_min(1e-300)) + (1 - p) * torch.log2((1 - p).clamp_min(1e-300)))
    return torch.where((p <= 0) | (p >= 1), torch.zeros_like(h), h)


def input_dependence(
    masks: dict[str, torch.Tensor],
    reduction: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    bins: int = 50,
) -> dict[str, Any]:
    """How much the masks depend on the input.

    - per layer: the mean over channels of the binary entropy (bits) of "channel kept" across the
      images (0: the channel is always on or always off, i.e. a static mask; 1: on for half the
      images), the share of channels that are on for some images and off for others, and the
      spread of the layer's kept fraction (std over images);
    - ``mask_entropy_mean``: the mean of the layers' entropies (0 for static pruning);
    - ``histogram``: the per-image FLOPs reduction in ``bins`` bins over [0, 1];
    - ``by_class``: mean / p10 / p90 reduction per label (when ``labels`` are given).
    """
    layers = []
    for name, m in masks.items():
        mf = m.float()
        p = mf.mean(0)
        layers.append(
            {
                "name": name,
                "channels": int(m.shape[1]),
                "entropy_bits": float(_entropy_bits(p).mean()),
                "varying_frac": float(((p > 0) & (p < 1)).float().mean()),
                "kept_frac_mean": float(mf.mean()),
                "kept_frac_std": float(mf.mean(1).std()) if m.shape[0] > 1 else 0.0,
            }
        )
    red = reduction.double()
    counts = torch.histc(red.float().clamp(0, 1), bins=bins, min=0.0, max=1.0)
    out: dict[str, Any] = {
        "mask_entropy_mean": sum(x["entropy_bits"] for x in layers) / max(len(layers), 1),
        "varying_frac_mean": sum(x["varying_frac"] for x in layers) / max(len(layers), 1),
        "p90_minus_p10": float(torch.quantile(red, 0.9) - torch.quantile(red, 0.1)),
        "histogram": {"edges": [i / bins for i in range(bins + 1)], "counts": [int(c) for c in counts]},
        "layers": layers,
    }
    if labels is not None:
        lab = labels.reshape(-1)[: red.shape[0]]
        by = []
        for c in sorted(int(v) for v in lab.unique()):
            sel = red[lab == c]
            st = reduction_stats(1.0 - sel, 1.0)
            by.append({"label": c, "n": int(sel.numel()), "mean": st["mean"], "p10": st["p10"], "p90": st["p90"]})
        out["by_class"] = by
    return out
