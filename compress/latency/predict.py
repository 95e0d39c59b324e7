"""The vectorised latency predictor search uses: ``LatencyModel``.

Subnet latency = calibrated correction of (sum of its layers' table entries). The space is
compiled once into per-layer lookup arrays over the genes each layer depends on
(:mod:`compress.latency.compiled`), so scoring is integer indexing and a few additions:

>>> from compress.supernet import get_space                                  # doctest: +SKIP
>>> m = LatencyModel.load(device="local-cpu", runtime="onnxruntime", space=get_space("ofa-mbv3"))  # doctest: +SKIP
>>> m.predict_genes(space.sample_genes(rng, 100_000)).shape                    # doctest: +SKIP
(100000,)

Entries the table lacks are interpolated from measured neighbours and flagged; without any table
the model is a roofline estimate (``source == "estimated"``), which is announced once on stderr
with how to measure instead.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from compress.core.errors import UsageError
from compress.latency.calibrate import Calibration
from compress.latency.compiled import CompiledSpace, compiled_space
from compress.latency.interpolate import fill_missing, interpolate_one
from compress.latency.roofline import ESTIMATE_NOTE, block_time_ms, roof_from_profile
from compress.latency.signature import BlockSignature
from compress.latency.table import LatencyTable

_WARNED: set[tuple[str, str, str]] = set()


def warn_estimated(device: str, runtime: str, precision: str, *, stream: Any = None, profile: Any = None) -> None:
    """Say once per (device, runtime, precision) that latency is an estimate, and how to measure
    (with ``profile``: its power mode and calibration, ``compress.latency.roofline.estimate_note``)."""
    key = (device, runtime, precision, getattr(profile, "power_mode", None))
    if key in _WARNED:
        return
    _WARNED.add(key)
    extra = ""
    if profile is not None:
        from compress.latency.roofline import estimate_detail

        extra = f" Estimate: {estimate_detail(profile)}."
    (stream or sys.stderr).write(
        f"warning: {ESTIMATE_NOTE.format(device=device + mode_flag(profile))}.{extra} "
        f"[{device}, {runtime}, {precision}]\n"
    )


class LatencyModel:
    """Predicts milliseconds per subnet for one (device, runtime, precision, batch, space)."""

    def __init__(
        self,
        *,
        space: Any,
        compiled: CompiledSpace,
        sig_ms: np.ndarray,
        sig_source: list[str],
        source: str,
        device: str,
        runtime: str,
        precision: str,
        batch: int,
        calibration: Calibration | None = None,
        table: LatencyTable | None = None,
        roofline_ms: np.ndarray | None = None,
        profile: Any = None,
    ) -> None:
        self.space = space
        self.profile = profile
        self.compiled = compiled
        self.sig_ms = np.asarray(sig_ms, dtype=np.float64)
        self.sig_source = list(sig_source)
        self.source = source  # "measured" | "estimated"
        self.device, self.runtime, self.precision, self.batch = device, runtime, precision, int(batch)
        self.calibration = calibration
        self.table = table
        self.roofline_ms = roofline_ms
        ids = compiled.sig_ids
        self._ms = [np.where(i >= 0, self.sig_ms[np.maximum(i, 0)], 0.0) for i in ids]
        self._cnt = [(i >= 0).astype(np.float64) for i in ids]
        self._kinds = sorted({s.kind for s in compiled.signatures})
        self._kind_ms: dict[str, list[np.ndarray]] | None = None
        self._sig_index = {sig: i for i, sig in enumerate(compiled.signatures)}
        self._measured: dict[BlockSignature, float] | None = None

    # ---- counts --------------------------------------------------------------------------------
    @property
    def n_interpolated(self) -> int:
        return sum(s == "interpolated" for s in self.sig_source)

    @property
    def n_estimated(self) -> int:
        return sum(s == "estimated" for s in self.sig_source)

    def info(self) -> dict[str, Any]:
        from compress.latency.roofline import estimate_info

        return {
            "device": self.device,
            **estimate_info(self.profile, self.source),
            "runtime": self.runtime,
            "precision": self.precision,
            "batch": self.batch,
            "space": getattr(self.space, "family", None),
            "source": self.source,
            "signatures": len(self.compiled.signatures),
            "interpolated": self.n_interpolated,
            "estimated": self.n_estimated,
            "calibrated": self.calibration is not None,
            "calibration_model": self.calibration.model if self.calibration else None,
            "calibration_loo_mape": self.calibration.loo_mape if self.calibration else None,
            "calibration_loo_max_error_pct": self.calibration.loo_max_error_pct if self.calibration else None,
            "calibration_samples": self.calibration.samples if self.calibration else None,
            "validated": self.validated(),
            "table": str(self.table.path) if self.table is not None and self.table.path else None,
        }

    def validated(self) -> dict[str, Any] | None:
        """The last `compress latency validate` recorded in the table (MAPE, max error...), if any."""
        v = self.table.meta.validation if self.table is not None else None
        if not v:
            return None
        cal_created = (self.table.calibration or {}).get("created")
        return {**v, "stale": v.get("calibration_created") != cal_created}

    # ---- vectorised prediction -----------------------------------------------------------------
    def _genes(self, genes: Any) -> np.ndarray:
        g = np.asarray(genes)
        if g.ndim == 1:
            g = g[None, :]
        sizes = self.compiled.gene_sizes
        if g.ndim != 2 or g.shape[1] != sizes.size:
            raise UsageError(f"genes must have shape (N, {sizes.size}) for this space, got {np.shape(genes)}")
        g = g.astype(np.int64, copy=False)
        if g.size and ((g < 0).any() or (g >= sizes[None, :]).any()):
            raise UsageError("gene values out of range for this space (see space.gene_sizes)")
        return g

    def _gather(self, tables: list[np.ndarray], g: np.ndarray) -> np.ndarray:
        out = np.zeros(g.shape[0], dtype=np.float64)
        c = self.compiled
        gt = np.ascontiguousarray(g.T)
        for p, t in enumerate(tables):
            out += t[c.flat_index(p, gt, transposed=True)]
        return out

    def predict_sum_genes(self, genes: Any) -> np.ndarray:
        """Uncalibrated: the sum of each subnet's layer entries (ms), shape (N,)."""
        return self._gather(self._ms, self._genes(genes))

    def count_genes(self, genes: Any) -> np.ndarray:
        """Number of layers of each subnet."""
        return self._gather(self._cnt, self._genes(genes))

    def features_genes(self, genes: Any, *, per_kind: bool = False) -> dict[str, np.ndarray]:
        """Calibration features: ``sum``, ``blocks`` and (``per_kind``) ``sum_<kind>``."""
        g = self._genes(genes)
        feats = {"sum": self._gather(self._ms, g), "blocks": self._gather(self._cnt, g)}
        if per_kind or (self.calibration is not None and "gflop" in self.calibration.features):
            feats["gflop"] = self._gather(self._flop_tables(), g)
        need_kinds = per_kind or (self.calibration is not None and self.calibration.needs_kinds())
        if need_kinds:
            if self._kind_ms is None:
                kind_of = np.asarray([s.kind for s in self.compiled.signatures] + [""])
                self._kind_ms = {
                    k: [np.where(kind_of[i] == k, m, 0.0) for i, m in zip(self.compiled.sig_ids, self._ms)]
                    for k in self._kinds
                }
            for k, tabs in self._kind_ms.items():
                feats[f"sum_{k}"] = self._gather(tabs, g)
        return feats

    def _flop_tables(self) -> list[np.ndarray]:
        """Per-layer GFLOP lookup arrays (roofline op counts of each signature)."""
        if getattr(self, "_flops", None) is None:
            from compress.latency.roofline import block_cost

            gf = np.asarray([block_cost(s)[0] * self.batch / 1e9 for s in self.compiled.signatures], dtype=np.float64)
            self._flops = [np.where(i >= 0, gf[np.maximum(i, 0)], 0.0) for i in self.compiled.sig_ids]
        return self._flops

    def predict_genes(self, genes: Any) -> np.ndarray:
        """Predicted latency (ms) per gene row: calibrated when the table has a calibration."""
        if self.calibration is None:
            return self.predict_sum_genes(genes)
        pred = self.calibration.apply(self.features_genes(genes))
        return np.maximum(pred, 1e-6)

    def predict(self, cfg: Any) -> float:
        return float(self.predict_genes(self.space.to_genes(cfg)[None, :])[0])

    def breakdown(self, cfg: Any) -> list[dict[str, Any]]:
        """Per-layer view of one subnet: name, signature key, ms, source."""
        g = self._genes(self.space.to_genes(cfg))
        ids = self.compiled.layer_sig_ids(g)[0]
        return [
            {
                "layer": n,
                "signature": self.compiled.signatures[i].key(),
                "ms": float(self.sig_ms[i]),
                "source": self.sig_source[i],
            }
            for n, i in zip(self.compiled.layer_names, ids)
            if i >= 0
        ]

    def signature_ms(self, sig: BlockSignature) -> tuple[float, str]:
        """``(ms, source)`` of one signature, also one the space never produces (e.g. a merged form of
        depth pruning): the space's own entry; else the table's measured entry; else interpolated
        from its measured neighbours (``interpolated`` / ``estimated``, as for missing entries); without a
        table, the roofline estimate from the device profile (``estimated``). Uncalibrated."""
        i = self._sig_index.get(sig)
        if i is not None:
            return float(self.sig_ms[i]), self.sig_source[i]
        if self.table is not None:
            if self._measured is None:
                self._measured = self.table.measured_ms()
            if sig in self._measured:
                return float(self._measured[sig]), "measured"
            v, how, _note = interpolate_one(sig, self._measured)
            return float(v), how
        if self.profile is None:
            raise UsageError(f"no table entry and no device profile to estimate {sig.key()}")
        return float(block_time_ms(sig, roof_from_profile(self.profile, self.precision), batch=self.batch)), "estimated"

    # ---- construction ----------------------------------------------------------------------------
    @classmethod
    def from_table(
        cls, table: LatencyTable, space: Any, *, profile: Any = None, compiled: CompiledSpace | None = None
    ) -> LatencyModel:
        comp = compiled or compiled_space(space)
        measured = table.measured_ms()
        if not measured:
            raise UsageError(f"latency table {table.path} has no measured entries; run `compress profile` again")
        filled = fill_missing(comp.signatures, measured)
        ms, src = [], []
        for s in comp.signatures:
            if s in measured:
                ms.append(measured[s])
                src.append("measured")
            else:
                v, how, _note = filled[s]
                ms.append(v)
                src.append(how)
        cal = Calibration.from_dict(table.calibration) if table.calibration else None
        roof = _roofline_array(comp.signatures, profile, table.meta.precision, table.meta.batch) if profile else None
        return cls(
            space=space,
            compiled=comp,
            sig_ms=np.asarray(ms),
            sig_source=src,
            source="measured",
            device=table.meta.device,
            runtime=table.meta.runtime,
            precision=table.meta.precision,
            batch=table.meta.batch,
            calibration=cal,
            table=table,
            roofline_ms=roof,
            profile=profile,
        )

    @classmethod
    def from_roofline(
        cls,
        space: Any,
        profile: Any,
        *,
        runtime: str,
        precision: str,
        batch: int = 1,
        compiled: CompiledSpace | None = None,
        engine: str = "gpu",
    ) -> LatencyModel:
        comp = compiled or compiled_space(space)
        ms = _roofline_array(comp.signatures, profile, precision, batch, engine=engine)
        return cls(
            space=space,
            compiled=comp,
            sig_ms=ms,
            sig_source=["estimated"] * len(ms),
            source="estimated",
            device=profile.name,
            runtime=runtime,
            precision=precision,
            batch=batch,
            roofline_ms=ms,
            profile=profile,
        )

    @classmethod
    def load(
        cls,
        *,
        device: str,
        runtime: str | None = None,
        precision: str | None = None,
        batch: int = 1,
        space: Any = None,
        tables: str | Path | None = None,
        profiles: str | Path | None = None,
        allow_estimate: bool = True,
        warn: bool = True,
    ) -> LatencyModel:
        """The measured table for (device, runtime, precision, batch, space), else a roofline estimate.

        ``space``: a ``SearchSpace``, a family name, a checkpoint path or ``None`` (the default supernet).
        With ``allow_estimate=False`` a missing table is an error naming the command that measures it.
        """
        from compress.hardware import get_profile
        from compress.latency.spaces import resolve_space, space_label
        from compress.latency.store import tables_dir

        prof = get_profile(device, profiles_dir=profiles)
        rt = prof.check_runtime(runtime)
        prec = prof.check_precision(precision)
        sp = resolve_space(space)
        label = space_label(sp)
        comp = compiled_space(sp, cache_dir=tables_dir(tables) / "_compiled")
        path = LatencyTable.locate(
            device=prof.table_device, runtime=rt, precision=prec, batch=batch, space=label, tables=tables
        )
        if path.is_file():
            from compress.hardware.modes import check_table_mode

            table = LatencyTable.load(path)
            check_table_mode(prof, table.meta, path)  # measured in another power mode: refused with the fix
            return cls.from_table(table, sp, profile=prof, compiled=comp)
        fix = profile_command(prof.name + mode_flag(prof), rt, prec, batch)
        if not allow_estimate:
            raise UsageError(
                f"no measured latency table for {prof.name} / {rt} / {prec} / batch {batch} / {label} "
                f"(looked for {path}); measure one with `{fix}`"
            )
        if prec != "fp32" and (prof.spec is None or prec not in prof.spec.peak):
            # the roofline would price int8/bf16 with the fp32 peak: a number with nothing behind it
            raise UsageError(
                f"no {prec} latency table for {prof.name} / {rt} / batch {batch} / {label} (looked for "
                f"{path}), and its profile has no {prec} peak to estimate from; measure one with `{fix}`"
            )
        near = near_miss_tables(path, sp)
        if prof.power_mode:
            from compress.latency.roofline import gpu_roof_base

            gpu_roof_base(prof, prec)  # a mode without published figures: refused before anything else
        if warn:
            warn_estimated(prof.name, rt, prec, profile=prof)
            if near:
                sys.stderr.write(
                    f"warning: no table for this exact space ({label}), but {len(near)} table(s) of the "
                    f"'{sp.family}' family exist for {prof.name}/{rt}/{prec}/batch {batch}: "
                    f"{', '.join(p.name for p in near)} - measured for a different space (its "
                    "definition or hash changed); they are NOT used. Re-run `compress profile` for this "
                    "supernet.\n"
                )
        return cls.from_roofline(sp, prof, runtime=rt, precision=prec, batch=batch, compiled=comp)


