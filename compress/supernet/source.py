"""Model references for supernets (imported by ``compress.models.ref`` automatically).

- ``load_model(CKPT, subnet=CFG)``: a supernet checkpoint plus a subnet (a JSON file path, a JSON
  string, or ``min`` / ``max``; default ``max``) -> the exported static subnet.
- base kind ``subnet`` for model directories: ``{"kind": "subnet", "family", "space", "config",
  ...}`` rebuilds the static architecture without the checkpoint (weights come from the model dir).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from compress.core.errors import UsageError
from compress.models.ref import RESOLVERS, LoadedModel, register_base_kind
from compress.supernet.space import SearchSpace, SubnetConfig


def parse_subnet(space: SearchSpace, subnet: str | Path | dict[str, Any] | SubnetConfig | None) -> SubnetConfig:
    """``None``/'max', 'min', a SubnetConfig, a dict, a JSON string, or a JSON file path."""
    if subnet is None or subnet == "max":
        return space.max_config()
    if subnet == "min":
        return space.min_config()
    if isinstance(subnet, SubnetConfig):
        return space.validate_config(subnet)
    if isinstance(subnet, dict):
        data: Any = subnet
    else:
        text = str(subnet).strip()
        if text.startswith("{"):
            try:
                data = json.loads(text)
            except json.JSONDecodeError as err:
                raise UsageError(f"subnet is not valid JSON ({err})") from None
        else:
            p = Path(text)
            if not p.is_file():
                raise UsageError(f"subnet '{text}' is neither 'min', 'max', a JSON string nor an existing JSON file")
            try:
                data = json.loads(p.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                raise UsageError(f"{p}: not valid JSON ({err})") from None
        if isinstance(data, dict) and "config" in data and isinstance(data["config"], dict):
            data = data["config"]  # e.g. a selection record {"config": {...}, ...}
    return space.config_from_dict(data)


def subnet_source(space: SearchSpace, cfg: SubnetConfig, checkpoint: str | None = None) -> dict[str, Any]:
    src = {"kind": "subnet", "family": space.family, "space": space.to_dict(), "config": cfg.to_dict()}
    if checkpoint:
        src["checkpoint"] = checkpoint
    return src


def load_subnet(checkpoint: str | Path, subnet: Any = None) -> LoadedModel:
    from compress.supernet.checkpoint import load_checkpoint

    net = load_checkpoint(checkpoint)
    cfg = parse_subnet(net.space, subnet)
    net.set_active(cfg)
    module = net.export_active().eval()
    header = getattr(net, "checkpoint", {})
    return LoadedModel(
        module=module,
        input_shape=(net.space.in_channels, cfg.resolution, cfg.resolution),
        num_classes=net.space.num_classes,
        source=subnet_source(net.space, cfg, str(checkpoint)),
        dataset=(header.get("data") or {}).get("dataset"),
        metrics=dict(header.get("metrics") or {}),
    )


def rebuild_subnet(base: dict[str, Any]) -> LoadedModel:
    from compress.supernet.static import build_static

    space = SearchSpace.from_dict(base.get("space"), source="model.json base.space")
    cfg = space.config_from_dict(base.get("config"))
    module = build_static(space, cfg).eval()
    return LoadedModel(
        module=module,
        input_shape=(space.in_channels, cfg.resolution, cfg.resolution),
        num_classes=space.num_classes,
        source=dict(base),
    )


class SupernetResolver:
    """Matches safetensors files that carry a compress supernet header."""

    def matches(self, ref: str) -> bool:
        p = Path(ref)
        if not (p.is_file() and p.suffix == ".safetensors"):
            return False
        try:
            from compress.supernet.checkpoint import read_checkpoint_header

            read_checkpoint_header(p)
        except UsageError as err:
            # a damaged supernet checkpoint should reach load() and report the damage
            return "not a compress supernet checkpoint" not in str(err)
        return True

    def load(self, ref: str, **opts: Any) -> LoadedModel:
        return load_subnet(ref, opts.get("subnet"))


if "supernet" not in RESOLVERS:
    RESOLVERS.add("supernet", SupernetResolver())
register_base_kind("subnet", rebuild_subnet)
