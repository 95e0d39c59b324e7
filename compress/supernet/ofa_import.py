"""Import Once-for-All MobileNetV3 supernets (``ofa_mbv3_d234_e346_k357_w1.0`` / ``w1.2``).

Reads the state_dict with ``torch.load(weights_only=True)`` (or safetensors), normalises OFA's key
variants (``mobile_inverted_conv``/``conv``, ``bn.bn``/``bn``, ``conv.conv``/``conv``,
``linear.linear``/``linear``, a ``module.`` prefix), maps every tensor to the ``ofa-mbv3`` supernet
(including the learned kernel transformation matrices ``7to5_matrix`` / ``5to3_matrix``), checks
that every tensor is used with the right shape, and writes a compress checkpoint.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compress.core.errors import UsageError
from compress.core.runs import sha256_file

if TYPE_CHECKING:
    import torch

    from compress.supernet.base import Supernet

_BLOCK_PARTS = [
    (r"inverted_bottleneck\.conv\.weight", "expand_conv.weight"),
    (r"inverted_bottleneck\.bn\.(\w+)", r"expand_bn.\1"),
    (r"depth_conv\.conv\.weight", "dw_conv.weight"),
    (r"depth_conv\.conv\.(\d+)to(\d+)_matrix", r"dw_conv.transform_\1to\2"),
    (r"depth_conv\.bn\.(\w+)", r"dw_bn.\1"),
    (r"depth_conv\.se\.fc\.(reduce|expand)\.(weight|bias)", r"se.\1.\2"),
    (r"point_linear\.conv\.weight", "project_conv.weight"),
    (r"point_linear\.bn\.(\w+)", r"project_bn.\1"),
]


def _normalise(key: str) -> str:
    if key.startswith("module."):
        key = key[len("module.") :]
    key = key.replace(".mobile_inverted_conv.", ".conv.")
    key = (
        key.replace(".bn.bn.", ".bn.")
        .replace(".conv.conv.weight", ".conv.weight")
        .replace(".linear.linear.", ".linear.")
    )
    return key


def map_ofa_key(key: str) -> str | None:
    """Our supernet's parameter name for an OFA-MBV3 key (None if it is not an OFA-MBV3 key)."""
    k = _normalise(key)
    m = re.fullmatch(r"first_conv\.(conv\.weight|bn\.\w+)", k)
    if m:
        return f"stem.{m.group(1)}"
    m = re.fullmatch(r"final_expand_layer\.(conv\.weight|bn\.\w+)", k)
    if m:
        return f"head.final_expand.{m.group(1)}"
    if k == "feature_mix_layer.conv.weight":
        return "head.feature_mix.conv.weight"
    m = re.fullmatch(r"classifier\.linear\.(weight|bias)", k)
    if m:
        return f"head.classifier.linear.{m.group(1)}"
    m = re.fullmatch(r"blocks\.(\d+)\.conv\.(.+)", k)
    if not m:
        return None
    idx, rest = int(m.group(1)), m.group(2)
    prefix = "first_block" if idx == 0 else f"blocks.{idx - 1}"
    for pat, rep in _BLOCK_PARTS:
        if re.fullmatch(pat, rest):
            return f"{prefix}.{re.sub(pat, rep, rest)}"
    return None


def supernet_from_ofa_state(state: dict[str, torch.Tensor], *, source: str = "state_dict") -> Supernet:
    """Build an ``ofa-mbv3`` supernet holding exactly the weights of an OFA-MBV3 state_dict."""
    import torch

    from compress.supernet.base import Supernet
    from compress.supernet.families import get_space

    stem = next((v for k, v in state.items() if _normalise(k) == "first_conv.conv.weight"), None)
    cls = next((v for k, v in state.items() if _normalise(k) == "classifier.linear.weight"), None)
    if stem is None or cls is None:
        raise UsageError(f"{source}: not an OFA-MobileNetV3 state_dict (no first_conv / classifier weights)")
    widths = {16: 1.0, 24: 1.2}
    if int(stem.shape[0]) not in widths:
        raise UsageError(
            f"{source}: stem has {stem.shape[0]} channels; only OFA-MBV3 w1.0 (16) and w1.2 (24) are supported"
        )
    space = get_space(
        "ofa-mbv3", width_mult=widths[int(stem.shape[0])], num_classes=int(cls.shape[0]), in_channels=int(stem.shape[1])
    )
    net = Supernet(space)
    target = net.state_dict()
    new: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        if not isinstance(v, torch.Tensor):
            raise UsageError(f"{source}: entry '{k}' is not a tensor")
        ours = map_ofa_key(k)
        if ours is None or ours not in target:
            raise UsageError(
                f"{source}: unexpected key '{k}' for ofa_mbv3_d234_e346_k357 "
                f"(only the d234_e346_k357 MobileNetV3 layout is supported)"
            )
        if tuple(v.shape) != tuple(target[ours].shape):
            raise UsageError(
                f"{source}: '{k}' has shape {tuple(v.shape)}, ofa-mbv3 w{space.stages[0].width} "
                f"expects {tuple(target[ours].shape)} (is it the d234_e346_k357 supernet?)"
            )
        if ours in new:
            raise UsageError(f"{source}: '{k}' appears twice under different spellings")
        new[ours] = v.to(target[ours].dtype)
    missing = [k for k in target if k not in new and not k.endswith("num_batches_tracked")]
    if missing:
        raise UsageError(f"{source}: missing {len(missing)} tensor(s) for ofa-mbv3, e.g. {missing[:3]}")
    for k in target:
        if k.endswith("num_batches_tracked") and k not in new:
            new[k] = torch.zeros_like(target[k])
    net.load_state_dict(new, strict=True)
    return net.eval()


def import_ofa(state_dict: str | Path, *, out: str | Path, fp16: bool = False) -> dict[str, Any]:
    """Convert an OFA-MBV3 state_dict file into a compress checkpoint at ``out``."""
    from compress.models.timm_source import load_state_dict_file
    from compress.supernet.checkpoint import save_checkpoint

    src = Path(state_dict)
    state = load_state_dict_file(src)
    net = supernet_from_ofa_state(state, source=str(src))
    width = 1.0 if net.space.stem.channels == 16 else 1.2
    recipe = {
        "source": "once-for-all",
        "name": f"ofa_mbv3_d234_e346_k357_w{width}",
        "file": src.name,
        "sha256": sha256_file(src),
    }
    save_checkpoint(out, net, recipe=recipe, fp16=fp16)
    return {
        "out": str(out),
        "family": "ofa-mbv3",
        "width_mult": width,
        "num_classes": net.space.num_classes,
        "num_tensors": len(net.state_dict()),
        "source_sha256": recipe["sha256"],
    }