def mode_flag(profile: Any) -> str:
    """`` --power-mode M`` for a profile resolved at a non-default mode (fix commands must name it)."""
    mode = getattr(profile, "power_mode", None)
    if not mode:
        return ""
    from compress.hardware.modes import default_mode_name

    return "" if mode == default_mode_name(profile) else f" --power-mode {mode}"


def profile_command(device: str, runtime: str, precision: str, batch: int = 1) -> str:
    """The ``compress profile`` command that measures the table for this key."""
    extra = (f" --precision {precision}" if precision != "fp32" else "") + (f" --batch {batch}" if batch != 1 else "")
    return f"compress profile --device {device} --runtime {runtime}{extra}"


def near_miss_tables(path: Path, space: Any) -> list[Path]:
    """Tables beside ``path`` (same device/runtime/precision/batch) for another space of the same family.

    A table is found by its space label (family, plus a hash for a customised space); when the
    space's definition changes, the label changes and the old table is silently not found - this
    names it so the fallback to an estimate is never a surprise.
    """
    prefix = path.name.split("__b")[0]  # "<runtime>__<precision>"
    batch = path.name.split("__")[2] if path.name.count("__") >= 3 else ""
    fam = str(getattr(space, "family", ""))
    if not path.parent.is_dir() or not fam:
        return []
    return sorted(p for p in path.parent.glob(f"{prefix}__{batch}__{fam}*.json") if p != path)


def _roofline_array(
    sigs: list[BlockSignature], profile: Any, precision: str, batch: int, *, engine: str = "gpu"
) -> np.ndarray:
    roof = roof_from_profile(profile, precision, engine=engine)
    return np.asarray([block_time_ms(s, roof, batch=batch) for s in sigs], dtype=np.float64)
