"""UPDP pruned blocks: a block as a chain of steps whose non-linear parts fade out with λ.

A candidate block is rewritten as a :class:`PrunedChain` of steps (ALGORITHMS.md §1.3):

* :class:`ConvStep` (conv or linear-as-1x1), :class:`BNStep`, :class:`ScaleStep` (layer scale):
  affine, kept as they are;
* :class:`ActStep`: ``φ_λ(x) = (1−λ)·φ(x) + λ·x``;
* :class:`NormSwapStep`: LayerNorm replaced by BatchNorm progressively,
  ``N_λ(x) = (1−λ)·LN(x) + λ·BN(x)`` (so λ = 0 is exactly the baseline) [R, ALGORITHMS §1.7 option];
* :class:`SEStep`: squeeze-excitation gate ``g`` fades to 1, ``x·((1−λ)·g + λ)`` [R: our choice,
  so that SE blocks (EfficientNet-B0) become affine too];
* the residual identity and a post-residual activation (ResNet's ReLU after the add) are kept.

**Borders (ALGORITHMS §1.4).** A chain of zero-padded convs is *not* one zero-padded conv at
the borders (the inner zero padding of an intermediate map is not what the merged conv sees).
Our choice [R]: the chain pads its input once by the total padding ``P = Σ p_j`` and runs every
conv unpadded; before conv ``j ≥ 2`` the ring of width ``e_j = Σ_{m≥j} p_m`` around the original
extent is multiplied by ``λ`` (``mask = M + λ(1−M)``). At λ = 0 the ring is zero, which is exactly
the original zero padding (eval-mode outputs equal the baseline block); at λ = 1 no mask is left
and the chain is one conv with padding ``P``, so the merge is exact on every pixel. The ring fades
in with the same schedule as the activations. Strided convs may only be followed by 1x1 convs.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F


class Unsupported(Exception):
    """A block that cannot be made affine and merged; the message says why."""


class ConvStep(nn.Module):
    """A conv (or a Linear used as a 1x1 conv over channels), run without padding."""

    def __init__(self, conv: nn.Module) -> None:
        super().__init__()
        if isinstance(conv, nn.Linear):
            self.linear = True
            self.stride, self.pad, self.groups, self.k = 1, 0, 1, 1
        elif isinstance(conv, nn.Conv2d):
            self.linear = False
            if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
                raise Unsupported(f"padding mode {conv.padding_mode!r}/{conv.padding!r}")
            if conv.dilation != (1, 1):
                raise Unsupported(f"dilated conv {tuple(conv.dilation)}")
            kh, kw = conv.kernel_size
            sh, sw = conv.stride
            ph, pw = conv.padding
            static = _static_pad(conv)
            if static is not None:
                if len(set(static)) != 1 or (ph, pw) != (0, 0):
                    raise Unsupported(f"asymmetric 'same' padding {static}")
                ph = pw = static[0]
            if kh != kw or sh != sw or ph != pw or kh % 2 == 0:
                raise Unsupported(f"non-square/even kernel {kh}x{kw}, stride {sh}x{sw}, pad {ph}x{pw}")
            if type(conv).__name__ == "Conv2dDynamicSamePadding" or type(conv).__name__ == "Conv2dSame":
                raise Unsupported("dynamic 'same' padding")
            self.stride, self.pad, self.groups, self.k = sh, ph, conv.groups, kh
        else:
            raise Unsupported(f"{type(conv).__name__} is not a conv/linear")
        self.conv = conv

    def weight_bias(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        w = self.conv.weight
        return (w[:, :, None, None] if self.linear else w), self.conv.bias

    @property
    def in_channels(self) -> int:
        return self.conv.in_features if self.linear else self.conv.in_channels

    @property
    def out_channels(self) -> int:
        return self.conv.out_features if self.linear else self.conv.out_channels

    def forward(self, x: torch.Tensor, lam: float) -> torch.Tensor:
        w, b = self.weight_bias()
        return F.conv2d(x, w, b, self.stride, 0, 1, self.groups)


def _static_pad(conv: nn.Module) -> tuple[int, ...] | None:
    """Padding of convs that pad in a submodule (EfficientNet-Lite's Conv2dStaticSamePadding)."""
    sp = getattr(conv, "static_padding", None)
    if sp is None:
        return None
    if isinstance(sp, nn.ZeroPad2d):
        return tuple(int(p) for p in sp.padding)
    if type(sp).__name__ == "Identity" or isinstance(sp, nn.Identity):
        return (0, 0, 0, 0)
    raise Unsupported(f"padding module {type(sp).__name__}")


def copy_bn(bn: nn.Module) -> nn.BatchNorm2d:
    """A plain BatchNorm2d with ``bn``'s parameters and statistics (strips timm's fused act)."""
    new = nn.BatchNorm2d(
        bn.num_features, eps=bn.eps, momentum=bn.momentum, affine=bn.affine, track_running_stats=bn.track_running_stats
    )
    new.load_state_dict(
        {
            k: v
            for k, v in bn.state_dict().items()
            if k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
        },
        strict=False,
    )
    return new.to(next(bn.buffers()).device) if list(bn.buffers()) else new


class BNStep(nn.Module):
    def __init__(self, bn: nn.Module) -> None:
        super().__init__()
        if not isinstance(bn, nn.modules.batchnorm._BatchNorm):
            raise Unsupported(f"norm {type(bn).__name__} is not a BatchNorm")
        if not getattr(bn, "track_running_stats", True):
            raise Unsupported("BatchNorm without running statistics cannot be folded")
        self.bn = copy_bn(bn)

    def forward(self, x: torch.Tensor, lam: float) -> torch.Tensor:
        return self.bn(x)


class NormSwapStep(nn.Module):
    """LayerNorm over channels (NCHW) fading into a new BatchNorm2d initialised from its γ/β."""

    def __init__(self, ln: nn.Module, channels: int) -> None:
        super().__init__()
        self.ln = ln
        self.eps = float(getattr(ln, "eps", 1e-6))
        self.bn = nn.BatchNorm2d(channels)
        with torch.no_grad():
            if getattr(ln, "weight", None) is not None:
                self.bn.weight.copy_(ln.weight)
            if getattr(ln, "bias", None) is not None:
                self.bn.bias.copy_(ln.bias)

    def layer_norm(self, x: torch.Tensor) -> torch.Tensor:
        y = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), self.ln.weight, self.ln.bias, self.eps)
        return y.permute(0, 3, 1, 2)

    def forward(self, x: torch.Tensor, lam: float) -> torch.Tensor:
        if lam >= 1.0:
            return self.bn(x)
        y = self.bn(x)  # computed even at λ = 0 in training so its running statistics warm up
        return (1.0 - lam) * self.layer_norm(x) + lam * y


