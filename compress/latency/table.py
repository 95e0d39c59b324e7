"""Latency tables: versioned JSON, one per (device, runtime, precision, batch, search space).

File layout (``format: compress-latency-table``, ``version: 1``)::

    {"format": "compress-latency-table", "version": 1,
     "meta": {"device", "runtime", "runtime_version", "precision", "batch", "threads", "space",
              "space_hash", "estimator", "host": {cpu_model, gpu_name, driver, jetpack, nvpmodel,
              clocks, ...}, "created", "updated", "timing": {...}, "drift": [DriftRecord, ...]},
     "entries": [{"key", "signature": {...}, "count", "median_ms", "mean_ms", "std_ms", "min_ms",
                  "p10_ms", "source": "measured", "noisy", "drift_status", "measured_at"}, ...],
     "calibration": null | {"model", "coef", "features", "loo_mape", "samples", ...}}

Writes are atomic (temp file + rename); a profile run saves after every stretch of blocks, so a
killed run resumes with the entries it had measured.

>>> t = LatencyTable.new(device="local-cpu", runtime="onnxruntime", precision="fp32", batch=1, space="demo")
>>> from compress.latency.signature import BlockSignature
>>> sig = BlockSignature(kind="pool", in_hw=4, in_ch=8, out_hw=1, out_ch=8)
>>> t.add(sig, Entry(count=10, median_ms=0.01, mean_ms=0.011, std_ms=0.001, min_ms=0.009, p10_ms=0.0095))
>>> t.lookup(sig)
0.01
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from compress.core.errors import UsageError
from compress.core.runs import atomic_write_json, now_iso
from compress.latency.signature import BlockSignature
from compress.latency.store import table_path

FORMAT = "compress-latency-table"
VERSION = 1
ESTIMATORS = ("median", "p10", "min", "mean")
SOURCES = ("measured", "interpolated", "estimated")


@dataclass
class Entry:
    """Statistics of one block's measured latency in milliseconds."""

    count: int
    median_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float | None = None
    p10_ms: float | None = None
    source: str = "measured"  # measured | interpolated | estimated
    noisy: bool = False
    drift_status: str | None = None  # the timing engine's status for the stretch it was measured in
    measured_at: str | None = None
    note: str | None = None  # how an interpolated/estimated value was obtained

    def value(self, estimator: str = "median") -> float:
        v = {"median": self.median_ms, "p10": self.p10_ms, "min": self.min_ms, "mean": self.mean_ms}[estimator]
        return float(self.median_ms if v is None else v)

    @classmethod
    def from_stats(cls, stats: Any, **kw: Any) -> Entry:
        """From ``compress.bench.timing.Stats`` (normalised samples)."""
        return cls(
            count=int(stats.n),
            median_ms=float(stats.median_ms),
            mean_ms=float(stats.mean_ms),
            std_ms=float(stats.std_ms),
            min_ms=float(stats.min_ms),
            p10_ms=float(stats.p10_ms),
            **kw,
        )

    @classmethod
    def point(cls, ms: float, *, source: str, note: str | None = None) -> Entry:
        """A single value that was not measured (interpolated / estimated)."""
        return cls(count=0, median_ms=ms, mean_ms=ms, std_ms=0.0, min_ms=ms, p10_ms=ms, source=source, note=note)


@dataclass
class TableMeta:
    device: str
    runtime: str
    precision: str
    batch: int
    space: str
    runtime_version: str | None = None
    threads: int | None = None
    space_hash: str | None = None
    estimator: str = "p10"
    host: dict[str, Any] = field(default_factory=dict)
    created: str = field(default_factory=now_iso)
    updated: str | None = None
    timing: dict[str, Any] = field(default_factory=dict)
    drift: list[dict[str, Any]] = field(default_factory=list)
    remote: str | None = None
    notes: list[str] = field(default_factory=list)
    validation: dict[str, Any] | None = None  # summary of the last `compress latency validate` of this table
    power_mode: str | None = None  # the device's power mode the table was measured in (Jetson nvpmodel)


