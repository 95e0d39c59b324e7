"""The versioned result of ``compress bench`` (JSON schema ``SCHEMA_VERSION``).

Top-level latency keys (``runtime``, ``median_ms``, ``p90_ms``, ``p99_ms``, ``throughput``,
``iterations``, ``predicted_ms``, ``error_pct``) describe the FIRST artefact; ``items`` holds every
artefact and ``ratios`` their medians relative to the first (interleaved, so the ratio holds when
the machine drifts). Latencies are normalised by the canary's drift (``drift``); the raw median
is kept in ``items[*].raw_median_ms``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from compress.core.config import StrictModel

SCHEMA_VERSION = 1


class BenchItem(StrictModel):
    name: str
    artifact: str
    file: str | None = None  # the file timed (after resolving run dirs / timm export)
    runtime: str
    runner: str  # compress.export.runtimes | benchmark_app | trtexec
    runtime_version: str | None = None
    precision: str
    batch: int
    threads: int | None = None
    settings: dict[str, Any] = Field(default_factory=dict)
    median_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    max_ms: float
    p10_ms: float
    p90_ms: float
    p99_ms: float
    cv: float
    throughput: float  # samples per second at the median (batch * 1000 / median)
    iterations: int  # timed runs (after re-measurements and extra rounds)
    raw_median_ms: float  # before drift normalisation
    noisy: bool  # coefficient of variation above the threshold
    peak_memory_mb: float | None = None  # process peak RSS after loading this artefact
    ratio: float = 1.0  # median / first item's median
    predicted_ms: float | None = None
    error_pct: float | None = None  # (measured - predicted) / predicted * 100
    notes: list[str] = Field(default_factory=list)


class BenchResult(StrictModel):
    schema_version: Literal[1] = SCHEMA_VERSION
    tool: str = "compress bench"
    created: str
    device: str
    remote: str | None = None
    runtime: str
    precision: str
    batch: int
    threads: int | None = None
    median_ms: float
    p90_ms: float
    p99_ms: float
    throughput: float
    iterations: int
    predicted_ms: float | None = None
    error_pct: float | None = None
    items: list[BenchItem]
    ratios: dict[str, float]
    drift: dict[str, Any]  # compress.bench.timing.DriftRecord
    drift_controlled: bool
    noisy: bool
    canary: dict[str, Any]
    timing: dict[str, Any]  # the TimingConfig used
    device_state: dict[str, Any]  # before the run
    device_state_after: dict[str, Any]  # after the run (temperatures, clocks)
    peak_memory_mb: float | None = None
    warnings: list[str] = Field(default_factory=list)
