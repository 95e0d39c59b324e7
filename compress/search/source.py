"""Model references for search results: ``load_model(RUN_DIR)`` or ``load_model(RUN_DIR/subnet.json)``.

The selected-subnet file records the supernet checkpoint (path + sha256) and the config; loading
rebuilds the static subnet from the checkpoint, re-estimates its BN statistics on the calibration
split the search used (``bn_recalibration``), and returns it with the search's predictions. A
checkpoint that changed since the search is refused (its sha256 differs).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from compress.core.errors import UsageError
from compress.core.runs import read_json, sha256_file
from compress.models.ref import RESOLVERS, LoadedModel
from compress.search.result import SUBNET_FORMAT


def _subnet_file(ref: str, device: str | None = None) -> Path | None:
    p = Path(ref)
    if p.is_file() and p.suffix == ".json":
        try:
            rec = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None
        return p if isinstance(rec, dict) and rec.get("format") == SUBNET_FORMAT else None
    if p.is_dir() and (p / "result.json").is_file():
        if device:
            f = p / f"subnet-{device}.json"
            if not f.is_file():
                have = sorted(x.name[len("subnet-") : -5] for x in p.glob("subnet-*.json"))
                from compress.core.errors import unknown

                raise unknown("device in this search run", device, have)
            return f
        if (p / "subnet.json").is_file():
            return p / "subnet.json"
        have = sorted(x.name for x in p.glob("subnet-*.json"))
        raise UsageError(
            f"{p} holds a search for several devices; give one of its files ({', '.join(have)}) or device=NAME"
        )
    return None


def load_selected(path: str | Path, *, recalibrate: bool = True, check_hash: bool = True) -> LoadedModel:
    """The selected subnet of a search as a static model (BN recalibrated as during the search)."""
    from compress.supernet import load_checkpoint, recalibrate_bn

    rec = read_json(path, what="selected-subnet file")
    if not isinstance(rec, dict) or rec.get("format") != SUBNET_FORMAT:
        raise UsageError(f"{path} is not a selected-subnet file (format '{SUBNET_FORMAT}')")
    sn = rec.get("supernet") or {}
    ckpt = Path(sn.get("path", ""))
    if not ckpt.is_file():
        raise UsageError(f"{path}: its supernet checkpoint {ckpt} is missing; restore it or re-run the search")
    if check_hash and sn.get("sha256") and sha256_file(ckpt) != sn["sha256"]:
        raise UsageError(
            f"{path}: the supernet checkpoint {ckpt} changed since the search (sha256 differs); re-run the search"
        )
    net = load_checkpoint(ckpt)
    cfg = net.space.config_from_dict(rec["config"])
    net.set_active(cfg)
    module = net.export_active().eval()
    bn = rec.get("bn_recalibration")
    if recalibrate and bn:
        from compress.data import load_dataset

        kw = {k: bn[k] for k in ("image_size", "channels", "seed", "val_size", "train_limit") if bn.get(k) is not None}
        data = load_dataset(bn["dataset"], calib_size=int(bn.get("calib_images", 512)), **kw)
        module = recalibrate_bn(module, cfg, data.calib.images)
    header = getattr(net, "checkpoint", {}) or {}
    from compress.supernet.source import subnet_source

    src = subnet_source(net.space, cfg, str(ckpt))
    src["supernet_sha256"] = sn.get("sha256")
    return LoadedModel(
        module=module,
        input_shape=(net.space.in_channels, cfg.resolution, cfg.resolution),
        num_classes=net.space.num_classes,
        source=src,
        dataset=(bn or {}).get("dataset") or (header.get("data") or {}).get("name"),
        predictions={
            **(rec.get("predicted") or {}),
            "device": rec.get("device"),
            "runtime": rec.get("runtime"),
            "precision": rec.get("precision"),
            "latency_source": rec.get("latency_source"),
        },
        metrics={"measured_top1": (rec.get("measured") or {}).get("top1")} if rec.get("measured") else {},
    )


class SearchResolver:
    """Matches a search run directory or a selected-subnet JSON file."""

    def matches(self, ref: str) -> bool:
        p = Path(ref)
        if p.is_dir():
            return (p / "result.json").is_file() and any(p.glob("subnet*.json"))
        try:
            return _subnet_file(ref) is not None
        except UsageError:
            return False

    def load(self, ref: str, **opts: Any) -> LoadedModel:
        f = _subnet_file(ref, opts.get("device"))
        if f is None:
            raise UsageError(f"'{ref}' is not a search run or selected-subnet file")
        return load_selected(f, recalibrate=opts.get("recalibrate", True))


if "search" not in RESOLVERS:
    RESOLVERS.add("search", SearchResolver())