class LatencyTable:
    """Entries keyed by :class:`BlockSignature`, plus metadata and an optional calibration."""

    def __init__(
        self,
        meta: TableMeta,
        entries: dict[BlockSignature, Entry] | None = None,
        calibration: dict[str, Any] | None = None,
        path: Path | None = None,
    ) -> None:
        if meta.estimator not in ESTIMATORS:
            raise UsageError(f"unknown estimator '{meta.estimator}'; choose one of: {', '.join(ESTIMATORS)}")
        self.meta = meta
        self.entries: dict[BlockSignature, Entry] = dict(entries or {})
        self.calibration = calibration
        self.path = path

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def new(cls, *, device: str, runtime: str, precision: str, batch: int, space: str, **meta: Any) -> LatencyTable:
        return cls(
            TableMeta(device=device, runtime=runtime, precision=precision, batch=int(batch), space=space, **meta)
        )

    @classmethod
    def locate(
        cls, *, device: str, runtime: str, precision: str, batch: int, space: str, tables: str | Path | None = None
    ) -> Path:
        return table_path(device, runtime, precision, batch, space, tables=tables)

    @classmethod
    def load(
        cls,
        path: str | Path | None = None,
        *,
        device: str | None = None,
        runtime: str | None = None,
        precision: str = "fp32",
        batch: int = 1,
        space: str | None = None,
        tables: str | Path | None = None,
    ) -> LatencyTable:
        """Load a table file (by path, or by its key in the table directory).

        A missing, truncated or malformed file raises :class:`UsageError` naming the file and the fix.
        """
        if path is None:
            if not (device and runtime and space):
                raise UsageError("give a table path, or device, runtime and space to find one")
            path = cls.locate(
                device=device, runtime=runtime, precision=precision, batch=batch, space=space, tables=tables
            )
            if not Path(path).is_file():
                raise UsageError(
                    f"no latency table for device '{device}', runtime '{runtime}', {precision}, "
                    f"batch {batch}, space '{space}' at {path}; measure one with "
                    f"`compress profile --device {device} --runtime {runtime}"
                    f"{'' if precision == 'fp32' else ' --precision ' + precision}`"
                )
        p = Path(path)
        if not p.is_file():
            raise UsageError(f"latency table not found: {p}")
        fix = f"delete it and measure again with `compress profile` ({p})"
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise UsageError(
                f"latency table {p.name} is corrupted or truncated ({err.__class__.__name__}: "
                f"{str(err).splitlines()[0]}); {fix}"
            ) from None
        return cls.from_dict(data, path=p, fix=fix)

    @classmethod
    def from_dict(cls, data: Any, *, path: Path | None = None, fix: str = "") -> LatencyTable:
        name = path.name if path else "latency table"
        suffix = f"; {fix}" if fix else ""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise UsageError(f"{name} is not a latency table (missing format '{FORMAT}'){suffix}")
        if data.get("version") != VERSION:
            raise UsageError(
                f"{name} has table format version {data.get('version')!r}; this compress reads "
                f"version {VERSION}{suffix}"
            )
        try:
            meta_d = dict(data["meta"])
            allowed = {f.name for f in fields(TableMeta)}
            meta = TableMeta(**{k: v for k, v in meta_d.items() if k in allowed})
            entries: dict[BlockSignature, Entry] = {}
            for e in data["entries"]:
                e = dict(e)
                sig = BlockSignature.from_dict(e.pop("signature"))
                e.pop("key", None)
                ent = Entry(**e)
                if ent.source not in SOURCES:
                    raise ValueError(f"entry source '{ent.source}'")
                if not (ent.median_ms >= 0):
                    raise ValueError(f"entry {sig.key()} has median {ent.median_ms}")
                entries[sig] = ent
            calibration = data.get("calibration")
        except (KeyError, TypeError, ValueError, UsageError) as err:
            raise UsageError(
                f"{name} is malformed ({err.__class__.__name__}: {str(err).splitlines()[0] if str(err) else ''})"
                f"{suffix}"
            ) from None
        return cls(meta, entries, calibration, path)

    def to_dict(self) -> dict[str, Any]:
        ents = []
        for sig in sorted(self.entries):
            ents.append({"key": sig.key(), "signature": sig.to_dict(), **asdict(self.entries[sig])})
        return {
            "format": FORMAT,
            "version": VERSION,
            "meta": asdict(self.meta),
            "entries": ents,
            "calibration": self.calibration,
        }

    def save(self, path: str | Path | None = None, *, tables: str | Path | None = None) -> Path:
        """Atomically write the table (default: its own path, else its place in the table directory)."""
        p = (
            Path(path)
            if path
            else self.path
            or self.locate(
                device=self.meta.device,
                runtime=self.meta.runtime,
                precision=self.meta.precision,
                batch=self.meta.batch,
                space=self.meta.space,
                tables=tables,
            )
        )
        self.meta.updated = now_iso()
        atomic_write_json(p, self.to_dict())
        self.path = p
        return p

    # ---- access ----------------------------------------------------------------------------------
    def add(self, sig: BlockSignature, entry: Entry) -> None:
        self.entries[sig] = entry

    def get(self, sig: BlockSignature) -> Entry | None:
        return self.entries.get(sig)

    def lookup(self, sig: BlockSignature) -> float | None:
        """Milliseconds of ``sig`` by the table's estimator, or ``None`` when it is not in the table."""
        e = self.entries.get(sig)
        return None if e is None else e.value(self.meta.estimator)

    def measured(self) -> dict[BlockSignature, Entry]:
        return {s: e for s, e in self.entries.items() if e.source == "measured"}

    def measured_ms(self) -> dict[BlockSignature, float]:
        """Milliseconds of every measured entry, by the table's estimator."""
        return {s: e.value(self.meta.estimator) for s, e in self.measured().items()}

    def missing(self, sigs: list[BlockSignature] | set[BlockSignature]) -> list[BlockSignature]:
        return sorted(s for s in set(sigs) if s not in self.entries or self.entries[s].source != "measured")

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, sig: object) -> bool:
        return sig in self.entries

    def summary(self) -> dict[str, Any]:
        by_source: dict[str, int] = {}
        for e in self.entries.values():
            by_source[e.source] = by_source.get(e.source, 0) + 1
        return {
            "path": str(self.path) if self.path else None,
            "device": self.meta.device,
            "runtime": self.meta.runtime,
            "precision": self.meta.precision,
            "batch": self.meta.batch,
            "space": self.meta.space,
            "entries": len(self.entries),
            "by_source": by_source,
            "calibrated": self.calibration is not None,
            "drift": [d.get("status") for d in self.meta.drift],
        }
