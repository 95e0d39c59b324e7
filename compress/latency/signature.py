"""Typed block signatures: the keys of latency tables.

A :class:`BlockSignature` describes one layer (or block) by its shape alone: two layers with the
same signature cost the same time on a given device/runtime/precision/batch, wherever they sit in
a network. Feature maps are square (``in_hw`` is the side length).

Kinds are the supernet's layer kinds (see ``compress.supernet.space.BlockSpec``) plus the forms
depth pruning (UPDP) produces when it merges a block into fewer convolutions:

>>> s = BlockSignature(kind="merged_dw_pw", in_hw=8, in_ch=32, out_hw=8, out_ch=32, kernel=7, residual=True)
>>> BlockSignature.from_key(s.key()) == s
True

This module is pure Python (no torch, no numpy).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from typing import Any

from compress.core.errors import UsageError, unknown

# kind -> one-line description (what the block computes)
KINDS: dict[str, str] = {
    "conv": "conv kxk (groups=1) [+BN] [+act] (stems, final expand, feature mix)",
    "dwconv": "depthwise conv kxk [+BN] [+act]",
    "mbconv": "inverted residual: [1x1 expand ->] depthwise kxk -> [SE ->] 1x1 project [+ residual]",
    "convnext": "ConvNeXt: depthwise kxk -> norm -> 1x1 expand -> GELU -> 1x1 project [-> layer scale] + residual",
    "bottleneck": "ResNet bottleneck: 1x1 -> kxk/stride -> 1x1 + shortcut (1x1 projection when shapes change) -> act",
    "basic": "ResNet basic block: kxk/stride -> kxk + shortcut -> act",
    "downsample": "BN then kxk/stride conv with bias (ConvNeXt stage transition)",
    "maxpool": "max pool kxk/stride",
    "norm": "BatchNorm2d",
    "pool": "global average pool",
    "linear": "fully connected in_ch -> out_ch",
    # merged forms produced by depth pruning (UPDP)
    "merged_dw_pw": "merged block: depthwise kxk (bias) -> 1x1 conv (bias) [+ residual add] [-> act]",
    "merged_dense": "merged block: one dense kxk conv (bias, identity folded in) [-> act]",
    "merged_pw": "merged block: one 1x1 conv (bias) [-> act]",
}
MERGED_KINDS: tuple[str, ...] = ("merged_dw_pw", "merged_dense", "merged_pw")
ACTS: tuple[str, ...] = ("none", "relu", "relu6", "hswish", "hsigmoid", "gelu", "silu", "sigmoid", "tanh")
_ACT_ALIASES = {
    "h_swish": "hswish",
    "hardswish": "hswish",
    "swish": "silu",
    "identity": "none",
    "": "none",
    "h_sigmoid": "hsigmoid",
    "hardsigmoid": "hsigmoid",
}

# categorical fields: a neighbour for interpolation must agree on all of them
CATEGORICAL: tuple[str, ...] = (
    "kind",
    "kernel",
    "stride",
    "se",
    "act",
    "residual",
    "norm",
    "bias",
    "has_expand",
    "layer_scale",
)
# numeric fields interpolation may vary
NUMERIC: tuple[str, ...] = ("in_hw", "in_ch", "out_hw", "out_ch", "mid", "se_mid")


@dataclass(frozen=True, order=True)
class BlockSignature:
    """Shape of one layer/block; hashable, ordered, JSON round-trippable (``to_dict``/``from_dict``)."""

    kind: str
    in_hw: int
    in_ch: int
    out_hw: int
    out_ch: int
    kernel: int = 1
    mid: int = 0
    stride: int = 1
    se: bool = False
    se_mid: int = 0
    act: str = "none"
    residual: bool = False
    norm: bool = False
    bias: bool = False
    has_expand: bool = True
    layer_scale: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise unknown("block kind", self.kind, KINDS)
        act = _ACT_ALIASES.get(str(self.act).lower(), str(self.act).lower())
        if act not in ACTS:
            raise unknown("activation", str(self.act), ACTS)
        object.__setattr__(self, "act", act)
        for name in ("in_hw", "in_ch", "out_hw", "out_ch", "kernel", "mid", "stride", "se_mid"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                try:
                    v = int(v)
                except (TypeError, ValueError):
                    raise UsageError(f"block signature field '{name}' must be an integer, got {v!r}") from None
                object.__setattr__(self, name, v)
            if v < 0 or (name in ("in_hw", "in_ch", "out_hw", "out_ch", "kernel", "stride") and v < 1):
                raise UsageError(f"block signature field '{name}' must be positive, got {v}")
        for name in ("se", "residual", "norm", "bias", "has_expand", "layer_scale"):
            object.__setattr__(self, name, bool(getattr(self, name)))

    # ---- identity ---------------------------------------------------------------------------
    @property
    def merged(self) -> bool:
        return self.kind in MERGED_KINDS

    def key(self) -> str:
        """Stable human-readable key, e.g. ``mbconv-in:16x16x24-out:8x8x40-k5-s2-mid:72-se:24-act:hswish``.

        Only non-default optional fields are written, so keys stay short; ``from_key`` inverts it.
        """
        parts = [
            self.kind,
            f"in:{self.in_hw}x{self.in_hw}x{self.in_ch}",
            f"out:{self.out_hw}x{self.out_hw}x{self.out_ch}",
            f"k{self.kernel}",
            f"s{self.stride}",
        ]
        if self.mid:
            parts.append(f"mid:{self.mid}")
        if self.se:
            parts.append(f"se:{self.se_mid}")
        if self.act != "none":
            parts.append(f"act:{self.act}")
        for flag, short in (("residual", "res"), ("norm", "norm"), ("bias", "bias"), ("layer_scale", "ls")):
            if getattr(self, flag):
                parts.append(short)
        if not self.has_expand:
            parts.append("noexp")
        return "-".join(parts)

    __str__ = key

    @classmethod
    def from_key(cls, key: str) -> BlockSignature:
        parts = str(key).split("-")
        try:
            kind = parts[0]
            m_in = re.fullmatch(r"in:(\d+)x(\d+)x(\d+)", parts[1])
            m_out = re.fullmatch(r"out:(\d+)x(\d+)x(\d+)", parts[2])
            if not (m_in and m_out and parts[3].startswith("k") and parts[4].startswith("s")):
                raise ValueError
            kw: dict[str, Any] = dict(
                kind=kind,
                in_hw=int(m_in.group(1)),
                in_ch=int(m_in.group(3)),
                out_hw=int(m_out.group(1)),
                out_ch=int(m_out.group(3)),
                kernel=int(parts[3][1:]),
                stride=int(parts[4][1:]),
            )
            for p in parts[5:]:
                if p.startswith("mid:"):
                    kw["mid"] = int(p[4:])
                elif p.startswith("se:"):
                    kw["se"], kw["se_mid"] = True, int(p[3:])
                elif p.startswith("act:"):
                    kw["act"] = p[4:]
                elif p in ("res", "norm", "bias", "ls", "noexp"):
                    kw[{"res": "residual", "ls": "layer_scale", "noexp": "has_expand"}.get(p, p)] = p != "noexp"
                else:
                    raise ValueError
        except (IndexError, ValueError):
            raise UsageError(f"malformed block signature key '{key}'") from None
        return cls(**kw)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> BlockSignature:
        if not isinstance(data, dict):
            raise UsageError(f"a block signature must be a JSON object, got {type(data).__name__}")
        allowed = {f.name for f in fields(cls)}
        extra = set(data) - allowed
        if extra:
            raise UsageError(f"block signature: unknown field(s) {sorted(extra)}; allowed: {sorted(allowed)}")
        missing = {"kind", "in_hw", "in_ch", "out_hw", "out_ch"} - set(data)
        if missing:
            raise UsageError(f"block signature: missing field(s) {sorted(missing)}")
        return cls(**data)

    def replace(self, **changes: Any) -> BlockSignature:
        d = self.to_dict()
        d.update(changes)
        return BlockSignature(**d)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the block's input (``linear`` takes (C,) after a pool: see ``input_rank``)."""
        return (self.in_ch, self.in_hw, self.in_hw)


def _hw(v: Any) -> int:
    if isinstance(v, (tuple, list)):
        if len(v) != 2 or int(v[0]) != int(v[1]):
            raise UsageError(f"latency tables take square feature maps, got {tuple(v)}")
        return int(v[0])
    return int(v)


def signature_of(spec: Any) -> BlockSignature:
    """Signature of a supernet ``BlockSpec`` (or any object/dict with the same field names)."""
    if isinstance(spec, BlockSignature):
        return spec
    get = spec.get if isinstance(spec, dict) else (lambda k, d=None: getattr(spec, k, d))
    kw: dict[str, Any] = {}
    for f in fields(BlockSignature):
        v = get(f.name, None)
        if v is not None:
            kw[f.name] = _hw(v) if f.name in ("in_hw", "out_hw") else v
    return BlockSignature(**kw)
