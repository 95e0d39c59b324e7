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
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from compress.prune.ftwt.gates import ChannelGate, GatedConv, StaticMask
from compress.prune.ftwt.labels import conv_macs, dense_conv_macs, reduction_stats


@torch.no_grad()
def measure_flops(model: nn.Module, images: torch.Tensor, *, batch_size: int = 256) -> dict[str, Any]:
    """Run ``images`` through ``model`` (eval mode) and account MACs per sample; see module doc."""
    gate_of: dict[int, ChannelGate] = {}
    static_of: dict[int, StaticMask] = {}
    for m in model.modules():
        if isinstance(m, GatedConv):
            gate_of[id(m.conv)] = m.gate
        elif isinstance(m, StaticMask):
            static_of[id(m.conv)] = m
    predictor_fcs = {id(g.fc) for g in gate_of.values()}
    layers = [
        (n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and id(m) not in predictor_fcs
    ]

    per_layer: dict[str, dict[str, Any]] = {}
    pred_macs: dict[int, int] = {}

    def conv_hook(name: str):
        def hook(mod: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
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
                aout = torch.ones(x.shape[0], mod.out_channels, dtype=torch.bool)
                g = gate_of.get(id(mod))
                if g is not None and g.enabled:
                    aout = g.logits(x) > 0
                    pred_macs[id(g)] = int(g.in_channels * g.out_channels + g.in_channels * x.shape[2] * x.shape[3])
                s = static_of.get(id(mod))
                if s is not None:
                    aout = (s.mask != 0).unsqueeze(0).expand(x.shape[0], -1)
                macs = conv_macs(ain, aout, out_hw=hw, kernel=k, groups=mod.groups)
                dense = dense_conv_macs(mod.in_channels, mod.out_channels, out_hw=hw, kernel=k, groups=mod.groups)
            rec = per_layer.setdefault(
                name,
                {
                    "dense_macs": dense,
                    "macs": [],
                    "active_in": [],
                    "active_out": [],
                    "gated": id(mod) in gate_of or id(mod) in static_of,
                },
            )
            rec["macs"].append(macs)
            rec["active_in"].append(ain.float().mean(1))
            rec["active_out"].append(aout.float().mean(1))

        return hook

    handles = [m.register_forward_hook(conv_hook(n)) for n, m in layers]
    was = model.training
    model.eval()
    try:
        for i in range(0, images.shape[0], batch_size):
            model(images[i : i + batch_size])
    finally:
        for h in handles:
            h.remove()
        model.train(was)

    dense_total = sum(r["dense_macs"] for r in per_layer.values())
    macs = sum(torch.cat(r["macs"]) for r in per_layer.values())
    predictor = sum(pred_macs.values())
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
    return {
        "samples": int(images.shape[0]),
        "dense_macs": int(dense_total),
        "macs_mean": float(macs.mean()),
        "flops_reduction_mean": stats["mean"],
        "flops_reduction_p10": stats["p10"],
        "flops_reduction_p50": stats["p50"],
        "flops_reduction_p90": stats["p90"],
        "flops_reduction_min": stats["min"],
        "flops_reduction_max": stats["max"],
        "predictor_macs": int(predictor),
        "predictor_overhead_frac": predictor / dense_total if dense_total else 0.0,
        "flops_reduction_mean_with_predictors": with_pred["mean"],
        "per_sample_macs": macs,
        "layers": layers_out,
    }