class ActStep(nn.Module):
    """``φ_λ(x) = (1−λ)·φ(x) + λ·x``."""

    def __init__(self, act: nn.Module) -> None:
        super().__init__()
        self.act = act

    def forward(self, x: torch.Tensor, lam: float) -> torch.Tensor:
        if lam >= 1.0:
            return x
        if lam <= 0:
            return self.act(x)
        # an in-place activation (timm's ReLU(inplace=True)) would overwrite x before λ·x is read
        y = self.act(x.clone()) if getattr(self.act, "inplace", False) else self.act(x)
        return (1.0 - lam) * y + lam * x


class SEStep(nn.Module):
    """Squeeze-excitation ``x·g(x)`` whose gate fades to 1: ``x·((1−λ)·g(x) + λ)``.

    ``fn`` maps the pooled (N, C, 1, 1) tensor to the gate; ``se`` is kept for its parameters.
    """

    def __init__(self, se: nn.Module, kind: str) -> None:
        super().__init__()
        self.se, self.kind = se, kind

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        se = self.se
        if self.kind == "timm":
            return se.gate(se.conv_expand(se.act1(se.conv_reduce(s))))
        if self.kind == "static":
            return se.gate(se.expand(se.act(se.reduce(s))))
        raise Unsupported(f"SE kind {self.kind}")

    def forward(self, x: torch.Tensor, lam: float) -> torch.Tensor:
        if lam >= 1.0:
            return x
        return x * ((1.0 - lam) * self.gate(x) + lam)


class ScaleStep(nn.Module):
    """Layer scale ``γ⊙x`` (shares the block's parameter)."""

    def __init__(self, gamma: torch.Tensor) -> None:
        super().__init__()
        self.gamma = gamma if isinstance(gamma, nn.Parameter) else nn.Parameter(gamma.detach().clone())

    def forward(self, x: torch.Tensor, lam: float) -> torch.Tensor:
        return x * self.gamma.reshape(1, -1, 1, 1)


