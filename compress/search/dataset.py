"""The accuracy predictor's data: sampled subnets evaluated for real, cached beside the checkpoint.

For each sampled subnet: export it from the supernet, re-estimate its BN statistics on the
calibration split (:func:`compress.supernet.recalibrate_bn`), and measure top-1 on the validation
split. (config, top-1) pairs and the trained predictor are cached in
``<checkpoint>.search-cache/<sha256[:16] of the checkpoint>/`` (or, if that directory is not
writable or the checkpoint is inside the installed package - the embedded default - under
``~/.cache/compress/search/``), so a second search on the same checkpoint starts
at once. The pair file is rewritten atomically every few evaluations: an interrupted run resumes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from compress.core.errors import UsageError
from compress.core.runs import atomic_write_json, read_json, sha256_file

PAIRS = "pairs.json"


def cache_dir_for(checkpoint: str | Path, sha: str | None = None) -> Path:
    """Where this checkpoint's search cache lives (created; falls back to the user cache)."""
    import compress

    p = Path(checkpoint).resolve()
    sha = sha or sha256_file(p)
    user = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "compress" / "search" / sha[:16]
    # never write inside the installed package (the embedded default supernet lives there)
    in_package = Path(compress.__file__).resolve().parent in p.parents
    why = []
    for cand in (user,) if in_package else (p.parent / f"{p.name}.search-cache" / sha[:16], user):
        try:
            cand.mkdir(parents=True, exist_ok=True)
            probe = cand / f".probe-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
            return cand
        except OSError as err:
            why.append(f"{cand}: {err.strerror or err}")
            continue
    from compress.core.storage import StorageError

    # checked before any subnet is evaluated: a read-only or full cache fails here, not after the work
    raise StorageError(
        f"cannot create a search cache ({'; '.join(why)}); point XDG_CACHE_HOME at a writable directory with free space"
    )


@dataclass
class EvalData:
    """Calibration and validation images for real subnet evaluation, and how they were made."""

    calib_images: Any
    val_images: Any
    val_labels: Any
    meta: dict[str, Any]


def eval_data_for(
    header: dict[str, Any], *, dataset: str | None = None, calib_images: int = 512, val_images: int | None = None
) -> EvalData:
    """Rebuild the checkpoint's data splits from its header (``data`` = the training run's dataset meta)."""
    from compress.data import load_dataset

    meta = dict(header.get("data") or {})
    space = header.get("space") or {}
    name = dataset or meta.get("name") or meta.get("dataset")
    if not name:
        raise UsageError(
            "the supernet checkpoint does not record its dataset; pass --dataset NAME "
            "(the data the supernet was trained on) so subnets can be evaluated"
        )
    image_size = meta.get("image_size") if not dataset or dataset == meta.get("name") else None
    image_size = image_size or max(space.get("resolutions") or [32])
    kw: dict[str, Any] = {
        "image_size": int(image_size),
        "channels": int(meta.get("channels") or space.get("in_channels") or 3),
        "seed": int(meta.get("seed") or 0),
    }
    if meta.get("val_size") is not None:
        kw["val_size"] = meta["val_size"]
    if meta.get("train_limit"):
        kw["train_limit"] = meta["train_limit"]
    data = load_dataset(str(name), calib_size=int(calib_images), **kw)
    val = data.val if val_images is None else data.val.subset(int(val_images))
    return EvalData(
        calib_images=data.calib.images,
        val_images=val.images,
        val_labels=val.labels,
        meta={
            "dataset": str(name),
            **kw,
            "calib_split": "calib",
            "calib_images": int(len(data.calib)),
            "eval_split": "val",
            "val_images": int(len(val)),
            "fingerprint": data.fingerprint,
        },
    )


def subset_eval_data(data: EvalData, *, calib_images: int | None = None, val_images: int | None = None) -> EvalData:
    """The first ``calib_images`` / ``val_images`` of ``data`` (``None``: all), with the sizes recorded."""
    nc = len(data.calib_images) if calib_images is None else min(int(calib_images), len(data.calib_images))
    nv = len(data.val_labels) if val_images is None else min(int(val_images), len(data.val_labels))
    if nc < 1 or nv < 1:
        raise UsageError(f"predictor evaluation needs at least 1 calibration and 1 validation image, got {nc} / {nv}")
    if nc == len(data.calib_images) and nv == len(data.val_labels):
        return data
    return EvalData(
        calib_images=data.calib_images[:nc],
        val_images=data.val_images[:nv],
        val_labels=data.val_labels[:nv],
        meta={**data.meta, "calib_images": nc, "val_images": nv, "subset": "first images of each split"},
    )


class SubnetEvaluator:
    """Measured top-1 of subnets of one supernet (the supernet itself is never modified)."""

    def __init__(self, net: Any, data: EvalData, *, batch_size: int = 500) -> None:
        self.net = net
        self.data = data
        self.batch_size = batch_size

    def export(self, cfg: Any) -> Any:
        """The static subnet with BN recalibrated on the calibration split (eval mode)."""
        from compress.supernet import recalibrate_bn

        self.net.set_active(cfg)
        static = self.net.export_active()
        return recalibrate_bn(static, cfg, self.data.calib_images, batch_size=256)

    def top1(self, cfg: Any) -> float:
        """Measured top-1 (fraction) of ``cfg`` on the validation images, resized to its resolution."""
        from compress.nn.evaluate import top1
        from compress.supernet import resize_input

        return top1(
            self.export(cfg),
            self.data.val_images,
            self.data.val_labels,
            batch_size=self.batch_size,
            transform=lambda x: resize_input(x, cfg.resolution),
        )


