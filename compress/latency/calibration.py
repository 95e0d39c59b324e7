"""Published latencies and roofline calibrations as data: their schemas and files.

The lowest module of the calibration: :mod:`compress.latency.roofline` applies a calibration
(``load_calibration``) and :mod:`compress.latency.published` fits one (using the roofline), so
the files and types live here, below both. ``compress.latency.published`` re-exports these names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from compress.core.config import StrictModel
from compress.core.errors import UsageError

CAL_FORMAT = "compress-roofline-calibration"
ROWS_FORMAT = "compress-published-latencies"
DEFAULT_CALIBRATION = "jetson-orin-gpu"
DEFAULT_ROWS = "jetson_mlperf.yaml"


class PublishedRow(StrictModel):
    """One published latency, with where it came from."""

    id: str = Field(min_length=1)
    device: str
    mode: str | None = None
    clocks: dict[str, float | bool] = Field(default_factory=dict)
    model: str
    batch: int = Field(ge=1)
    resolution: int = Field(ge=8)
    precision: Literal["fp32", "fp16", "int8"]
    engine: Literal["gpu", "dla"] = "gpu"
    statistic: Literal["mean", "median", "p90", "min"]
    ms: float = Field(gt=0)
    p90_ms: float | None = None
    source: str = Field(min_length=3)
    note: str | None = None

    @property
    def group(self) -> str:
        return f"{self.device}@{self.mode}" if self.mode else self.device


class PublishedSet(StrictModel):
    format: Literal["compress-published-latencies"]
    version: int = 1
    rows: list[PublishedRow] = Field(min_length=1)


class RowResult(StrictModel):
    id: str
    group: str
    published_ms: float
    estimate_ms: float
    ratio: float
    loo_estimate_ms: float | None = None
    loo_ratio: float | None = None


class RoofCalibration(StrictModel):
    """Fitted roofline factors for one family of devices (a file in hardware_profiles/calibration/)."""

    format: Literal["compress-roofline-calibration"]
    version: int = 1
    name: str
    applies_to: str
    fitted: str
    command: str
    rows_file: str
    efficiency_scale: float = Field(gt=0)
    efficiency: dict[str, float]
    layer_overhead_cycles: float = Field(ge=0)
    rows: list[str]
    configurations: int
    results: list[RowResult]
    fit_max_error_pct: float
    loo_max_error_pct: float | None = None
    loo_mape_pct: float | None = None
    notes: list[str] = Field(default_factory=list)

    @property
    def label(self) -> str:
        loo = f"{self.loo_max_error_pct:.0f}%" if self.loo_max_error_pct is not None else "n/a"
        return f"calibrated to {len(self.rows)} published figures, leave-one-out error {loo}"


# ---- files ---------------------------------------------------------------------------------------


def _builtin(sub: str) -> Path:
    from compress.hardware.profile import builtin_profiles_dir

    return builtin_profiles_dir() / sub


def rows_path(path: str | Path | None = None) -> Path:
    return Path(path) if path else _builtin("published") / DEFAULT_ROWS


def calibration_path(name: str = DEFAULT_CALIBRATION, *, profiles_dir: str | Path | None = None) -> Path:
    """``<profiles>/calibration/<name>.yaml``: a user profile directory's file wins over the built-in one."""
    from compress.hardware.profile import profile_dirs

    for d in reversed(profile_dirs(profiles_dir)):
        p = d / "calibration" / f"{name}.yaml"
        if p.is_file():
            return p
    return _builtin("calibration") / f"{name}.yaml"


def load_rows(path: str | Path | None = None) -> list[PublishedRow]:
    from compress.core.config import load_model_yaml

    p = rows_path(path)
    if not p.is_file():
        raise UsageError(f"published-latency file not found: {p}")
    rows = load_model_yaml(PublishedSet, p).rows
    ids = [r.id for r in rows]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise UsageError(f"{p}: row ids must be unique, repeated: {', '.join(dup)}")
    return rows


_CAL_CACHE: dict[tuple[str, float], RoofCalibration] = {}


def load_calibration(name: str, *, profiles_dir: str | Path | None = None) -> RoofCalibration:
    from compress.core.config import load_model_yaml

    p = calibration_path(name, profiles_dir=profiles_dir)
    if not p.is_file():
        raise UsageError(
            f"roofline calibration '{name}' not found (looked for {p}); "
            "fit it with `compress latency calibrate-published`"
        )
    key = (str(p), p.stat().st_mtime)
    if key not in _CAL_CACHE:
        _CAL_CACHE[key] = load_model_yaml(RoofCalibration, p)
    return _CAL_CACHE[key]


def write_calibration(cal: RoofCalibration, path: str | Path) -> Path:
    """Atomic write (temp file + rename) of the calibration as YAML."""
    import os
    import tempfile

    import yaml

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    head = (
        "# Fitted roofline factors for the Jetson Orin GPU (TensorRT). Written by "
        f"`{cal.command}`; do not edit by hand.\n# Method: compress/latency/published.py. "
        f"Rows: {cal.rows_file}.\n"
    )
    text = head + yaml.safe_dump(cal.model_dump(mode="json"), sort_keys=False, width=120)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p
