"""Dynamic ops: hold the largest weights and slice them for the active subnet.

- :class:`DynConv2d`: elastic in/out channels (first channels), elastic kernel for depthwise
  convs (centre crop, optionally through OFA's learned kernel transformation matrices
  ``transform_{K}to{k}``: the active ``k x k`` filter is obtained from the largest one by cropping
  the centre and multiplying by a ``k^2 x k^2`` matrix, step by step down the kernel list).
- :class:`DynBN`: BatchNorm2d whose affine parameters and running statistics are sliced to the
  active channel count (statistics of the active slice are updated in place during training).
- :class:`DynSE`: squeeze-excite with sliced reduce/expand convs.
- :class:`DynLinear`: linear layer with elastic input features.

Parameter names equal those of the static classes in :mod:`compress.supernet.static`, so export
and masks are name-for-name.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def centre(max_k: int, k: int) -> slice:
    start = (max_k - k) // 2
    return slice(start, start + k)


class DynConv2d(nn.Module):
    """Conv with elastic channels; ``depthwise=True`` gives groups == channels and elastic kernel."""

    def __init__(
        self,
        max_in: int,
        max_out: int,
        kernel: int | list[int] = 1,
        *,
        stride: int = 1,
        depthwise: bool = False,
        bias: bool = False,
        padding: int | None = None,
        kernel_transform: bool = False,
    ) -> None:
        super().__init__()
        self.kernels = sorted(kernel) if isinstance(kernel, list) else [kernel]
        self.max_k = self.kernels[-1]
        self.stride = stride
        self.depthwise = depthwise
        self.fixed_padding = padding
        in_per_group = 1 if depthwise else max_in
        self.weight = nn.Parameter(torch.empty(max_out, in_per_group, self.max_k, self.max_k))
        nn.init.kaiming_normal_(self.weight, mode="fan_out")
        self.bias = nn.Parameter(torch.zeros(max_out)) if bias else None
        self.kernel_transform = bool(kernel_transform and depthwise and len(self.kernels) > 1)
        if self.kernel_transform:
            for big, small in zip(self.kernels[:0:-1], self.kernels[-2::-1]):
                self.register_parameter(f"transform_{big}to{small}", nn.Parameter(torch.eye(small * small)))

    def transform_names(self, k: int) -> list[str]:
        """Transformation matrices used to obtain kernel ``k`` (empty without transforms)."""
        if not self.kernel_transform:
            return []
        return [f"transform_{b}to{s}" for b, s in zip(self.kernels[:0:-1], self.kernels[-2::-1]) if s >= k]

    def weight_region(self, out_ch: int, in_ch: int, k: int) -> tuple[slice, ...]:
        """Slices of ``weight`` that the active filter reads."""
        if self.kernel_transform and k < self.max_k:
            # the chain's first step crops the second-largest kernel's centre (7 -> 5): every
            # smaller kernel reads exactly that centre region
            region = centre(self.max_k, self.kernels[-2])
        else:
            region = centre(self.max_k, k)
        in_sl = slice(0, 1) if self.depthwise else slice(0, in_ch)
        return (slice(0, out_ch), in_sl, region, region)

    def active_weight(self, out_ch: int, in_ch: int, k: int) -> torch.Tensor:
        in_sl = slice(0, 1) if self.depthwise else slice(0, in_ch)
        w = self.weight[:out_ch, in_sl]
        if not self.kernel_transform or k == self.max_k:
            c = centre(self.max_k, k)
            return w[:, :, c, c]
        cur = w
        cur_k = self.max_k
        for big, small in zip(self.kernels[:0:-1], self.kernels[-2::-1]):
            if big <= k:
                break
            c = centre(cur_k, small)
            sub = cur[:, :, c, c].reshape(-1, small * small)
            sub = F.linear(sub, getattr(self, f"transform_{big}to{small}"))
            cur = sub.reshape(w.shape[0], w.shape[1], small, small)
            cur_k = small
        return cur

    def forward(self, x: torch.Tensor, out_ch: int, k: int | None = None) -> torch.Tensor:
        k = self.max_k if k is None else k
        in_ch = x.shape[1]
        if self.depthwise:
            out_ch = in_ch
        w = self.active_weight(out_ch, in_ch, k).contiguous()
        b = self.bias[:out_ch] if self.bias is not None else None
        pad = k // 2 if self.fixed_padding is None else self.fixed_padding
        return F.conv2d(x, w, b, self.stride, pad, 1, in_ch if self.depthwise else 1)


class DynBN(nn.BatchNorm2d):
    """BatchNorm2d sliced to the input's channel count (OFA's ``DynamicBatchNorm2d``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        c = x.shape[1]
        if c == self.num_features:
            return super().forward(x)
        factor = 0.0
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        use_batch = self.training or not self.track_running_stats
        return F.batch_norm(
            x,
            self.running_mean[:c] if self.running_mean is not None else None,
            self.running_var[:c] if self.running_var is not None else None,
            self.weight[:c],
            self.bias[:c],
            use_batch,
            factor,
            self.eps,
        )


class DynSE(nn.Module):
    """Squeeze-excite: mean pool, 1x1 reduce (+bias), ReLU, 1x1 expand (+bias), hard-sigmoid gate."""

    def __init__(self, max_ch: int, max_mid: int) -> None:
        super().__init__()
        self.reduce = DynConv2d(max_ch, max_mid, 1, bias=True)
        self.expand = DynConv2d(max_mid, max_ch, 1, bias=True)

    def forward(self, x: torch.Tensor, se_mid: int) -> torch.Tensor:
        y = x.mean((2, 3), keepdim=True)
        y = F.relu(self.reduce(y, se_mid))
        y = self.expand(y, x.shape[1])
        return x * F.hardsigmoid(y)


class DynLinear(nn.Module):
    def __init__(self, max_in: int, out: int, *, bias: bool = True) -> None:
        super().__init__()
        lin = nn.Linear(max_in, out, bias=bias)
        self.weight = lin.weight
        self.bias = lin.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight[:, : x.shape[1]], self.bias)


def act_fn(name: str) -> nn.Module:
    """Activation module by name (shared with the static classes)."""
    if name == "relu":
        return nn.ReLU()
    if name == "hswish":
        return nn.Hardswish()
    if name == "gelu":
        return nn.GELU()
    if name == "none":
        return nn.Identity()
    raise ValueError(f"unknown activation '{name}'")