def planned_genes(space: Any, n: int, *, seed: int) -> list[tuple[int, ...]]:
    """The first ``n`` distinct canonical gene rows of the seeded sample sequence (min and max first).

    The sequence depends only on ``seed``, so growing ``n`` extends it and a cache filled by an
    earlier run is reused exactly: same ``(n, seed)``, same training pairs.
    """
    rng = np.random.default_rng(seed)
    out: list[tuple[int, ...]] = []
    seen: set[tuple[int, ...]] = set()
    pool = [space.to_genes(space.min_config()), space.to_genes(space.max_config())]
    rounds = 0
    while len(out) < n and rounds < 50:
        pool += list(space.sample_genes(rng, max(2 * n, 16)))
        for g in pool:
            t = tuple(int(v) for v in g)
            if t not in seen:
                seen.add(t)
                out.append(t)
                if len(out) == n:
                    break
        pool = []
        rounds += 1
    return out


def collect_pairs(
    space: Any,
    evaluator: SubnetEvaluator,
    cache: Path | None,
    *,
    n: int,
    seed: int,
    eval_key: str,
    progress: Callable[[int, int], None] | None = None,
    save_every: int = 10,
) -> tuple[np.ndarray, np.ndarray]:
    """``(genes, top1)`` of the :func:`planned_genes` rows, evaluating only those not cached yet.

    ``eval_key`` identifies the evaluation protocol (data, split sizes); cached pairs made with
    another protocol are ignored. New pairs are saved every ``save_every`` evaluations (resumable).
    """
    cached: dict[tuple[int, ...], dict[str, Any]] = {}
    # one file per evaluation protocol: searches with different protocols share a cache directory
    # without overwriting each other's pairs (the legacy single `pairs.json` is still read)
    path = _pairs_path(cache, eval_key) if cache else None
    if path is not None:
        cached = _read_pairs(space, path if path.is_file() else cache / PAIRS, eval_key)
    plan = planned_genes(space, n, seed=seed)
    todo = [t for t in plan if t not in cached]

    def save() -> None:
        if path is not None:
            _write_pairs(space, path, eval_key, cached)

    for i, t in enumerate(todo):
        cfg = space.from_genes(np.asarray(t))
        cached[t] = {"genes": list(t), "config": cfg.to_dict(), "top1": evaluator.top1(cfg)}
        if progress:
            progress(i + 1, len(todo))
        if (i + 1) % save_every == 0:
            save()
    if todo:
        save()
    genes = np.asarray(plan, dtype=np.int64).reshape(len(plan), -1)
    return genes, np.asarray([cached[t]["top1"] for t in plan], dtype=np.float64)


def _pairs_path(cache: Path, eval_key: str) -> Path:
    return cache / f"pairs-{eval_key}.json"


def _read_pairs(space: Any, path: Path, eval_key: str) -> dict[tuple[int, ...], dict[str, Any]]:
    """The rows of a pair file keyed by gene tuple (empty when absent or made for another space/protocol)."""
    if not path.is_file():
        return {}
    rec = read_json(path, what="search cache")
    if isinstance(rec, dict) and rec.get("space_hash") == space.hash() and rec.get("eval_key") == eval_key:
        return {tuple(r["genes"]): r for r in rec.get("rows", [])}
    return {}


def _write_pairs(space: Any, path: Path, eval_key: str, rows: dict[tuple[int, ...], dict[str, Any]]) -> None:
    atomic_write_json(
        path,
        {
            "format": "compress-search-pairs",
            "version": 1,
            "space_hash": space.hash(),
            "eval_key": eval_key,
            "rows": list(rows.values()),
        },
    )


def cached_top1(space: Any, cache: Path | None, eval_key: str, genes: np.ndarray) -> list[float | None]:
    """Top-1 already measured under this protocol for each gene row (``None`` where not cached)."""
    rows = _read_pairs(space, _pairs_path(cache, eval_key), eval_key) if cache else {}
    return [None if (r := rows.get(tuple(int(v) for v in g))) is None else float(r["top1"]) for g in genes]


def add_refined_pairs(space: Any, cache: Path | None, eval_key: str, genes: np.ndarray, top1: np.ndarray) -> None:
    """Append evaluated top candidates to the pair file (flagged ``refine`` with their order), atomically."""
    if cache is None or not len(genes):
        return
    path = _pairs_path(cache, eval_key)
    cached = _read_pairs(space, path, eval_key)
    order = 1 + max((int(r.get("refine") or 0) for r in cached.values()), default=0)
    for g, y in zip(genes, top1):
        t = tuple(int(v) for v in g)
        if t not in cached:
            cached[t] = {
                "genes": list(t),
                "config": space.from_genes(np.asarray(t)).to_dict(),
                "top1": float(y),
                "refine": order,
            }
            order += 1
    _write_pairs(space, path, eval_key, cached)
