"""Module surgery: find the Conv-BN(-act) sites of a model and put FTWT gates on them.

Where gates go (ALGORITHMS.md §4.3): every conv of a plain VGG-style stack; the stem and both convs
of every ResNet BasicBlock (not the shortcut/downsample conv); the stem and the expand, depthwise
and project convs of every MobileNetV2/MBConv block (the project conv has no activation, so its
gate sits after the BN, before the residual add).

Sites are found by, in order: explicit rules for known block classes (timm ``BasicBlock``,
``InvertedResidual``, ``DepthwiseSeparableConv``, ``ResNet``/``EfficientNet`` stems), a scan of
``nn.Sequential`` containers for Conv2d -> BatchNorm2d [-> activation] runs (this toolkit's small
models, torchvision-style ConvBNReLU), and, for other classes (e.g. the supernet's static MBConv
blocks), a scan of their direct children in registration order for Conv2d -> BatchNorm2d pairs,
gated after the BN (for activations with f(0) = 0 this equals gating after the activation).
:func:`insert_gates` then checks that the wrapped model with gates switched off computes exactly
what the original did, and refuses if not, so a wrongly guessed site never passes silently.

The list of sites is recorded (``model.json`` transform ``ftwt-gates``) and replayed verbatim by
:func:`apply_sites` when a saved model is reloaded.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.nn as nn

from compress.core.errors import UsageError
from compress.prune.ftwt.gates import ChannelGate, GatedConv, StaticMask

ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.SiLU, nn.Hardswish, nn.GELU, nn.LeakyReLU, nn.ELU, nn.Mish)
EXCLUDED_NAMES = ("downsample", "shortcut", "skip", "se", "attn")

# class name -> alternatives; each alternative is a list of (conv, bn, act-or-None) attribute names.
RULES: dict[str, list[list[tuple[str, str, str | None]]]] = {
    "BasicBlock": [
        [("conv1", "bn1", "act1"), ("conv2", "bn2", None)],  # timm
        [("conv1", "bn1", None), ("conv2", "bn2", None)],
    ],  # torchvision (shared relu)
    "ResNet": [[("conv1", "bn1", "act1")], [("conv1", "bn1", None)]],
    "InvertedResidual": [[("conv_pw", "bn1", None), ("conv_dw", "bn2", None), ("conv_pwl", "bn3", None)]],
    "DepthwiseSeparableConv": [[("conv_dw", "bn1", None), ("conv_pw", "bn2", None)]],
    "ConvBnAct": [[("conv", "bn1", None)]],
    "EfficientNet": [[("conv_stem", "bn1", None), ("conv_head", "bn2", None)], [("conv_stem", "bn1", None)]],
    "MobileNetV3": [[("conv_stem", "bn1", None)]],
    # compress.supernet.static (the toolkit's supernet subnets)
    "MBConv": [
        [
            ("expand_conv", "expand_bn", "expand_act"),
            ("dw_conv", "dw_bn", "dw_act"),
            ("project_conv", "project_bn", None),
        ],
        [("dw_conv", "dw_bn", "dw_act"), ("project_conv", "project_bn", None)],
    ],
    "ConvBNAct": [[("conv", "bn", "act")]],
}


def _is_bn(m: nn.Module | None) -> bool:
    return isinstance(m, nn.BatchNorm2d)


def _is_act(m: nn.Module | None) -> bool:
    """An activation module in a rule's act slot (any parameter-free elementwise module: ReLU, h-swish...)."""
    return (
        m is not None
        and not isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.Linear))
        and next(iter(m.parameters()), None) is None
        and len(m._modules) == 0
    )


def _is_conv(m: nn.Module | None) -> bool:
    return isinstance(m, nn.Conv2d) and not isinstance(m, (GatedConv, StaticMask))


def _excluded(path: str) -> bool:
    return any(part in EXCLUDED_NAMES or part.startswith(("downsample", "shortcut")) for part in path.split("."))


def find_sites(model: nn.Module) -> list[dict[str, Any]]:
    """The gate sites of ``model``: dicts ``{"parent", "conv", "bn", "act"}`` (act may be None)."""
    sites: list[dict[str, Any]] = []
    taken: set[int] = set()

    def add(parent: str, conv: str, bn: str, act: str | None, mod: nn.Module) -> None:
        c = mod._modules[conv]
        if id(c) in taken:
            return
        taken.add(id(c))
        sites.append({"parent": parent, "conv": conv, "bn": bn, "act": act})

    for path, mod in model.named_modules():
        if isinstance(mod, (GatedConv, StaticMask)) or _excluded(path):
            continue
        children = mod._modules
        rule = RULES.get(type(mod).__name__)
        if rule is not None:
            for alt in rule:
                if all(
                    _is_conv(children.get(c)) and _is_bn(children.get(b)) and (a is None or _is_act(children.get(a)))
                    for c, b, a in alt
                ):
                    for c, b, a in alt:
                        add(path, c, b, a, mod)
                    break
            continue
        names = [n for n, m in children.items() if m is not None]
        seq = isinstance(mod, nn.Sequential)
        for i, n in enumerate(names[:-1]):
            if _excluded(n) or not _is_conv(children[n]) or not _is_bn(children[names[i + 1]]):
                continue
            act = None
            if seq and i + 2 < len(names) and isinstance(children[names[i + 2]], ACTIVATIONS):
                act = names[i + 2]
            add(path, n, names[i + 1], act, mod)
    return sites