def ring_mask(x: torch.Tensor, e: int, lam: float) -> torch.Tensor:
    """Multiply the outer ring of width ``e`` by ``λ`` (the inside is kept)."""
    if e <= 0 or lam >= 1.0:
        return x
    h, w = x.shape[-2:]
    m = torch.full((h, w), float(lam), dtype=x.dtype, device=x.device)
    m[e : h - e, e : w - e] = 1.0
    return x * m


class PrunedChain(nn.Module):
    """A candidate block in its pruned form; ``lam`` (λ) is set by the trainer.

    ``kind`` names the block type (``resnet_basic``, ``resnet_bottleneck``, ``mbconv``,
    ``convnext``, ``vit_mlp``...), ``name`` its path in the model.
    """

    def __init__(
        self,
        steps: list[nn.Module],
        *,
        kind: str,
        name: str,
        residual: bool,
        post_act: nn.Module | None = None,
        meta: dict[str, Any] | None = None,
        shortcut: list[nn.Module] | None = None,
    ) -> None:
        super().__init__()
        self.steps = nn.ModuleList(steps)
        # a projection shortcut (1x1 conv + BN, or a conv chain whose only padded conv is the first):
        # affine already, run on the block's input as it is and folded into the merged kernel
        self.shortcut = nn.ModuleList(shortcut) if shortcut else None
        self.kind, self.block_name, self.residual = kind, name, residual
        self.post_act = post_act
        self.meta = dict(meta or {})
        self.lam = 0.0
        self._check()

    @property
    def convs(self) -> list[ConvStep]:
        return [s for s in self.steps if isinstance(s, ConvStep)]

    @property
    def total_pad(self) -> int:
        return sum(c.pad for c in self.convs)

    @property
    def stride(self) -> int:
        s = 1
        for c in self.convs:
            s *= c.stride
        return s

    def _check(self) -> None:
        convs = self.convs
        if not convs:
            raise Unsupported("no conv/linear in the block")
        rest = self.total_pad
        for c in convs:
            rest -= c.pad
            if c.stride > 1 and rest > 0:
                raise Unsupported("a strided conv followed by a padded conv (merge not exact)")
        e = self.total_pad
        for s in self.steps:
            if isinstance(s, ConvStep):
                e -= s.pad
            elif isinstance(s, SEStep) and e > 0:
                raise Unsupported("squeeze-excitation before a padded conv")
        if self.residual and (self.stride != 1 or convs[0].in_channels != convs[-1].out_channels):
            raise Unsupported("identity residual with a stride or a channel change")
        if self.shortcut is not None:
            sc = [s for s in self.shortcut if isinstance(s, ConvStep)]
            if self.residual or not sc:
                raise Unsupported("a projection shortcut needs a conv and no identity residual")
            if any(c.pad for c in sc[1:]):
                raise Unsupported("projection shortcut with a padded conv after its first (merge not exact)")
            stride = 1
            for c in sc:
                stride *= c.stride
            if (
                stride != self.stride
                or sc[0].pad > self.total_pad
                or sc[0].in_channels != convs[0].in_channels
                or sc[-1].out_channels != convs[-1].out_channels
            ):
                raise Unsupported("projection shortcut does not line up with the block (stride, kernel or channels)")
            if any(not isinstance(s, (ConvStep, BNStep, ScaleStep)) for s in self.shortcut):
                raise Unsupported("projection shortcut is not affine (an activation in it)")

    def run_shortcut(self, x: torch.Tensor) -> torch.Tensor:
        sc = [s for s in self.shortcut if isinstance(s, ConvStep)]
        p = sc[0].pad
        h = F.pad(x, (p, p, p, p)) if p else x
        for s in self.shortcut:
            h = s(h, 1.0)
        return h

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        lam = float(self.lam)
        p = self.total_pad
        h = F.pad(x, (p, p, p, p)) if p else x
        e, first = p, True
        for s in self.steps:
            if isinstance(s, ConvStep):
                if not first:
                    h = ring_mask(h, e, lam)
                first = False
                h = s(h, lam)
                e -= s.pad
            else:
                h = s(h, lam)
        if self.residual:
            h = h + x
        elif self.shortcut is not None:
            h = h + self.run_shortcut(x)
        return self.post_act(h) if self.post_act is not None else h


