"""Finding mergeable blocks in a model (UPDP stage 1) and listing the ones that are not.

Each *adapter* recognises one block class and rewrites it as a
:class:`~compress.prune.updp.linearize.PrunedChain` (or raises ``Unsupported`` with a reason).
Supported: timm ResNet ``BasicBlock``/``Bottleneck`` (identity shortcut), timm
``InvertedResidual``/``DepthwiseSeparableConv`` (MobileNetV2, EfficientNet; with or without skip,
strided where the strided conv is the last padded one; SE gates fade to 1), timm ``ConvNeXtBlock``
(LN → BN), timm ViT/DeiT ``Block`` MLP sub-blocks (LN2 → BN over tokens), EfficientNet-Lite
``MBConvBlock`` (``efficientnet_lite_pytorch``), and the supernet's static blocks
(``compress.supernet.static``) when that module is installed.

Blocks of a recognised family that fail a condition, and other residual-looking blocks
(class names containing Block/Residual/Bottleneck), are listed with the reason, never touched.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import torch.nn as nn

from compress.prune.updp.linearize import (
    ActStep, BNStep, ConvStep, NormSwapStep, PrunedChain, PrunedViTBlock, ScaleStep, SEStep, Unsupported,
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


def _drop_ok(m: nn.Module | None) -> bool:
    """Dropout/DropPath/DropBlock modules are identities in eval mode; keep them out of the chain."""
    return _identity(m) or any(k in type(m).__name__ for k in ("Drop", "drop"))


def _bn_act(bn: nn.Module) -> list[nn.Module]:
    """timm BatchNormAct2d -> [BN, act]; plain BN -> [BN]."""
    steps: list[nn.Module] = [BNStep(bn)]
    if not _drop_ok(getattr(bn, "drop", None)):
        raise Unsupported("dropout inside a norm-act layer")
    act = getattr(bn, "act", None)
    if act is not None and not _identity(act):
        steps.append(ActStep(act))
    return steps


def _act(m: nn.Module | None) -> list[nn.Module]:
    return [] if _identity(m) else [ActStep(m)]


def _se(m: nn.Module | None) -> list[nn.Module]:
    if _identity(m):
        return []
    if all(hasattr(m, a) for a in ("conv_reduce", "act1", "conv_expand", "gate")):
        return [SEStep(m, "timm")]
    raise Unsupported(f"squeeze-excitation {type(m).__name__}")


# ---- adapters --------------------------------------------------------------------------------

def _timm_basic(m: nn.Module, name: str) -> PrunedChain:
    if m.downsample is not None:
        raise Unsupported("downsample shortcut (not an identity)")
    if not _identity(m.aa) or m.se is not None:
        raise Unsupported("anti-aliasing or SE inside the block")
    steps = [ConvStep(m.conv1), *_bn_act(m.bn1), *_act(m.act1), ConvStep(m.conv2), *_bn_act(m.bn2)]
    return PrunedChain(steps, kind="resnet_basic", name=name, residual=True, post_act=m.act2)


def _timm_bottleneck(m: nn.Module, name: str) -> PrunedChain:
    if m.downsample is not None:
        raise Unsupported("downsample shortcut (not an identity)")
    if not _identity(m.aa) or m.se is not None:
        raise Unsupported("anti-aliasing or SE inside the block")
    steps = [ConvStep(m.conv1), *_bn_act(m.bn1), *_act(m.act1), ConvStep(m.conv2), *_bn_act(m.bn2),
             *_act(m.act2), ConvStep(m.conv3), *_bn_act(m.bn3)]
    return PrunedChain(steps, kind="resnet_bottleneck", name=name, residual=True, post_act=m.act3)


def _timm_ir(m: nn.Module, name: str) -> PrunedChain:
    if getattr(m, "conv_s2d", None) is not None:
        raise Unsupported("space-to-depth stem")
    if not _identity(getattr(m, "aa", None)):
        raise Unsupported("anti-aliased downsampling")
    steps = [ConvStep(m.conv_pw), *_bn_act(m.bn1), ConvStep(m.conv_dw), *_bn_act(m.bn2), *_se(m.se),
             ConvStep(m.conv_pwl), *_bn_act(m.bn3)]
    return PrunedChain(steps, kind="mbconv", name=name, residual=bool(m.has_skip))


def _timm_ds(m: nn.Module, name: str) -> PrunedChain:
    if getattr(m, "conv_s2d", None) is not None:
        raise Unsupported("space-to-depth stem")
    if not _identity(getattr(m, "aa", None)):
        raise Unsupported("anti-aliased downsampling")
    steps = [ConvStep(m.conv_dw), *_bn_act(m.bn1), *_se(m.se), ConvStep(m.conv_pw), *_bn_act(m.bn2)]
    return PrunedChain(steps, kind="mbconv", name=name, residual=bool(m.has_skip))


def _timm_convnext(m: nn.Module, name: str) -> PrunedChain:
    if not _identity(m.shortcut):
        raise Unsupported("projection shortcut (channel change)")
    if getattr(m.conv_dw, "stride", (1, 1)) != (1, 1):
        raise Unsupported("strided depthwise conv")
    mlp = m.mlp
    if type(mlp).__name__ not in ("Mlp", "ConvMlp") or not hasattr(mlp, "fc1"):
        raise Unsupported(f"MLP kind {type(mlp).__name__}")
    if not _identity(getattr(mlp, "norm", None)):
        raise Unsupported("norm inside the MLP")
    if "LayerNorm" not in type(m.norm).__name__:
        raise Unsupported(f"norm {type(m.norm).__name__}")
    c = m.conv_dw.out_channels
    steps = [ConvStep(m.conv_dw), NormSwapStep(m.norm, c), ConvStep(mlp.fc1), *_act(mlp.act), ConvStep(mlp.fc2)]
    if m.gamma is not None:
        steps.append(ScaleStep(m.gamma))
    return PrunedChain(steps, kind="convnext", name=name, residual=True)


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


def _lite_mbconv(m: nn.Module, name: str) -> PrunedChain:
    a = m._block_args
    if m.has_se:
        raise Unsupported("squeeze-excitation (not in EfficientNet-Lite)")
    steps: list[nn.Module] = []
    if a.expand_ratio != 1:
        steps += [ConvStep(m._expand_conv), BNStep(m._bn0), ActStep(m._swish)]
    steps += [ConvStep(m._depthwise_conv), BNStep(m._bn1), ActStep(m._swish), ConvStep(m._project_conv), BNStep(m._bn2)]
    skip = bool(m.id_skip and a.stride in (1, [1], (1, 1), [1, 1]) and a.input_filters == a.output_filters)
    return PrunedChain(steps, kind="mbconv", name=name, residual=skip)


Adapter = Callable[[nn.Module, str], nn.Module]


def _adapters() -> list[tuple[str, Adapter]]:
    """(class path, adapter) pairs; matched by exact class, so subclasses are not assumed to fit."""
    out: list[tuple[str, Adapter]] = [
        ("timm.models.resnet.BasicBlock", _timm_basic),
        ("timm.models.resnet.Bottleneck", _timm_bottleneck),
        ("timm.models._efficientnet_blocks.InvertedResidual", _timm_ir),
        ("timm.models._efficientnet_blocks.DepthwiseSeparableConv", _timm_ds),
        ("timm.models.convnext.ConvNeXtBlock", _timm_convnext),
        ("timm.models.vision_transformer.Block", _timm_vit),
        ("efficientnet_lite_pytorch.model.MBConvBlock", _lite_mbconv),
    ]
    try:
        from compress.prune.updp import static_blocks
        out += static_blocks.adapters()
    except ImportError:
        pass
    return out


def _cls_path(m: nn.Module) -> str:
    return f"{type(m).__module__}.{type(m).__qualname__}"


_BLOCKISH = re.compile(r"Block|Residual|Bottleneck|MBConv|Basic", re.I)


def find_candidates(model: nn.Module) -> tuple[list[Candidate], list[Skipped]]:
    """Blocks of ``model`` that can be pruned (in model order), and blocks left intact with why.

    A block's *kind* is the :class:`PrunedChain` kind (``resnet_basic``, ``mbconv``...).
    """
    adapters = dict(_adapters())
    cands: list[Candidate] = []
    skipped: list[Skipped] = []
    covered: list[str] = []
    for name, m in model.named_modules():
        if not name or any(name.startswith(c + ".") for c in covered):
            continue
        path = _cls_path(m)
        if path in adapters:
            covered.append(name)
            try:
                pruned = adapters[path](m, name)
            except Unsupported as err:
                skipped.append(Skipped(name, type(m).__name__, str(err)))
                continue
            chain = pruned.chain if isinstance(pruned, PrunedViTBlock) else pruned
            cands.append(Candidate(name, chain.kind, m))
        elif _BLOCKISH.search(type(m).__name__) and not isinstance(m, (nn.Sequential, nn.ModuleList)):
            covered.append(name)
            skipped.append(Skipped(name, type(m).__name__, "block type not supported by UPDP"))
    return cands, skipped


def to_pruned(block: nn.Module, name: str) -> nn.Module:
    """The pruned form of ``block`` (a PrunedChain or PrunedViTBlock); raises ``Unsupported``."""
    adapters = dict(_adapters())
    path = _cls_path(block)
    if path not in adapters:
        raise Unsupported(f"{type(block).__name__} is not a supported block type")
    return adapters[path](block, name)


def chain_of(pruned: nn.Module) -> PrunedChain:
    return pruned.chain if isinstance(pruned, PrunedViTBlock) else pruned


def get_module(model: nn.Module, name: str) -> nn.Module:
    return model.get_submodule(name)


def set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)
