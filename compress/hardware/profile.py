"""Device profiles: schema, loading from ``hardware_profiles/`` and user directories, aliases.

A profile is a YAML file validated by :class:`HardwareProfile` (unknown keys are errors).
Datasheet figures carry a ``source``; figures that could not be confirmed are marked
``unconfirmed: true`` and shown as such.

>>> get_profile("jetson").name
'jetson-orin-nano'
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from compress.core.config import StrictModel, load_model_yaml
from compress.core.errors import UsageError, unknown
from compress.export.runtimes import runner_names
from compress.hardware.figure import Figure as Figure  # the lowest schema type (modes.py builds them too)

Precision = Literal["fp32", "fp16", "bf16", "int8"]


class Spec(StrictModel):
    """Datasheet figures used by the roofline estimate.

    ``peak`` maps a precision to dense peak throughput (TFLOPS, or TOPS for int8);
    ``efficiency`` optionally overrides the per-op-kind share of peak reached in practice.
    """

    peak: dict[Precision, Figure]
    memory_bandwidth: Figure
    cores: Figure | None = None
    clock_ghz: Figure | None = None
    memory_gb: Figure | None = None
    layer_overhead_us: Figure | None = None
    efficiency: dict[str, float] = Field(default_factory=dict)
    detected: bool = False

    @field_validator("efficiency")
    @classmethod
    def _eff_range(cls, v: dict[str, float]) -> dict[str, float]:
        for k, x in v.items():
            if not 0 < x <= 1:
                raise ValueError(f"efficiency '{k}' must be in (0, 1], got {x}")
        return v


class PowerMode(StrictModel):
    """One power mode of a device (a Jetson ``nvpmodel`` mode, or a published clock setting).

    Only the figures that change with the mode are listed; each carries its source. ``peak``
    is the GPU's dense peak per precision at this mode; a figure that no stored source confirms
    is ``unconfirmed: true``. ``nvpmodel_name`` is what ``nvpmodel -q`` prints for the mode
    (matched against a board's state); ``custom`` marks a setting that is not a stock nvpmodel
    mode (e.g. MLPerf's MaxQ clock caps), which a board can only reach with a custom mode.
    """

    name: str = Field(min_length=1)
    aliases: list[str] = Field(default_factory=list)
    nvpmodel_id: int | None = None
    nvpmodel_name: str | None = None
    custom: bool = False
    description: str = ""
    gpu_clock_mhz: Figure | None = None
    gpu_tpcs: Figure | None = None
    peak: dict[Precision, Figure] = Field(default_factory=dict)
    emc_clock_mhz: Figure | None = None
    memory_bandwidth: Figure | None = None
    cpu_cores_online: Figure | None = None
    cpu_clock_mhz: Figure | None = None
    dla_clock_mhz: Figure | None = None
    dla_peak: dict[Precision, Figure] = Field(default_factory=dict)  # per DLA core, dense


class DlaSpec(StrictModel):
    """Deep Learning Accelerator cores: their own engine (never counted in the GPU's peak)."""

    cores: int = Field(ge=1)
    precisions: list[Precision] = Field(min_length=1)
    peak: dict[Precision, Figure]  # per core, dense, at the default mode (modes override)
    layer_overhead_us: Figure | None = None
    note: str | None = None


class HardwareProfile(StrictModel):
    """One target device.

    ``power_modes`` lists the device's modes (plain names are accepted for profiles that know no
    figures per mode); ``default_power_mode`` is the one used when none is asked for, and
    ``power_mode`` is filled in when a profile is resolved at a mode (``get_profile``).
    ``calibration`` names a fitted roofline calibration in ``hardware_profiles/calibration/``.
    """

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    aliases: list[str] = Field(default_factory=list)
    kind: Literal["gpu", "cpu", "edge"]
    vendor: str
    description: str = ""
    runtimes: list[str] = Field(min_length=1)  # registered runtime names (compress.export.runtimes)
    precisions: list[Precision] = Field(min_length=1)
    power_modes: list[PowerMode] = Field(default_factory=list)
    default_power_mode: str | None = None
    power_mode: str | None = None
    spec: Spec | None = None
    dla: DlaSpec | None = None
    calibration: str | None = None
    latency_tables: list[str] = Field(default_factory=list)
    detect: bool = False

    @field_validator("runtimes")
    @classmethod
    def _runtime_names(cls, v: list[str]) -> list[str]:
        names = runner_names()
        for rt in v:
            if rt not in names:
                raise ValueError(f"unknown runtime '{rt}'; choose one of: {', '.join(names)}")
        return v

    @field_validator("power_modes", mode="before")
    @classmethod
    def _mode_names(cls, v: Any) -> Any:
        # a plain name (the older profile format) is a mode without figures of its own
        return [{"name": m} if isinstance(m, str) else m for m in (v or [])]

    @property
    def mode_names(self) -> list[str]:
        return [m.name for m in self.power_modes]

    @property
    def table_device(self) -> str:
        """The key latency tables are stored under: ``name`` or ``name@mode`` (tables are per mode)."""
        return f"{self.name}@{self.power_mode}" if self.power_mode else self.name

    @property
    def default_runtime(self) -> str:
        return self.runtimes[0]

    def check_runtime(self, runtime: str | None) -> str:
        """Return ``runtime`` (or the default one) after checking the device supports it."""
        if runtime is None or runtime == "auto":
            return self.default_runtime
        if runtime not in runner_names():
            raise unknown("runtime", runtime, runner_names())
        if runtime not in self.runtimes:
            raise UsageError(
                f"device '{self.name}' does not run '{runtime}'; its runtimes are: {', '.join(self.runtimes)}"
            )
        return runtime

    def check_precision(self, precision: str | None) -> str:
        if precision is None:
            return self.precisions[0]
        if precision not in self.precisions:
            raise UsageError(
                f"device '{self.name}' has no precision '{precision}'; choose one of: {', '.join(self.precisions)}"
            )
        return precision


def detect_local_spec(base: Spec | None) -> Spec:
    """Fill the ``local-cpu`` spec from this machine; values from the YAML are kept as defaults.

    The probes live in :mod:`compress.hardware.local`, below this module (it knows nothing of the
    profile schema); the schema's types are built here."""
    from compress.hardware.local import detected

    d = detected()
    src = f"detected at run time: {d['model']}, {d['cores']} usable cores, {float(d['ghz']):.2f} GHz, {d['fpc']} FP32 FLOP/cycle/core (estimate)"
    fp32 = float(d["cores"]) * float(d["ghz"]) * float(d["fpc"]) / 1000.0
    peak: dict[Precision, Figure] = {"fp32": Figure(value=fp32, unit="TFLOPS", source=src, unconfirmed=True)}
    if d["bf16"]:
        peak["bf16"] = Figure(value=2 * fp32, unit="TFLOPS", source=src + "; AVX512_BF16", unconfirmed=True)
    bw = base.memory_bandwidth if base else Figure(value=20.0, unit="GB/s", source="assumed", unconfirmed=True)
    return Spec(
        peak=peak,
        memory_bandwidth=bw,
        cores=Figure(value=float(d["cores"]), unit="cores", source=src),
        clock_ghz=Figure(value=float(d["ghz"]), unit="GHz", source=src, unconfirmed=True),
        layer_overhead_us=base.layer_overhead_us if base else None,
        efficiency=dict(base.efficiency) if base else {},
        detected=True,
    )


def builtin_profiles_dir() -> Path:
    """The shipped profiles: package data ``compress.hardware_profiles`` (the repository's
    top-level ``hardware_profiles/``, mapped in pyproject.toml), found via importlib.resources."""
    from compress.core.resources import package_path

    d = package_path("compress.hardware_profiles")
    if not d.is_dir():
        raise UsageError(
            "the built-in hardware_profiles directory is missing from this installation; reinstall compress"
        )
    return d


def profile_dirs(extra: str | Path | None = None) -> list[Path]:
    dirs = [builtin_profiles_dir()]
    env = os.environ.get("COMPRESS_PROFILES")
    for d in ([*env.split(os.pathsep)] if env else []) + ([str(extra)] if extra else []):
        p = Path(d).expanduser()
        if not p.is_dir():
            raise UsageError(f"profile directory not found: {p} (from --profiles or COMPRESS_PROFILES)")
        dirs.append(p)
    return dirs


@lru_cache(maxsize=16)
def _load_dir(path: str, mtime_key: float) -> tuple[HardwareProfile, ...]:
    # cached per directory state; load_profiles hands out copies, never these shared objects
    profiles = []
    for f in sorted(Path(path).glob("*.yaml")) + sorted(Path(path).glob("*.yml")):
        profiles.append(load_model_yaml(HardwareProfile, f))
    return tuple(profiles)


def load_profiles(extra_dir: str | Path | None = None) -> dict[str, HardwareProfile]:
    """Load every profile; user directories override built-ins of the same name."""
    out: dict[str, HardwareProfile] = {}
    for d in profile_dirs(extra_dir):
        mtime = max((f.stat().st_mtime for f in d.iterdir()), default=0.0)
        for prof in _load_dir(str(d), mtime):
            out[prof.name] = prof.model_copy(deep=True)
    seen: dict[str, str] = {}
    for prof in out.values():
        for key in (prof.name, *prof.aliases):
            if key in seen and seen[key] != prof.name:
                raise UsageError(f"device name or alias '{key}' is used by both '{seen[key]}' and '{prof.name}'")
            seen[key] = prof.name
    return out


def get_profile(name: str, *, profiles_dir: str | Path | None = None, power_mode: str | None = None) -> HardwareProfile:
    """Resolve a device name or alias (``jetson`` -> ``jetson-orin-nano``), at a power mode.

    ``name@MODE`` (as in pipeline YAML) and ``power_mode=`` choose the mode; a device with modes
    is otherwise resolved at its ``default_power_mode`` (see compress/hardware/modes.py).
    """
    from compress.hardware.modes import apply_power_mode, split_device

    name, at_mode = split_device(name, power_mode)
    profiles = load_profiles(profiles_dir)
    key = name.strip().lower()
    if key in profiles:
        prof = profiles[key]
    else:
        by_alias = {a: p for p in profiles.values() for a in p.aliases}
        if key not in by_alias:
            raise unknown("device", name, [*profiles, *by_alias])
        prof = by_alias[key]
    if prof.detect:
        from compress.hardware.local import detect_precisions

        prof = prof.model_copy(
            update={"spec": detect_local_spec(prof.spec), "precisions": detect_precisions(prof.precisions)}
        )
    return apply_power_mode(prof, at_mode)


class DeviceInfo(StrictModel):
    name: str
    aliases: list[str]
    kind: str
    vendor: str
    runtimes: list[str]
    default_runtime: str
    precisions: list[str]
    latency_source: Literal["measured", "estimated"]
    measured_runtimes: list[str]
    description: str = ""
    power_modes: list[str] = Field(default_factory=list)
    default_power_mode: str | None = None


def devices(*, profiles_dir: str | Path | None = None, tables_dir: str | Path | None = None) -> list[DeviceInfo]:
    """List every known device and whether a measured latency table exists for it."""
    from compress.latency.store import measured_runtimes

    out = []
    for prof in load_profiles(profiles_dir).values():
        if prof.detect:  # what this machine has (bf16 only with AVX512-BF16/AMX)
            from compress.hardware.local import detect_precisions

            prof = prof.model_copy(update={"precisions": detect_precisions(prof.precisions)})
        key = f"{prof.name}@{_default_mode(prof)}" if prof.power_modes else prof.name  # tables are per power mode
        measured = measured_runtimes(key, tables_dir=tables_dir, profile_tables=prof.latency_tables)
        out.append(
            DeviceInfo(
                name=prof.name,
                aliases=prof.aliases,
                kind=prof.kind,
                vendor=prof.vendor,
                runtimes=list(prof.runtimes),
                default_runtime=prof.default_runtime,
                precisions=list(prof.precisions),
                latency_source="measured" if measured else "estimated",
                measured_runtimes=measured,
                description=prof.description,
                power_modes=prof.mode_names,
                default_power_mode=_default_mode(prof),
            )
        )
    return out


def _default_mode(prof: HardwareProfile) -> str | None:
    from compress.hardware.modes import default_mode_name

    return default_mode_name(prof)


def check_measured_mode(
    prof_name: str, asked: str | None, state: dict[str, Any] | None, *, where: str = "the board"
) -> None:
    """Before a table is written: refuse when the board (its device state) is not in the mode asked for."""
    if not asked:
        return
    from compress.hardware.modes import mode_mismatch

    prof = get_profile(prof_name, power_mode=asked)
    msg = mode_mismatch(prof, state)
    if msg:
        raise UsageError(f"{where}: {msg}; nothing was written to the {asked} table")
