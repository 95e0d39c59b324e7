"""The supernet contract: one ``nn.Module`` for every family, driven by its :class:`SearchSpace`.

>>> import numpy as np, torch
>>> from compress.supernet import build_supernet
>>> net = build_supernet("mbv3-small-input")
>>> cfg = net.sample(np.random.default_rng(0))
>>> net.set_active(cfg)
>>> static = net.export_active().eval()          # plain Conv2d/BatchNorm2d/Linear modules
>>> x = torch.randn(2, 1, cfg.resolution, cfg.resolution)
>>> torch.allclose(net.eval()(x), static(x), atol=1e-5)
True
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from compress.core.errors import UsageError
from compress.supernet.elastic import (
    ElasticBottleneck,
    ElasticConv,
    ElasticConvNeXt,
    ElasticDownsample,
    ElasticLinear,
    ElasticMBConv,
    ElasticNorm,
    ElasticPool,
)
from compress.supernet.space import BlockSpec, Cost, SearchSpace, SubnetConfig
from compress.supernet.static import StaticNet, assemble, build_block_module


def resize_input(x: torch.Tensor, resolution: int) -> torch.Tensor:
    """Resize a batch (N, C, H, W) to ``resolution`` (bilinear, as OFA's elastic resolution)."""
    if x.shape[-1] == resolution and x.shape[-2] == resolution:
        return x
    return F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False)


