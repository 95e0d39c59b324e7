"""Finding mergeable blocks in a model (UPDP stage 1) and listing the ones that are not.

Blocks are found from the traced graph (:mod:`compress.prune.updp.graph`): any module whose forward
is a chain of convs/linears, eval-affine or swappable norms, activations, squeeze-excitation gates
and per-channel scales, optionally closed by an identity residual, becomes a
:class:`~compress.prune.updp.linearize.PrunedChain`; that covers timm's ResNet/RegNet/MobileNet/
EfficientNet/MNASNet/ConvNeXt blocks, EfficientNet-Lite, the supernet's static blocks and a user's
own ``nn.Module`` blocks alike. A per-class *adapter* remains only where the graph cannot see
enough (:func:`_adapters` says why for each).

Modules holding two or more convs that are not chains and contain no candidate are listed with the
reason the graph gave, never touched.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import torch.nn as nn

from compress.prune.updp.linearize import (
    ActStep,
    ConvStep,
    NormSwapStep,
    PrunedChain,
    PrunedViTBlock,
    ScaleStep,
    Unsupported,
)


@dataclass
class Candidate:
    name: str
    kind: str
    module: nn.Module


@dataclass
class Skipped:
    name: str
    cls: str
    reason: str


def _identity(m: nn.Module | None) -> bool:
    return m is None or isinstance(m, nn.Identity) or type(m).__name__ == "Identity"


def _act(m: nn.Module | None) -> list[nn.Module]:
    return [] if _identity(m) else [ActStep(m)]


# ---- per-class adapters (only where the graph cannot see enough) ---------------------------


def _timm_vit(m: nn.Module, name: str) -> PrunedViTBlock:
    mlp = m.mlp
    if type(mlp).__name__ != "Mlp" or not isinstance(mlp.fc1, nn.Linear):
        raise Unsupported(f"MLP kind {type(mlp).__name__}")
    if not _identity(getattr(mlp, "norm", None)):
        raise Unsupported("norm inside the MLP")
    if not isinstance(m.norm2, nn.LayerNorm):
        raise Unsupported(f"norm2 {type(m.norm2).__name__}")
    c = mlp.fc1.in_features
    steps = [NormSwapStep(m.norm2, c), ConvStep(mlp.fc1), *_act(mlp.act), ConvStep(mlp.fc2)]
    if not _identity(m.ls2):
        steps.append(ScaleStep(m.ls2.gamma))
    return PrunedViTBlock(m, PrunedChain(steps, kind="vit_mlp", name=name, residual=True))


Adapter = Callable[[nn.Module, str], nn.Module]


def _adapters() -> list[tuple[str, Adapter]]:
    """(class path, adapter) pairs, matched by exact class; everything else goes through the graph.

    Each stays for one reason the traced graph cannot cover:
    """
    return [
        # ViT: the MLP half is not a module of its own (attention shares the block's forward), so
        # replacing it needs the block's class to rebuild the attention half around the chain.
        ("timm.models.vision_transformer.Block", _timm_vit),
    ]


def _cls_path(m: nn.Module) -> str:
    return f"{type(m).__module__}.{type(m).__qualname__}"


_BLOCKISH = re.compile(r"Block|Residual|Bottleneck|MBConv|Basic|Stage|Layer", re.I)
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


def _n_convs(m: nn.Module) -> int:
    return sum(isinstance(k, (nn.Conv2d, nn.Linear)) for k in m.modules())


def find_candidates(model: nn.Module) -> tuple[list[Candidate], list[Skipped]]:
    """Blocks of ``model`` that can be pruned (in model order), and blocks left intact with why.

    Modules are visited outermost first. A module whose traced forward is a chain with two or more
    convs/linears (:func:`compress.prune.updp.graph.chain_from_module`) is a candidate and its
    children are not visited; containers (Sequential, ModuleList) and the model itself never are.
    A module that is not a chain is looked into; when nothing inside it is a candidate and it holds
    two or more convs/linears, it is listed as skipped with the reason the graph gave.
    A block's *kind* is its :class:`PrunedChain` kind (``resnet_basic``, ``mbconv``, ``chain``...).
    Train-time branches (RepVGG, MobileOne) must be folded first (:func:`graph.fold_reparameterizable`).
    """
    from compress.prune.updp.graph import _is_leaf, chain_from_module, has_train_branches

    adapters = dict(_adapters())

    def visit(m: nn.Module, name: str) -> tuple[list[Candidate], list[Skipped]]:
        path = _cls_path(m)
        if name and path in adapters:
            try:
                pruned = adapters[path](m, name)
            except Unsupported as err:
                return [], [Skipped(name, type(m).__name__, str(err))]
            return [Candidate(name, chain_of(pruned).kind, m)], []
        if name and has_train_branches(m):
            return [], [
                Skipped(
                    name,
                    type(m).__name__,
                    "train-time branches (RepVGG/MobileOne style): fold them "
                    "first with reparameterize(); compress prune does",
                )
            ]
        reason = None
        if name and not isinstance(m, _CONTAINERS) and not _is_leaf(m):
            try:
                chain = chain_from_module(m, name)
            except Unsupported as err:
                reason = str(err)
            else:
                if len(chain.convs) >= 2:
                    # a wrapper around one block (a one-block timm RegStage): the block is the candidate
                    inner = [(k, c) for k, c in m.named_children() if _n_convs(c) == _n_convs(m)]
                    if len(inner) == 1 and not _is_leaf(inner[0][1]):
                        c, s = visit(inner[0][1], f"{name}.{inner[0][0]}")
                        if c and not s:
                            return c, s
                    return [Candidate(name, chain.kind, m)], []
                if _BLOCKISH.search(type(m).__name__):
                    return [], [
                        Skipped(name, type(m).__name__, "one conv/linear only: nothing to merge inside the block")
                    ]
                return [], []
        cands: list[Candidate] = []
        skipped: list[Skipped] = []
        for child, sub in m.named_children():
            c, s = visit(sub, f"{name}.{child}" if name else child)
            cands += c
            skipped += s
        if reason is not None and _BLOCKISH.search(type(m).__name__):
            # inside a block that does not merge, only blocks merge (a one-block stage's block), not
            # the block's parts (GhostNet's ghost modules): UPDP's unit is the block
            cands = [c for c in cands if _BLOCKISH.search(type(c.module).__name__)]
        if reason is not None and not cands and _n_convs(m) >= 2:
            # a child's reason is kept over the parent's only when the child is a block itself
            # (a one-block RegStage), not a part of one (the SE or the attention inside a block)
            if skipped and all(_BLOCKISH.search(s.cls) for s in skipped):
                return [], skipped
            return [], [Skipped(name, type(m).__name__, reason)]
        return cands, skipped

    return visit(model, "")


def to_pruned(block: nn.Module, name: str) -> nn.Module:
    """The pruned form of ``block`` (a PrunedChain or PrunedViTBlock); raises ``Unsupported``."""
    from compress.prune.updp.graph import chain_from_module

    adapter = dict(_adapters()).get(_cls_path(block))
    return adapter(block, name) if adapter is not None else chain_from_module(block, name)


def chain_of(pruned: nn.Module) -> PrunedChain:
    return pruned.chain if isinstance(pruned, PrunedViTBlock) else pruned


def set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)