class PrunedViTBlock(nn.Module):
    """A ViT block whose MLP sub-block (LN2 → fc1 → GELU → fc2, + x) is a :class:`PrunedChain`.

    Tokens (B, N, C) run through the chain as (B, C, N, 1); attention stays as it is.
    """

    def __init__(self, block: nn.Module, chain: PrunedChain) -> None:
        super().__init__()
        self.norm1, self.attn, self.ls1, self.drop_path1 = block.norm1, block.attn, block.ls1, block.drop_path1
        self.chain = chain

    def forward(self, x: torch.Tensor, attn_mask: Any = None, is_causal: bool = False) -> torch.Tensor:
        kw = {} if attn_mask is None and not is_causal else {"attn_mask": attn_mask, "is_causal": is_causal}
        x = x + self.drop_path1(self.ls1(self.attn(self.norm1(x), **kw)))
        return self.chain(x.transpose(1, 2).unsqueeze(-1)).squeeze(-1).transpose(1, 2)


def set_lambda(model: nn.Module, lam: float) -> None:
    """Set λ on every pruned chain in ``model``."""
    for m in model.modules():
        if isinstance(m, PrunedChain):
            m.lam = float(lam)


def pruned_chains(model: nn.Module) -> list[PrunedChain]:
    return [m for m in model.modules() if isinstance(m, PrunedChain)]


class GhostConvStep(ConvStep):
    """A Ghost module's ``cat([h, dw(h)])[:, :out]`` as one dense conv (GhostNet): the identity half
    is the centre tap, the cheap half the depthwise kernel. Runs unpadded like every ConvStep; its
    weight is rebuilt from the depthwise conv's parameter on each call, so training updates it."""

    def __init__(self, dw: nn.Conv2d, out_channels: int) -> None:
        super().__init__(dw)
        c = dw.in_channels
        if dw.groups != c or dw.out_channels != c or self.stride != 1:
            raise Unsupported("ghost module whose cheap operation is not a stride-1 depthwise conv")
        if not c <= out_channels <= 2 * c:
            raise Unsupported(f"ghost module keeping {out_channels} of {2 * c} channels")
        self.groups, self.c, self.out = 1, c, out_channels

    @property
    def in_channels(self) -> int:
        return self.c

    @property
    def out_channels(self) -> int:
        return self.out

    def weight_bias(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        w = self.conv.weight
        c, k = self.c, self.k
        idx = torch.arange(c, device=w.device)
        eye = w.new_zeros(c, c, k, k)
        eye[idx, idx, k // 2, k // 2] = 1.0
        cheap = w.new_zeros(c, c, k, k)
        cheap[idx, idx] = w[:, 0]
        b = self.conv.bias
        b = None if b is None else torch.cat([b.new_zeros(c), b])[: self.out]
        return torch.cat([eye, cheap], 0)[: self.out], b


class PartialBNStep(BNStep):
    """The cheap half's BatchNorm: channels ``start:`` only (the identity half passes unchanged)."""

    def __init__(self, bn: nn.Module, *, start: int, total: int) -> None:
        super().__init__(bn)
        n = total - start
        if n < self.bn.num_features:  # the Ghost module's slice drops the last cheap channels
            full = self.bn
            self.bn = nn.BatchNorm2d(n, eps=full.eps, momentum=full.momentum, affine=full.affine)
            self.bn.load_state_dict({k: (v[:n] if v.dim() else v) for k, v in full.state_dict().items()})
        self.start = start

    def forward(self, x: torch.Tensor, lam: float) -> torch.Tensor:
        return torch.cat([x[:, : self.start], self.bn(x[:, self.start :])], 1)


class PartialActStep(ActStep):
    """The cheap half's activation: channels ``start:`` only, faded like any φ_λ."""

    def __init__(self, act: nn.Module, *, start: int) -> None:
        super().__init__(act)
        self.start = start

    def forward(self, x: torch.Tensor, lam: float) -> torch.Tensor:
        return torch.cat([x[:, : self.start], super().forward(x[:, self.start :], lam)], 1)
