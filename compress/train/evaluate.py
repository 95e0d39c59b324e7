"""Top-1 of subnets after BN recalibration, and parsing of ``--subnets min,max,random:N,FILE``."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np

from compress.core.errors import UsageError
from compress.train import net as netapi


def parse_subnets(spec: str, space: Any, *, seed: int = 0, kernel: str = "all") -> list[tuple[str, Any]]:
    """``min``, ``max``, ``random:N`` (seeded), or a path to a JSON file holding a config
    (``subnet.json`` from ``compress search``: its ``config`` key; or a bare config / list of them)."""
    out: list[tuple[str, Any]] = []
    for raw in [s.strip() for s in spec.split(",") if s.strip()]:
        if raw == "min":
            out.append(("min", space.min_config()))
        elif raw == "max":
            out.append(("max", space.max_config()))
        elif raw.startswith("random"):
            _, _, n = raw.partition(":")
            try:
                count = int(n or 1)
            except ValueError:
                raise UsageError(f"bad subnet spec '{raw}'; use random:N with an integer N") from None
            rng = np.random.default_rng(seed)
            out += [(f"random{i}", netapi.restricted_sample(space, rng, kernel=kernel)) for i in range(count)]
        elif Path(raw).expanduser().is_file():
            out += _configs_from_file(Path(raw).expanduser(), space)
        else:
            raise UsageError(
                f"bad subnet spec '{raw}'; use min, max, random:N or a subnet JSON file (e.g. subnet.json)"
            )
    if not out:
        raise UsageError("no subnets given; use e.g. --subnets min,max,random:3")
    return out


def _configs_from_file(path: Path, space: Any) -> list[tuple[str, Any]]:
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UsageError(f"{path}: not valid JSON ({err})") from None
    items = data if isinstance(data, list) else [data]
    out = []
    for i, item in enumerate(items):
        cfg = item.get("config", item) if isinstance(item, dict) else item
        label = path.stem if len(items) == 1 else f"{path.stem}[{i}]"
        out.append((label, space.config_from_dict(cfg)))
    return out


def eval_subnets(
    supernet, space, configs: list[tuple[str, Any]], *, split, calib, recal_batch: int = 256
) -> list[dict]:
    """Per subnet: set active, recalibrate BN on ``calib`` images, top-1 on ``split``; the supernet is untouched."""
    from compress.nn.evaluate import top1
    from compress.supernet import recalibrate_bn, resize_input

    net = copy.deepcopy(supernet)
    rows = []
    for label, cfg in configs:
        net.set_active(cfg)
        recalibrate_bn(net, None, calib.images, batch_size=recal_batch)
        acc = top1(
            net, split.images, split.labels, batch_size=500, transform=lambda x: resize_input(x, net.active.resolution)
        )
        cost = space.count(cfg)
        rows.append(
            {"name": label, "config": cfg.to_dict(), "top1": acc, "params": int(cost.params), "macs": int(cost.macs)}
        )
    return rows


def _resolve_checkpoint(ckpt: str | None) -> tuple[Path, list[tuple[str, Any]] | None]:
    """A checkpoint path; or a search run's ``subnet*.json`` (its supernet and selected config)."""
    from compress.supernet import default_checkpoint_path

    if ckpt is None:
        return default_checkpoint_path(), None
    p = Path(ckpt).expanduser()
    if p.is_dir():
        cands = [p / "subnet.json", p / "supernet.safetensors"]
        p = next((c for c in cands if c.is_file()), p)
    if p.suffix == ".json" and p.is_file():
        try:
            doc = json.loads(p.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise UsageError(f"{p}: not valid JSON ({err})") from None
        sup = (doc.get("supernet") or {}).get("path") if isinstance(doc, dict) else None
        if not sup:
            raise UsageError(f"{p} names no supernet checkpoint (expected a compress search subnet.json)")
        return Path(sup), [(p.stem, doc["config"])]
    if not p.is_file():
        raise UsageError(f"checkpoint not found: {p}; give a supernet .safetensors file or a search subnet.json")
    return p, None


def evaluate_supernet(
    ckpt: str | Path | None = None,
    *,
    data: str = "fashion-mnist",
    subnets: str = "min,max",
    split: str = "test",
    seed: int = 0,
    calib_size: int = 1024,
    image_size: int | None = None,
) -> list[dict]:
    """Top-1 of each requested subnet after BN recalibration on ``calib_size`` training images.

    ``subnets``: comma-separated ``min``, ``max``, ``random:N`` (seeded by ``seed``) or JSON files
    (a search run's ``subnet.json``). ``ckpt`` may itself be a ``subnet.json``: its supernet and its
    selected config are used. Returns ``[{"name", "config", "top1", "params", "macs"}]`` (top-1 as a
    fraction in [0, 1]).
    """
    import torch

    from compress.data import dataset_info, load_dataset

    path, from_file = _resolve_checkpoint(None if ckpt is None else str(ckpt))
    info = dataset_info(data)
    net = netapi.load(path)
    space = net.space
    if space.num_classes != info.num_classes or space.in_channels != info.channels:
        raise UsageError(
            f"{path} was trained for {space.num_classes} classes / {space.in_channels} channels; "
            f"{data} has {info.num_classes} / {info.channels}"
        )
    size = netapi.data_size(space, info.native_size or 32, image_size)
    ds = load_dataset(data, image_size=size, channels=info.channels, seed=seed, calib_size=calib_size)
    configs: list[tuple[str, Any]] = []
    if from_file:
        configs += [(name, space.config_from_dict(c)) for name, c in from_file]
    if subnets and (not from_file or subnets != "min,max"):
        configs += parse_subnets(subnets, space, seed=seed)
    torch.manual_seed(seed)
    return eval_subnets(net.float(), space, configs, split=ds.split(split), calib=ds.calib)
