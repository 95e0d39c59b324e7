"""Search spaces as data: :class:`SearchSpace` (validated, JSON-serialisable) and
:class:`SubnetConfig` (a validated point in it), with gene and one-hot encodings.

Pure Python + numpy: importing this module does not import torch, so search code can use it.

Layout of a space: a stem, an optional fixed first block, ``stages`` (each with depth choices and
per-block kernel / expand choices, a stride, an activation and SE flag), and a head. Elastic
width is one global multiplier (``width_mults``) applied to the stem and stage widths.

>>> from compress.supernet import get_space
>>> space = get_space("mbv3-small-input")
>>> cfg = space.max_config()
>>> space.from_genes(space.to_genes(cfg)) == cfg
True
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from compress.core.config import StrictModel, validate
from compress.core.errors import InternalError, UsageError

# the layer-level types live one level down (layout.py builds on them without importing this module)
from compress.supernet.specs import BlockSpec as BlockSpec, Cost as Cost, conv_out as conv_out, make_divisible

ACTS = ("relu", "hswish", "gelu", "none")


class StemSpec(StrictModel):
    channels: int = Field(gt=0)
    kernel: int = 3
    stride: int = 1
    act: Literal["relu", "hswish", "gelu", "none"] = "relu"
    norm: bool = True
    bias: bool = False
    maxpool: bool = False  # ResNet-style 3x3/2 max pool after the stem conv


class FirstBlockSpec(StrictModel):
    """A fixed (non-elastic) MBConv block with expand ratio 1 (OFA-MBV3's ``blocks.0``)."""

    channels: int = Field(gt=0)
    kernel: int = 3
    stride: int = 1
    act: Literal["relu", "hswish", "gelu", "none"] = "relu"
    se: bool = False


class StageSpec(StrictModel):
    width: int = Field(gt=0, description="output channels at width multiplier 1.0")
    depths: list[int] = Field(min_length=1)
    kernels: list[int] = Field(min_length=1)
    expands: list[float] = Field(min_length=1)
    stride: int = 1
    act: Literal["relu", "hswish", "gelu", "none"] = "relu"
    se: bool = False

    @model_validator(mode="after")
    def _check(self) -> StageSpec:
        for name in ("depths", "kernels", "expands"):
            vals = getattr(self, name)
            if sorted(set(vals)) != list(vals):
                raise ValueError(f"{name} must be strictly increasing, got {vals}")
        if self.depths[0] < 1:
            raise ValueError("depth choices must be >= 1")
        if any(k % 2 == 0 for k in self.kernels):
            raise ValueError("kernel choices must be odd")
        return self


class HeadSpec(StrictModel):
    final_expand: int | None = None  # 1x1 conv + BN + act before pooling (MBV3)
    feature_mix: int | None = None  # 1x1 conv (no BN) + act after pooling (MBV3)
    norm: bool = False  # BatchNorm before pooling (ConvNeXt)
    act: Literal["relu", "hswish", "gelu", "none"] = "hswish"
    dropout: float = 0.0


class SearchSpace(StrictModel):
    """A validated description of every subnet a supernet holds (see module docstring)."""

    family: str
    block: Literal["mbconv", "convnext", "bottleneck"]
    in_channels: int = 3
    num_classes: int = 1000
    resolutions: list[int] = Field(min_length=1)
    width_mults: list[float] = Field(default_factory=lambda: [1.0], min_length=1)
    channel_divisor: int = 8
    stem: StemSpec
    first_block: FirstBlockSpec | None = None
    stages: list[StageSpec] = Field(min_length=1)
    head: HeadSpec = Field(default_factory=HeadSpec)
    kernel_transform: bool = False  # OFA's learned kxk -> smaller kernel transformation
    downsample_kernel: int = 2  # ConvNeXt downsample conv between stages (kernel = stride)
    layer_scale_init: float = 0.1  # ConvNeXt layer-scale init
    res_bins: list[int] | None = None  # [start, step, count]: OFA resolution one-hot bins

    @model_validator(mode="after")
    def _check(self) -> SearchSpace:
        for name in ("resolutions", "width_mults"):
            vals = getattr(self, name)
            if sorted(set(vals)) != list(vals):
                raise ValueError(f"{name} must be strictly increasing, got {vals}")
        if self.block == "convnext" and self.first_block is not None:
            raise ValueError("convnext spaces have no first_block")
        return self

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "search space") -> SearchSpace:
        return validate(cls, data, source=source)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    def hash(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    # ------------------------------------------------------------------ basic facts
    @property
    def num_stages(self) -> int:
        return len(self.stages)

    @property
    def max_depths(self) -> list[int]:
        return [s.depths[-1] for s in self.stages]

    @property
    def num_slots(self) -> int:
        return sum(self.max_depths)

    def slot_offsets(self) -> list[int]:
        return [sum(self.max_depths[:i]) for i in range(self.num_stages)]

    def num_subnets(self) -> int:
        """Number of distinct subnets (resolution x width x per-stage depth/kernel/expand)."""
        n = len(self.resolutions) * len(self.width_mults)
        for s in self.stages:
            per_block = len(s.kernels) * len(s.expands)
            n *= sum(per_block**d for d in s.depths)
        return n

    def stage_width(self, stage: int, width_mult: float) -> int:
        base = self.stages[stage].width
        return base if width_mult == 1.0 else make_divisible(base * width_mult, self.channel_divisor)

    def stem_width(self, width_mult: float) -> int:
        base = self.stem.channels
        return base if width_mult == 1.0 else make_divisible(base * width_mult, self.channel_divisor)

    def first_block_width(self, width_mult: float) -> int:
        if self.first_block is None:
            raise InternalError(f"{self.family}: first_block_width() called on a space without a first block")
        base = self.first_block.channels
        return base if width_mult == 1.0 else make_divisible(base * width_mult, self.channel_divisor)

    # ------------------------------------------------------------------ configs
    def config(
        self,
        *,
        resolution: int,
        width: float = 1.0,
        depths: list[int],
        kernels: list[list[int]],
        expands: list[list[float]],
    ) -> SubnetConfig:
        """Build and validate a config (raises :class:`UsageError` listing the allowed values)."""
        cfg = SubnetConfig(
            resolution=int(resolution),
            width=float(width),
            depths=tuple(int(d) for d in depths),
            kernels=tuple(tuple(int(k) for k in ks) for ks in kernels),
            expands=tuple(tuple(float(e) for e in es) for es in expands),
        )
        return self.validate_config(cfg)

    def validate_config(self, cfg: SubnetConfig) -> SubnetConfig:
        def bad(what: str, value: Any, allowed: Any) -> UsageError:
            return UsageError(
                f"invalid subnet config for '{self.family}': {what} = {value!r} is not allowed; allowed: {allowed}"
            )

        if not isinstance(cfg, SubnetConfig):
            raise UsageError(f"expected a SubnetConfig, got {type(cfg).__name__}")
        if cfg.resolution not in self.resolutions:
            raise bad("resolution", cfg.resolution, self.resolutions)
        if cfg.width not in self.width_mults:
            raise bad("width", cfg.width, self.width_mults)
        for name in ("depths", "kernels", "expands"):
            if len(getattr(cfg, name)) != self.num_stages:
                raise UsageError(
                    f"invalid subnet config for '{self.family}': {name} has "
                    f"{len(getattr(cfg, name))} entries, expected one per stage ({self.num_stages})"
                )
        for i, (st, d, ks, es) in enumerate(zip(self.stages, cfg.depths, cfg.kernels, cfg.expands)):
            if d not in st.depths:
                raise bad(f"depths[{i}]", d, st.depths)
            if len(ks) != d or len(es) != d:
                raise UsageError(
                    f"invalid subnet config for '{self.family}': stage {i} has depth {d} but "
                    f"{len(ks)} kernels and {len(es)} expands (give one per active block)"
                )
            for j, k in enumerate(ks):
                if k not in st.kernels:
                    raise bad(f"kernels[{i}][{j}]", k, st.kernels)
            for j, e in enumerate(es):
                if e not in st.expands:
                    raise bad(f"expands[{i}][{j}]", e, st.expands)
        return cfg

    def config_from_dict(self, data: Any) -> SubnetConfig:
        """Parse our dict layout or OFA's ``{"ks": [...], "e": [...], "d": [...], "r"/"image_size"}``."""
        if not isinstance(data, dict):
            raise UsageError(f"a subnet config must be a JSON object, got {type(data).__name__}")
        if "ks" in data or "d" in data:
            return self.from_ofa_dict(data)
        allowed = {"resolution", "width", "depths", "kernels", "expands"}
        extra = set(data) - allowed
        if extra:
            raise UsageError(f"invalid subnet config: unknown key(s) {sorted(extra)}; allowed: {sorted(allowed)}")
        missing = {"resolution", "depths", "kernels", "expands"} - set(data)
        if missing:
            raise UsageError(f"invalid subnet config: missing key(s) {sorted(missing)}")
        try:
            return self.config(
                resolution=data["resolution"],
                width=data.get("width", 1.0),
                depths=data["depths"],
                kernels=data["kernels"],
                expands=data["expands"],
            )
        except (TypeError, ValueError) as err:
            raise UsageError(f"invalid subnet config: {err}") from None

    def from_ofa_dict(self, data: dict[str, Any]) -> SubnetConfig:
        """OFA arch dict: per-slot ``ks`` and ``e`` (length = number of slots), per-stage ``d``."""
        try:
            ks, es, ds = list(data["ks"]), list(data["e"]), list(data["d"])
            r = int(data.get("r", data.get("image_size", self.resolutions[-1])))
            if isinstance(data.get("r"), list):
                r = int(data["r"][0])
        except (KeyError, TypeError, ValueError) as err:
            raise UsageError(f"invalid OFA arch dict: {err}; expected keys ks, e, d and r") from None
        if len(ks) != self.num_slots or len(es) != self.num_slots or len(ds) != self.num_stages:
            raise UsageError(
                f"invalid OFA arch dict: expected {self.num_slots} ks/e and {self.num_stages} d, "
                f"got {len(ks)}/{len(es)}/{len(ds)}"
            )
        offs = self.slot_offsets()
        return self.config(
            resolution=r,
            width=self.width_mults[-1],
            depths=ds,
            kernels=[ks[o : o + d] for o, d in zip(offs, ds)],
            expands=[es[o : o + d] for o, d in zip(offs, ds)],
        )

    def to_ofa_dict(self, cfg: SubnetConfig) -> dict[str, Any]:
        """OFA's arch dict; inactive slots repeat the last active block's values (OFA ignores them)."""
        ks: list[int] = []
        es: list[float] = []
        for st, d, k, e in zip(self.stages, cfg.depths, cfg.kernels, cfg.expands):
            ks += list(k) + [k[-1]] * (st.depths[-1] - d)
            es += list(e) + [e[-1]] * (st.depths[-1] - d)
        return {
            "ks": ks,
            "e": [int(x) if float(x).is_integer() else x for x in es],
            "d": list(cfg.depths),
            "r": cfg.resolution,
        }

    def min_config(self) -> SubnetConfig:
        return self.config(
            resolution=self.resolutions[0],
            width=self.width_mults[0],
            depths=[s.depths[0] for s in self.stages],
            kernels=[[s.kernels[0]] * s.depths[0] for s in self.stages],
            expands=[[s.expands[0]] * s.depths[0] for s in self.stages],
        )

    def max_config(self) -> SubnetConfig:
        return self.config(
            resolution=self.resolutions[-1],
            width=self.width_mults[-1],
            depths=[s.depths[-1] for s in self.stages],
            kernels=[[s.kernels[-1]] * s.depths[-1] for s in self.stages],
            expands=[[s.expands[-1]] * s.depths[-1] for s in self.stages],
        )

    def sample(self, rng: np.random.Generator) -> SubnetConfig:
        return self.from_genes(self.sample_genes(rng, 1)[0])

    # ------------------------------------------------------------------ genes
    @property
    def gene_names(self) -> list[str]:
        """Gene layout: ``res, width, d0..d{S-1}, k(slot)..., e(slot)...`` (slots stage-major)."""
        names = ["resolution", "width"] + [f"d{i}" for i in range(self.num_stages)]
        slots = [(i, j) for i, st in enumerate(self.stages) for j in range(st.depths[-1])]
        names += [f"k{i}.{j}" for i, j in slots] + [f"e{i}.{j}" for i, j in slots]
        return names

    @property
    def gene_sizes(self) -> np.ndarray:
        """Number of choices of each gene (int64 array aligned with :attr:`gene_names`)."""
        sizes = [len(self.resolutions), len(self.width_mults)] + [len(s.depths) for s in self.stages]
        sizes += [len(s.kernels) for s in self.stages for _ in range(s.depths[-1])]
        sizes += [len(s.expands) for s in self.stages for _ in range(s.depths[-1])]
        return np.asarray(sizes, dtype=np.int64)

    def _slot_stage(self) -> np.ndarray:
        return np.asarray([i for i, s in enumerate(self.stages) for _ in range(s.depths[-1])], dtype=np.int64)

    def _slot_pos(self) -> np.ndarray:
        return np.asarray([j for s in self.stages for j in range(s.depths[-1])], dtype=np.int64)

    def active_slots(self, genes: np.ndarray) -> np.ndarray:
        """(N, num_slots) bool: which block slots are active for each gene row."""
        g = np.atleast_2d(np.asarray(genes, dtype=np.int64))
        depth_vals = np.zeros((g.shape[0], self.num_stages), dtype=np.int64)
        for i, st in enumerate(self.stages):
            depth_vals[:, i] = np.asarray(st.depths)[g[:, 2 + i]]
        return self._slot_pos()[None, :] < depth_vals[:, self._slot_stage()]

    def canonical_genes(self, genes: np.ndarray) -> np.ndarray:
        """Zero the kernel/expand genes of inactive slots (the canonical form); validates ranges."""
        g = np.array(np.atleast_2d(genes), dtype=np.int64, copy=True)
        sizes = self.gene_sizes
        if g.shape[1] != sizes.size:
            raise UsageError(f"genes have length {g.shape[1]}, expected {sizes.size} for '{self.family}'")
        if (g < 0).any() or (g >= sizes[None, :]).any():
            bad = np.argwhere((g < 0) | (g >= sizes[None, :]))[0]
            raise UsageError(
                f"gene '{self.gene_names[bad[1]]}' = {g[bad[0], bad[1]]} out of range 0..{sizes[bad[1]] - 1}"
            )
        act = self.active_slots(g)
        n = self.num_slots
        base = 2 + self.num_stages
        g[:, base : base + n][~act] = 0
        g[:, base + n : base + 2 * n][~act] = 0
        return g

    def sample_genes(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Sample ``n`` canonical gene rows uniformly per gene (OFA's sampling), shape (n, G)."""
        sizes = self.gene_sizes
        g = (rng.random((n, sizes.size)) * sizes[None, :]).astype(np.int64)
        g = np.minimum(g, sizes[None, :] - 1)
        return self.canonical_genes(g)

    def to_genes(self, cfg: SubnetConfig) -> np.ndarray:
        self.validate_config(cfg)
        g = [self.resolutions.index(cfg.resolution), self.width_mults.index(cfg.width)]
        g += [st.depths.index(d) for st, d in zip(self.stages, cfg.depths)]
        kg, eg = [], []
        for st, d, ks, es in zip(self.stages, cfg.depths, cfg.kernels, cfg.expands):
            kg += [st.kernels.index(k) for k in ks] + [0] * (st.depths[-1] - d)
            eg += [st.expands.index(e) for e in es] + [0] * (st.depths[-1] - d)
        return np.asarray(g + kg + eg, dtype=np.int64)

    def from_genes(self, genes: np.ndarray) -> SubnetConfig:
        g = self.canonical_genes(genes)[0]
        offs = self.slot_offsets()
        base = 2 + self.num_stages
        n = self.num_slots
        depths, kernels, expands = [], [], []
        for i, st in enumerate(self.stages):
            d = st.depths[int(g[2 + i])]
            depths.append(d)
            kernels.append([st.kernels[int(x)] for x in g[base + offs[i] : base + offs[i] + d]])
            expands.append([st.expands[int(x)] for x in g[base + n + offs[i] : base + n + offs[i] + d]])
        return self.config(
            resolution=self.resolutions[int(g[0])],
            width=self.width_mults[int(g[1])],
            depths=depths,
            kernels=kernels,
            expands=expands,
        )

    # ------------------------------------------------------------------ one-hot features
    @property
    def encoding_size(self) -> int:
        return len(self.encoding_names)

    @property
    def encoding_names(self) -> list[str]:
        """Feature layout (OFA §5.1): per slot one-hot K, then per slot one-hot E (all zero when
        inactive, which encodes depth), then width one-hot (if elastic), then resolution one-hot
        (OFA's bins when ``res_bins`` is set, else one per choice)."""
        names: list[str] = []
        for i, st in enumerate(self.stages):
            for j in range(st.depths[-1]):
                names += [f"k{i}.{j}={k}" for k in st.kernels]
        for i, st in enumerate(self.stages):
            for j in range(st.depths[-1]):
                names += [f"e{i}.{j}={e:g}" for e in st.expands]
        if len(self.width_mults) > 1:
            names += [f"w={w:g}" for w in self.width_mults]
        if self.res_bins is not None:
            start, step, count = self.res_bins
            names += [f"r_bin{b}={start + b * step}" for b in range(count)]
        else:
            names += [f"r={r}" for r in self.resolutions]
        return names

    def encode(self, cfg: SubnetConfig) -> np.ndarray:
        return self.encode_genes(self.to_genes(cfg)[None, :])[0]

    def encode_genes(self, genes: np.ndarray) -> np.ndarray:
        """Vectorised one-hot features, (N, G) int genes -> (N, F) float32."""
        g = self.canonical_genes(genes)
        n_rows = g.shape[0]
        act = self.active_slots(g)
        base = 2 + self.num_stages
        n = self.num_slots
        parts = []
        for which, attr in ((0, "kernels"), (1, "expands")):
            width = [len(getattr(st, attr)) for st in self.stages for _ in range(st.depths[-1])]
            offs = np.concatenate([[0], np.cumsum(width)[:-1]]).astype(np.int64)
            block = np.zeros((n_rows, int(sum(width))), dtype=np.float32)
            cols = offs[None, :] + g[:, base + which * n : base + (which + 1) * n]
            rows = np.broadcast_to(np.arange(n_rows)[:, None], cols.shape)
            block[rows[act], cols[act]] = 1.0
            parts.append(block)
        if len(self.width_mults) > 1:
            parts.append(np.eye(len(self.width_mults), dtype=np.float32)[g[:, 1]])
        if self.res_bins is not None:
            start, step, count = self.res_bins
            r = np.asarray(self.resolutions)[g[:, 0]]
            b = np.clip((r - start) // step, 0, count - 1)
            parts.append(np.eye(count, dtype=np.float32)[b])
        else:
            parts.append(np.eye(len(self.resolutions), dtype=np.float32)[g[:, 0]])
        return np.concatenate(parts, axis=1)

    # ------------------------------------------------------------------ layout and cost
    def block_specs(self, cfg: SubnetConfig) -> list[BlockSpec]:
        """Every layer that costs time, in order (stem, blocks, head). See :mod:`.layout`."""
        from compress.supernet.layout import block_specs

        return block_specs(self, self.validate_config(cfg))

    def count(self, cfg: SubnetConfig) -> Cost:
        """Analytical params and MACs of the exported subnet."""
        from compress.supernet.layout import count_specs

        return count_specs(self.block_specs(cfg))


@dataclass(frozen=True)
class SubnetConfig:
    """A point in a :class:`SearchSpace`; per-stage lists hold only the active blocks.

    Build with ``space.config(...)`` / ``space.config_from_dict(...)`` (validated); ``key()`` is the
    canonical string (compact sorted JSON) and ``hash()`` its short sha256.
    """

    resolution: int
    width: float
    depths: tuple[int, ...]
    kernels: tuple[tuple[int, ...], ...]
    expands: tuple[tuple[float, ...], ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "resolution": self.resolution,
            "width": self.width,
            "depths": list(self.depths),
            "kernels": [list(k) for k in self.kernels],
            "expands": [list(e) for e in self.expands],
        }

    @staticmethod
    def from_dict(data: Any, space: SearchSpace) -> SubnetConfig:
        return space.config_from_dict(data)

    def key(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    def hash(self) -> str:
        return hashlib.sha256(self.key().encode()).hexdigest()[:12]

    def __str__(self) -> str:
        blocks = "|".join(",".join(f"k{k}e{e:g}" for k, e in zip(ks, es)) for ks, es in zip(self.kernels, self.expands))
        return f"r{self.resolution}-w{self.width:g}-d{''.join(map(str, self.depths))}-[{blocks}]"
