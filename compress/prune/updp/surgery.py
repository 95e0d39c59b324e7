"""Module surgery: put pruned forms into a model, and merge them into deployed forms.

Thin on purpose: the algebra is in :mod:`reparam`, the forms in :mod:`forms`, the block
recognition in :mod:`candidates`.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn

from compress.prune.updp.candidates import chain_of, set_module, to_pruned
from compress.prune.updp.forms import KEEP, merge
from compress.prune.updp.linearize import PrunedChain, PrunedViTBlock


def insert_pruned(model: nn.Module, names: list[str], *, lam: float = 0.0) -> dict[str, nn.Module]:
    """Replace the named blocks of ``model`` (in place) by their pruned forms at ``lam``."""
    out = {}
    for name in names:
        pruned = to_pruned(model.get_submodule(name), name)
        chain_of(pruned).lam = float(lam)
        set_module(model, name, pruned)
        out[name] = pruned
    return out


def pruned_blocks(model: nn.Module) -> dict[str, nn.Module]:
    """Name -> pruned block (PrunedChain or PrunedViTBlock) for every pruned block in ``model``."""
    out: dict[str, nn.Module] = {}
    for name, m in model.named_modules():
        if isinstance(m, PrunedViTBlock):
            out[name] = m
        elif isinstance(m, PrunedChain) and not name.endswith(".chain"):
            out[name] = m
    return out


def merge_model(model: nn.Module, forms: dict[str, str]) -> nn.Module:
    """Merge every pruned block (in place) into ``forms[name]``; blocks must be at λ = 1.

    The model must be in eval mode (BatchNorm running statistics are folded).
    """
    if model.training:
        raise ValueError("merge in eval mode: BatchNorm running statistics are folded")
    for name, pruned in pruned_blocks(model).items():
        if chain_of(pruned).lam < 1.0:
            raise ValueError(f"block {name} is at λ={chain_of(pruned).lam:g}; only λ = 1 blocks are affine")
        form = forms.get(name)
        if form is None or form == KEEP:
            raise ValueError(f"no merged form chosen for pruned block {name}")
        set_module(model, name, merge(pruned, form))
    return model


def rebuild_merged(model: nn.Module, blocks: list[dict]) -> nn.Module:
    """Replay recorded merges on a freshly built model (weights are loaded afterwards)."""
    for rec in blocks:
        pruned = to_pruned(model.get_submodule(rec["name"]), rec["name"])
        chain_of(pruned).lam = 1.0
        pruned.eval()
        set_module(model, rec["name"], merge(pruned, rec["form"]))
    return model


def merged_copy(model: nn.Module, forms: dict[str, str]) -> nn.Module:
    """A deep copy of a model with pruned blocks, merged (the original stays trainable)."""
    m = copy.deepcopy(model).eval()
    with torch.no_grad():
        return merge_model(m, forms)
