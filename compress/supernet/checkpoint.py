"""Supernet checkpoints: one safetensors file whose metadata holds a JSON header.

Header (metadata key ``compress``)::

    {"format": "compress-supernet", "version": 1, "family": ..., "space": {...SearchSpace...},
     "recipe": {...}, "data": {...}, "metrics": {...}, "toolkit_version": ..., "created": ...,
     "dtype": "float32" | "float16"}

Loading validates the header (the space), then that every tensor's name and shape is exactly what
a supernet of that space holds; anything else is refused with a one-line error. The header is
read without torch (``read_checkpoint_header``), so ``compress info`` stays light. No pickle.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compress.core.errors import UsageError
from compress.core.resources import package_path
from compress.core.runs import atomic_path, now_iso
from compress.supernet.space import SearchSpace

if TYPE_CHECKING:
    from compress.supernet.base import Supernet

FORMAT = "compress-supernet"
VERSION = 1
META_KEY = "compress"
DEFAULT_DIR = package_path("compress.supernet", "default")  # package data (see compress.core.resources)
DEFAULT_NAME = "supernet.safetensors"


def save_checkpoint(
    path: str | Path,
    net: Supernet,
    *,
    recipe: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    fp16: bool = False,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``net`` atomically; ``fp16=True`` stores floating tensors as float16 (half the size)."""
    import torch
    from safetensors.torch import save_file

    from compress import __version__

    header = {
        "format": FORMAT,
        "version": VERSION,
        "family": net.space.family,
        "space": net.space.to_dict(),
        "recipe": recipe or {},
        "data": data or {},
        "metrics": metrics or {},
        "toolkit_version": __version__,
        "created": now_iso(),
        "dtype": "float16" if fp16 else "float32",
        **(extra or {}),
    }
    state = {}
    for k, v in net.state_dict().items():
        t = v.detach().to("cpu").contiguous().clone()
        if fp16 and t.is_floating_point():
            t = t.to(torch.float16)
        state[k] = t
    p = Path(path)
    with atomic_path(p) as tmp:
        save_file(state, str(tmp), metadata={META_KEY: json.dumps(header, sort_keys=True)})
    return p