def _get(model: nn.Module, path: str) -> nn.Module:
    return model.get_submodule(path) if path else model


def apply_sites(
    model: nn.Module,
    sites: list[dict[str, Any]],
    *,
    kind: str = "gate",
    pool: str = "avg",
    softmax: bool = True,
    mode: str = "decoupled",
) -> nn.Module:
    """Replace each site's conv by a :class:`GatedConv` (``kind="gate"``) or :class:`StaticMask`
    (``kind="static"``) holding the same conv/BN/act modules; the BN and act slots become Identity."""
    for s in sites:
        parent = _get(model, s["parent"])
        conv, bn = parent._modules.get(s["conv"]), parent._modules.get(s["bn"])
        act = parent._modules.get(s["act"]) if s.get("act") else None
        if not _is_conv(conv) or not _is_bn(bn):
            raise UsageError(
                f"cannot place an FTWT gate at {s['parent'] or '<root>'}.{s['conv']}: expected a "
                f"Conv2d followed by BatchNorm2d there (is this the model the gates were trained on?)"
            )
        wrapped = (
            GatedConv(conv, bn, act, pool=pool, softmax=softmax, mode=mode)
            if kind == "gate"
            else StaticMask(conv, bn, act)
        )
        setattr(parent, s["conv"], wrapped)
        setattr(parent, s["bn"], nn.Identity())
        if s.get("act"):
            setattr(parent, s["act"], nn.Identity())
    return model


def insert_gates(
    model: nn.Module,
    *,
    example: torch.Tensor | None = None,
    kind: str = "gate",
    pool: str = "avg",
    softmax: bool = True,
    mode: str = "decoupled",
    sites: list[dict[str, Any]] | None = None,
) -> tuple[nn.Module, list[dict[str, Any]]]:
    """Gate ``model`` in place and return ``(model, sites)``.

    With ``example`` given, the wrapped model (gates off) must reproduce the original outputs on it
    (max abs difference <= 1e-5 relative), otherwise :class:`UsageError` names the problem.
    """
    sites = find_sites(model) if sites is None else sites
    if not sites:
        raise UsageError(
            f"no Conv2d -> BatchNorm2d layers to gate in {type(model).__name__}; FTWT gates "
            "ResNet basic blocks, MobileNetV2/MBConv blocks and plain Conv-BN-ReLU stacks"
        )
    ref = None
    if example is not None:
        was = model.training
        model.eval()
        with torch.no_grad():
            ref = model(example)
        model.train(was)
    apply_sites(model, sites, kind=kind, pool=pool, softmax=softmax, mode=mode)
    if ref is not None:
        was = model.training
        model.eval()
        with torch.no_grad(), gates_off(model):
            out = model(example)
        model.train(was)
        err = float((out - ref).abs().max()) / max(float(ref.abs().max()), 1e-12)
        if err > 1e-5:
            raise UsageError(
                f"inserting FTWT gates into {type(model).__name__} changed its outputs (relative error "
                f"{err:.2e}): its blocks do not run Conv -> BN -> act in the order found; "
                "add a rule for this block class in compress/prune/ftwt/wrap.py"
            )
    return model, sites


def iter_gates(model: nn.Module) -> Iterator[tuple[str, ChannelGate]]:
    for name, m in model.named_modules():
        if isinstance(m, ChannelGate):
            yield name, m


def configure(
    model: nn.Module, *, enabled: bool | None = None, collect: bool | None = None, mass: float | None = None
) -> None:
    """Set the run-time switches of every gate in ``model``."""
    for _, g in iter_gates(model):
        if enabled is not None:
            g.enabled = enabled
        if collect is not None:
            g.collect = collect
            if not collect:
                g.last_logits = g.last_labels = g.last_mask = None
        if mass is not None:
            g.mass = float(mass)


class gates_off:
    """Context manager: run ``model`` with every gate passing its output through unmasked."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.prev: list[tuple[ChannelGate, bool]] = []

    def __enter__(self) -> nn.Module:
        self.prev = [(g, g.enabled) for _, g in iter_gates(self.model)]
        for g, _ in self.prev:
            g.enabled = False
        return self.model

    def __exit__(self, *exc: object) -> None:
        for g, e in self.prev:
            g.enabled = e


def predictor_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for _, g in iter_gates(model) for p in g.parameters()]


def backbone_parameters(model: nn.Module) -> list[nn.Parameter]:
    ids = {id(p) for p in predictor_parameters(model)}
    return [p for p in model.parameters() if id(p) not in ids]