class Supernet(nn.Module):
    """Weight-sharing supernet over ``space``.

    Contract: ``sample(rng)``, ``set_active(cfg)``, ``min_config()``, ``max_config()``,
    ``export_active()``, ``count(cfg)``, ``reorganize_channels()``, ``permute_hidden(i, perm)``,
    ``active_param_masks()``, ``active_specs()``. ``forward(x)`` runs the active subnet; inputs
    must already be at ``active.resolution`` (see :func:`resize_input`).
    """

    def __init__(self, space: SearchSpace) -> None:
        super().__init__()
        self.space = space
        max_cfg = space.max_config()
        specs = space.block_specs(max_cfg)
        by_name = {s.name: s for s in specs}
        self.stem = ElasticConv(by_name["stem"])
        self.stem_pool = ElasticPool("maxpool") if "stem_pool" in by_name else None
        self.first_block = None
        if "first_block" in by_name:
            self.first_block = ElasticMBConv(
                by_name["first_block"], [by_name["first_block"].kernel], kernel_transform=False
            )
        self.downs = nn.ModuleDict(
            {
                str(i): ElasticDownsample(by_name[f"downs.{i}"])
                for i in range(space.num_stages)
                if f"downs.{i}" in by_name
            }
        )
        blocks: list[nn.Module] = []
        for s in specs:
            if s.slot < 0:
                continue
            kernels = space.stages[s.stage].kernels
            if s.kind == "mbconv":
                blocks.append(ElasticMBConv(s, kernels, kernel_transform=space.kernel_transform))
            elif s.kind == "convnext":
                blocks.append(ElasticConvNeXt(s, kernels, layer_scale_init=space.layer_scale_init))
            else:
                first_of_stage = s.slot == space.slot_offsets()[s.stage]
                blocks.append(ElasticBottleneck(s, kernels, may_project=first_of_stage))
        self.blocks = nn.ModuleList(blocks)
        head: dict[str, nn.Module] = {}
        for s in specs:
            if not s.name.startswith("head."):
                continue
            key = s.name.split(".", 1)[1]
            if s.kind == "conv":
                head[key] = ElasticConv(s)
            elif s.kind == "norm":
                head[key] = ElasticNorm(s.in_ch)
            elif s.kind == "pool":
                head[key] = ElasticPool("pool")
            else:
                head[key] = ElasticLinear(s, dropout=space.head.dropout)
        self.head = nn.ModuleDict(head)
        self._init_bn()
        self.active: SubnetConfig = max_cfg
        self._specs: list[BlockSpec] = specs
        self._layers = [self.get_submodule(s.name) for s in specs]

    def _init_bn(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = 0.1
                m.eps = 1e-5

    # ------------------------------------------------------------------ contract
    def sample(self, rng: np.random.Generator) -> SubnetConfig:
        return self.space.sample(rng)

    def min_config(self) -> SubnetConfig:
        return self.space.min_config()

    def max_config(self) -> SubnetConfig:
        return self.space.max_config()

    def set_active(self, cfg: SubnetConfig | dict[str, Any]) -> None:
        if isinstance(cfg, dict):
            cfg = self.space.config_from_dict(cfg)
        cfg = self.space.validate_config(cfg)
        self.active = cfg
        self._specs = self.space.block_specs(cfg)
        self._layers = [self.get_submodule(s.name) for s in self._specs]

    def active_specs(self) -> list[BlockSpec]:
        return list(self._specs)

    def count(self, cfg: SubnetConfig | None = None) -> Cost:
        return self.space.count(self.active if cfg is None else cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer, s in zip(self._layers, self._specs):
            x = layer(x, s)
        return x

    @torch.no_grad()
    def export_active(self) -> StaticNet:
        """A plain static copy of the active subnet (weights copied, same train/eval mode)."""
        mods = []
        for layer, s in zip(self._layers, self._specs):
            m = build_block_module(s, layer_scale_init=self.space.layer_scale_init)
            state = {k: v.detach().clone() for k, v in layer.active_state(s).items()}
            m.load_state_dict(state, strict=True)
            mods.append(m)
        net = assemble(
            self._specs,
            mods,
            {"family": self.space.family, "space": self.space.to_dict(), "config": self.active.to_dict()},
        )
        dev = next(self.parameters()).device
        return net.to(dev).train(self.training)

    # ------------------------------------------------------------------ masks and channel order
    def active_param_masks(self) -> dict[str, torch.Tensor]:
        """For every parameter, a bool tensor of its shape marking the elements the active subnet uses."""
        masks = {n: torch.zeros_like(p, dtype=torch.bool) for n, p in self.named_parameters()}
        for layer, s in zip(self._layers, self._specs):
            for local, region in layer.regions(s).items():
                masks[f"{s.name}.{local}"][region] = True
        return masks

    def hidden_size(self, block_index: int) -> int:
        """Number of hidden (expand / MLP / middle) channels of elastic block slot ``block_index``."""
        blk = self._block(block_index)
        name, dims = next(iter(blk.hidden_params.items()))  # always a weight of the first hidden conv
        return int(blk.get_parameter(name).shape[dims[0]])

    def _block(self, block_index: int) -> nn.Module:
        if not 0 <= block_index < len(self.blocks):
            raise UsageError(f"block index {block_index} out of range 0..{len(self.blocks) - 1}")
        blk = self.blocks[block_index]
        if not blk.hidden_params:
            raise UsageError(f"block {block_index} has no elastic hidden channels")
        return blk

    @torch.no_grad()
    def permute_hidden(self, block_index: int, perm: torch.Tensor | np.ndarray | list[int]) -> None:
        """Permute the hidden channels of block slot ``block_index`` consistently through all its
        layers (the function of every subnet using all of them is unchanged). ``perm[i]`` is the old
        index of new channel ``i``. For IST: put a worker's partition first, then train with a
        narrower active expand."""
        blk = self._block(block_index)
        n = self.hidden_size(block_index)
        p = (
            perm.detach().to("cpu", torch.long)
            if isinstance(perm, torch.Tensor)
            else torch.as_tensor(np.asarray(perm), dtype=torch.long)
        )
        if p.ndim != 1 or p.numel() != n or not torch.equal(torch.sort(p).values, torch.arange(n)):
            raise UsageError(f"perm must be a permutation of 0..{n - 1} for block {block_index}")
        p = p.to(next(self.parameters()).device)
        tensors = dict(blk.named_parameters()) | dict(blk.named_buffers())
        for name, dims in blk.hidden_params.items():
            t = tensors[name]
            v = t.data
            for d in dims:
                v = v.index_select(d, p)
            t.data.copy_(v)

    @torch.no_grad()
    def reorganize_channels(self) -> None:
        """OFA's re-organisation: sort each block's hidden channels by importance (L1 norm of the
        projecting weights), most important first, so that smaller expands keep the best ones."""
        for i, blk in enumerate(self.blocks):
            if not blk.hidden_params:
                continue
            self.permute_hidden(i, torch.argsort(blk.importance(), descending=True))
            if hasattr(blk, "reorganize_extra"):
                blk.reorganize_extra()


def front_permutation(n: int, first: list[int] | np.ndarray) -> np.ndarray:
    """A permutation of ``range(n)`` that moves ``first`` (in order) to the front (for IST)."""
    first = np.asarray(first, dtype=np.int64)
    rest = np.setdiff1d(np.arange(n), first, assume_unique=False)
    return np.concatenate([first, rest])


__all__ = ["Supernet", "resize_input", "front_permutation"]