def _raw_header(p: Path) -> dict[str, Any]:
    """Parse the safetensors header by hand (8-byte length + JSON) and check the file is whole."""
    if not p.is_file():
        raise UsageError(f"checkpoint not found: {p}")
    size = p.stat().st_size
    with open(p, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise UsageError(f"{p}: not a checkpoint (file is {size} bytes); it is truncated or not safetensors")
        (n,) = struct.unpack("<Q", head)
        if n > min(size - 8, 100_000_000):
            raise UsageError(f"{p}: corrupted or truncated checkpoint (header length {n} exceeds the file size {size})")
        raw = fh.read(n)
    try:
        hdr = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise UsageError(f"{p}: corrupted checkpoint (its header is not valid JSON); re-save or re-import it") from None
    if not isinstance(hdr, dict):
        raise UsageError(f"{p}: corrupted checkpoint header")
    end = 0
    for k, v in hdr.items():
        if k == "__metadata__":
            continue
        try:
            end = max(end, int(v["data_offsets"][1]))
        except (TypeError, KeyError, IndexError, ValueError):
            raise UsageError(f"{p}: corrupted checkpoint (bad entry for tensor '{k}')") from None
    if 8 + n + end != size:
        raise UsageError(f"{p}: truncated or corrupted checkpoint: expected {8 + n + end} bytes, file has {size}")
    return hdr


def read_checkpoint_header(path: str | Path) -> dict[str, Any]:
    """The JSON header of a compress supernet checkpoint (validated; no torch needed)."""
    p = Path(path)
    hdr = _raw_header(p)
    meta = hdr.get("__metadata__") or {}
    if META_KEY not in meta:
        hint = ""
        if any(k.startswith(("first_conv.", "blocks.0.conv.", "module.first_conv.")) for k in hdr):
            hint = "; it looks like an OFA state_dict: convert it with `compress import-ofa`"
        raise UsageError(f"{p}: not a compress supernet checkpoint (no '{META_KEY}' header){hint}")
    try:
        header = json.loads(meta[META_KEY])
    except json.JSONDecodeError:
        raise UsageError(f"{p}: corrupted checkpoint header (invalid JSON)") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise UsageError(f"{p}: not a compress supernet checkpoint (format {header.get('format')!r})")
    if int(header.get("version", 0)) > VERSION:
        raise UsageError(
            f"{p}: checkpoint version {header.get('version')} is newer than this toolkit "
            f"supports ({VERSION}); upgrade compress"
        )
    header["space"] = SearchSpace.from_dict(header.get("space"), source=f"{p}: space").to_dict()
    header["_tensors"] = {k: v.get("shape") for k, v in hdr.items() if k != "__metadata__"}
    return header


def load_checkpoint(path: str | Path, *, device: str = "cpu") -> Supernet:
    """Rebuild the supernet of a checkpoint and load its weights (``net.checkpoint`` = header)."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from compress.supernet.base import Supernet

    p = Path(path)
    header = read_checkpoint_header(p)
    tensors = header.pop("_tensors")
    space = SearchSpace.from_dict(header["space"])
    net = Supernet(space)
    expected = {k: list(v.shape) for k, v in net.state_dict().items()}
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = [k for k in expected if k in tensors and list(tensors[k]) != expected[k]]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {missing[:3]}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:3]}")
        if wrong:
            parts.append(f"shape of {wrong[0]} is {tensors[wrong[0]]}, the space needs {expected[wrong[0]]}")
        raise UsageError(
            f"{p}: weights do not match the declared '{space.family}' search space (" + "; ".join(parts) + ")"
        )
    try:
        state = load_file(str(p), device="cpu")
    except (SafetensorError, OSError) as err:
        raise UsageError(f"{p}: cannot read weights ({err}); the file may be truncated or corrupted") from None
    ref = net.state_dict()
    state = {k: v.to(ref[k].dtype) for k, v in state.items()}
    net.load_state_dict(state, strict=True)
    net.checkpoint = header  # type: ignore[attr-defined]
    return net.to(torch.device(device)).eval()


def default_checkpoint_path() -> Path:
    """The embedded default supernet (``compress/supernet/default/supernet.safetensors``)."""
    p = DEFAULT_DIR / DEFAULT_NAME
    if not p.is_file():
        raise UsageError(
            f"no default supernet checkpoint at {p}; pass a checkpoint path "
            f"(train one with `compress train`, or convert OFA weights with `compress import-ofa`)"
        )
    return p


def checkpoint_info(path: str | Path) -> dict[str, Any]:
    """Summary for ``compress info``: family, size of the space, min/max params and MACs, metrics."""
    header = read_checkpoint_header(path)
    tensors = header.pop("_tensors")
    space = SearchSpace.from_dict(header["space"])
    lo, hi = space.count(space.min_config()), space.count(space.max_config())
    return {
        "path": str(path),
        "family": space.family,
        "num_subnets": space.num_subnets(),
        "params_min": lo.params,
        "params_max": hi.params,
        "macs_min": lo.macs,
        "macs_max": hi.macs,
        "resolutions": space.resolutions,
        "width_mults": space.width_mults,
        "stages": [
            {"width": s.width, "depths": s.depths, "kernels": s.kernels, "expands": s.expands} for s in space.stages
        ],
        "num_classes": space.num_classes,
        "in_channels": space.in_channels,
        "metrics": header.get("metrics", {}),
        "recipe": header.get("recipe", {}),
        "data": header.get("data", {}),
        "toolkit_version": header.get("toolkit_version"),
        "created": header.get("created"),
        "dtype": header.get("dtype"),
        "num_tensors": len(tensors),
        "space_hash": space.hash(),
    }
