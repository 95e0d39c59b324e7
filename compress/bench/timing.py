"""The one drift-controlled timing engine, used by latency profiling, validation and ``bench``.

Machines drift: thermal throttling, DVFS, noisy neighbours make everything run 1.4-1.9x slower
for minutes (see ENVIRONMENT.md "Timing on these machines"). The engine therefore re-times a
fixed reference model (the *canary*) throughout a campaign and

* brackets every stretch of measurements between two canary checks;
* **re-measures** the stretch when the canary moved by more than ``drift_threshold`` (10%);
* **normalises** every sample by the canary's drift (samples are scaled to the fastest canary
  state seen in the run, ``reference_ms``), so numbers taken in a slow spell stay comparable;
* records the drift it saw and flags the campaign ``uncontrolled`` when the canary moved *during*
  a stretch even after re-measuring, instead of presenting the numbers as clean.

Several items are interleaved (A B A B ...) in rounds, so their ratios hold when the machine drifts.

This module needs only the standard library (it is shipped to remote devices with
``compress.bench.agent``); keep it free of numpy, torch and the rest of ``compress``.

A timed callable runs ONE inference. It may return its own duration in milliseconds (a device
timer, e.g. CUDA events) - then that value is the sample - or ``None`` and the engine times the
call with ``time.perf_counter``.

>>> import time
>>> run = time_items([Item("sleep", lambda: time.sleep(0.001))],
...                  config=TimingConfig(warmup=1, iterations=10, rounds=2, max_extra_rounds=0))
>>> run.items["sleep"].stats.n
10
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

TimedFn = Callable[[], "float | None"]
Progress = Callable[[str, int, int], None]

STATUS_NO_CANARY = "no_canary"  # drift was not controlled: no reference model was timed
STATUS_STABLE = "stable"  # the canary stayed within the threshold throughout
STATUS_NORMALISED = "normalised"  # the canary moved; samples were normalised by its drift
STATUS_UNCONTROLLED = "uncontrolled"  # the canary moved within a stretch even after re-measuring


class TimingError(ValueError):
    """Bad timing settings (raised before anything is timed)."""


# ---- statistics (pure) --------------------------------------------------------------------


def percentile(sorted_xs: Sequence[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default) of an already sorted sequence."""
    if not sorted_xs:
        return math.nan
    pos = (len(sorted_xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_xs) - 1)
    return sorted_xs[lo] + (sorted_xs[hi] - sorted_xs[lo]) * (pos - lo)


@dataclass(frozen=True)
class Stats:
    """Summary of latency samples in milliseconds; ``throughput`` is samples/s at the median."""

    n: int
    median_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    max_ms: float
    p10_ms: float
    p90_ms: float
    p99_ms: float
    cv: float
    throughput: float

    def estimate(self, estimator: str = "median") -> float:
        return {"median": self.median_ms, "min": self.min_ms, "p10": self.p10_ms, "mean": self.mean_ms}[estimator]


def summarize(samples_ms: Sequence[float], *, batch: int = 1) -> Stats:
    """Robust statistics of ``samples_ms``; ``throughput = batch * 1000 / median`` (items/s).

    >>> summarize([1.0, 2.0, 3.0]).median_ms
    2.0
    """
    xs = sorted(float(x) for x in samples_ms)
    if not xs:
        raise TimingError("no samples to summarise")
    n = len(xs)
    mean = sum(xs) / n
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1)) if n > 1 else 0.0
    med = percentile(xs, 50)
    return Stats(
        n=n,
        median_ms=med,
        mean_ms=mean,
        std_ms=std,
        min_ms=xs[0],
        max_ms=xs[-1],
        p10_ms=percentile(xs, 10),
        p90_ms=percentile(xs, 90),
        p99_ms=percentile(xs, 99),
        cv=std / mean if mean > 0 else math.inf,
        throughput=batch * 1000.0 / med if med > 0 else math.inf,
    )


# ---- settings and results -----------------------------------------------------------------


@dataclass
class TimingConfig:
    """How to time. ``iterations`` (or ``duration_s``) is the total timed runs per item."""

    warmup: int = 10  # untimed runs per item (and canary) before timing
    iterations: int | None = 100  # timed runs per item, split across ``rounds``
    duration_s: float | None = None  # instead of iterations: timed seconds per item
    rounds: int = 5  # interleaved rounds (A B A B ...); canary checked between
    canary_iterations: int = 10  # runs per canary check (its median is the check's value)
    canary_every: int = 0  # streaming use: items between canary checks (0: per round)
    drift_threshold: float = 0.10  # share the canary may move before re-measuring
    max_remeasure: int = 2  # re-measurements of one drifted stretch
    cv_threshold: float = 0.15  # coefficient of variation above which a result is noisy
    max_extra_rounds: int = 2  # extra rounds run for noisy items
    estimator: str = "median"  # "median", "min", "p10" or "mean": the headline estimate

    def check(self) -> TimingConfig:
        if self.iterations is None and self.duration_s is None:
            raise TimingError("give iterations or duration_s")
        if self.iterations is not None and self.duration_s is not None:
            raise TimingError("give iterations or duration_s, not both")
        if self.iterations is not None and self.iterations < 1:
            raise TimingError(f"iterations must be >= 1, got {self.iterations}")
        if self.duration_s is not None and not self.duration_s > 0:
            raise TimingError(f"duration_s must be > 0, got {self.duration_s}")
        if self.warmup < 0 or self.rounds < 1 or self.canary_iterations < 1 or self.max_remeasure < 0:
            raise TimingError("warmup >= 0, rounds >= 1, canary_iterations >= 1 and max_remeasure >= 0 are required")
        if not 0 < self.drift_threshold < 1:
            raise TimingError(f"drift_threshold must be in (0, 1), got {self.drift_threshold}")
        if self.estimator not in ("median", "min", "p10", "mean"):
            raise TimingError(f"unknown estimator '{self.estimator}'; choose median, min, p10 or mean")
        return self


@dataclass(frozen=True)
class Item:
    """One thing to time: ``fn`` runs one inference of ``batch`` samples.

    Alternatively ``burst`` returns many samples (ms) per call, e.g. one run of a vendor tool
    (``benchmark_app``, ``trtexec``); then the chunk size is the tool's business.
    """

    name: str
    fn: TimedFn | None = None
    batch: int = 1
    burst: Callable[[], list[float]] | None = None


@dataclass
class CanaryCheck:
    t_s: float  # seconds since the campaign started
    ms: float  # median of the check's canary runs
    spread: float  # (p90 - p10) / median of those runs


@dataclass
class Stretch:
    """Measurements between two canary checks, with the drift that applied to them."""

    before_ms: float
    after_ms: float
    items: list[str]
    attempts: int  # 1 + re-measurements
    status: str  # stable / normalised / uncontrolled

    @property
    def mid_ms(self) -> float:
        return (self.before_ms + self.after_ms) / 2


@dataclass
class DriftRecord:
    """What the canary did during a campaign; stored in every result."""

    status: str
    controlled: bool
    threshold: float
    reference_ms: float | None = None  # fastest canary check: samples are normalised to it
    max_drift: float = 0.0  # largest |canary / reference - 1|
    remeasured: int = 0  # stretches measured again because the canary moved
    normalised: int = 0  # stretches whose samples were scaled by the drift
    uncontrolled: int = 0  # stretches where the canary moved during the stretch
    checks: list[CanaryCheck] = field(default_factory=list)
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ItemTiming:
    name: str
    batch: int
    samples_ms: list[float]  # normalised by the canary's drift
    raw_samples_ms: list[float]  # as measured
    stats: Stats  # of samples_ms
    raw_stats: Stats  # of raw_samples_ms
    noisy: bool  # coefficient of variation above cv_threshold after extra rounds
    estimate_ms: float  # stats.<config.estimator>

    def to_dict(self, *, samples: bool = False) -> dict[str, Any]:
        d = {
            "name": self.name,
            "batch": self.batch,
            "stats": asdict(self.stats),
            "raw_stats": asdict(self.raw_stats),
            "noisy": self.noisy,
            "estimate_ms": self.estimate_ms,
        }
        if samples:
            d |= {"samples_ms": self.samples_ms, "raw_samples_ms": self.raw_samples_ms}
        return d


@dataclass
class TimingRun:
    items: dict[str, ItemTiming]
    drift: DriftRecord
    config: TimingConfig
    wall_s: float

    def ratios(self, baseline: str | None = None) -> dict[str, float]:
        """Each item's estimate divided by ``baseline``'s (default: the first item)."""
        names = list(self.items)
        base = self.items[baseline or names[0]].estimate_ms
        return {n: self.items[n].estimate_ms / base for n in names}


# ---- the engine ---------------------------------------------------------------------------


def _time_once(fn: TimedFn, clock: Callable[[], float]) -> float:
    t0 = clock()
    r = fn()
    t1 = clock()
    return float(r) if r is not None else (t1 - t0) * 1000.0


class DriftMonitor:
    """Streaming drift control: measure items one after another, canary between stretches.

    >>> mon = DriftMonitor(canary=lambda: 2.0, config=TimingConfig(warmup=0, iterations=5))
    >>> k = mon.measure("a", lambda: 5.0)
    >>> res = mon.finish()
    >>> res.items["a"].stats.median_ms, res.drift.status
    (5.0, 'stable')

    ``measure`` records raw samples; normalised results are final after :meth:`finish` (a stretch
    is settled at the next canary check, which may re-measure it). The latency-table builder uses
    this with ``canary_every`` items per stretch; :func:`time_items` uses it with one round per
    stretch.
    """

    def __init__(
        self,
        canary: TimedFn | None,
        config: TimingConfig | None = None,
        *,
        clock: Callable[[], float] = time.perf_counter,
        canary_burst: Callable[[], list[float]] | None = None,
    ) -> None:
        self.cfg = (config or TimingConfig()).check()
        self.canary = canary
        self.canary_burst = canary_burst
        self.clock = clock
        self._t0 = clock()
        self._checks: list[CanaryCheck] = []
        self._stretches: list[tuple[Stretch, list[tuple[str, int]]]] = []
        self._pending: list[tuple[str, Callable[[], list[float]], int]] = []
        self._raw: dict[str, list[list[float]]] = {}  # name -> one list per measure() call
        self._factor_idx: dict[str, list[int]] = {}  # name -> stretch index per measure() call
        self._batch: dict[str, int] = {}
        self._warm: set[str] = set()
        self._started = False

    # -- canary ---------------------------------------------------------------------------
    @property
    def has_canary(self) -> bool:
        return self.canary is not None or self.canary_burst is not None

    def _check(self) -> CanaryCheck | None:
        if not self.has_canary:
            return None
        if self.canary_burst is not None:
            xs = sorted(self.canary_burst())
        else:
            xs = sorted(_time_once(self.canary, self.clock) for _ in range(self.cfg.canary_iterations))  # type: ignore[arg-type]
        med = percentile(xs, 50)
        chk = CanaryCheck(
            t_s=self.clock() - self._t0,
            ms=med,
            spread=(percentile(xs, 90) - percentile(xs, 10)) / med if med > 0 else 0.0,
        )
        self._checks.append(chk)
        return chk

    def start(self) -> None:
        """Warm the canary up and take the first check (called by the first ``measure``)."""
        if self._started:
            return
        self._started = True
        if self.canary is not None:
            for _ in range(max(self.cfg.warmup, 1)):
                self.canary()
        if self.has_canary:
            self._check()

    @property
    def pending(self) -> int:
        """Measurements not yet settled by a canary check (their callables are still needed)."""
        return len(self._pending)

    @property
    def reference_ms(self) -> float | None:
        return min(c.ms for c in self._checks) if self._checks else None

    # -- measuring --------------------------------------------------------------------------
    def _run(self, name: str, fn: TimedFn, iterations: int | None, duration_s: float | None) -> list[float]:
        if name not in self._warm:
            for _ in range(self.cfg.warmup):
                fn()
            self._warm.add(name)
        out: list[float] = []
        if duration_s is not None:
            end = self.clock() + duration_s
            while not out or self.clock() < end:
                out.append(_time_once(fn, self.clock))
        else:
            for _ in range(iterations or 1):
                out.append(_time_once(fn, self.clock))
        return out

    def measure(
        self, name: str, fn: TimedFn, *, iterations: int | None = None, duration_s: float | None = None, batch: int = 1
    ) -> int:
        """Time ``fn`` (``iterations`` runs or ``duration_s`` seconds; config defaults otherwise).

        Returns the index of this measurement among ``name``'s measurements.
        """
        if iterations is None and duration_s is None:
            iterations, duration_s = self.cfg.iterations, self.cfg.duration_s
        return self.measure_burst(name, lambda: self._run(name, fn, iterations, duration_s), batch=batch)

    def measure_burst(self, name: str, burst: Callable[[], list[float]], *, batch: int = 1) -> int:
        """Record the samples (ms) that ``burst()`` returns, e.g. one run of a vendor tool.

        ``burst`` is called again if the stretch has to be re-measured.
        """
        self.start()
        samples = [float(x) for x in burst()]
        if not samples:
            raise TimingError(f"{name}: the measurement returned no samples")
        self._raw.setdefault(name, []).append(samples)
        self._factor_idx.setdefault(name, []).append(-1)
        self._batch[name] = batch
        idx = len(self._raw[name]) - 1
        self._pending.append((name, burst, idx))
        every = self.cfg.canary_every
        if every > 0 and len(self._pending) >= every:
            self.settle()
        return idx

    def settle(self) -> Stretch | None:
        """Check the canary and settle the pending stretch (re-measuring it if the canary moved)."""
        if not self._pending:
            return None
        pending, self._pending = self._pending, []
        if not self.has_canary:
            st = Stretch(
                before_ms=math.nan,
                after_ms=math.nan,
                items=[p[0] for p in pending],
                attempts=1,
                status=STATUS_NO_CANARY,
            )
            self._add_stretch(st, pending)
            return st
        thr = self.cfg.drift_threshold
        before = self._checks[-1].ms
        attempts = 1
        while True:
            after = self._check().ms  # type: ignore[union-attr]
            ref = self.reference_ms or after
            stable = abs(after / before - 1) <= thr
            at_ref = max(abs(before / ref - 1), abs(after / ref - 1)) <= thr
            if (stable and at_ref) or attempts > self.cfg.max_remeasure:
                break
            # the canary moved: measure the stretch again, bracketed by the last check
            attempts += 1
            before = after
            for name, burst, idx in pending:
                self._raw[name][idx] = [float(x) for x in burst()]
        status = STATUS_STABLE if stable and at_ref else STATUS_NORMALISED if stable else STATUS_UNCONTROLLED
        st = Stretch(before_ms=before, after_ms=after, items=[p[0] for p in pending], attempts=attempts, status=status)
        self._add_stretch(st, pending)
        return st

    def _add_stretch(self, st: Stretch, pending: list[tuple[str, Callable[[], list[float]], int]]) -> None:
        self._stretches.append((st, [(p[0], p[2]) for p in pending]))
        k = len(self._stretches) - 1
        for name, _burst, idx in pending:
            self._factor_idx[name][idx] = k

    # -- results -----------------------------------------------------------------------------
    def drift(self) -> DriftRecord:
        thr = self.cfg.drift_threshold
        stretches = [s for s, _ in self._stretches]
        if not self.has_canary:
            return DriftRecord(
                status=STATUS_NO_CANARY,
                controlled=False,
                threshold=thr,
                note="no reference model was timed: drift was not controlled",
            )
        ref = self.reference_ms
        max_drift = max((abs(c.ms / ref - 1) for c in self._checks), default=0.0) if ref else 0.0
        n_unc = sum(s.status == STATUS_UNCONTROLLED for s in stretches)
        n_norm = sum(s.status == STATUS_NORMALISED for s in stretches)
        status = STATUS_UNCONTROLLED if n_unc else STATUS_NORMALISED if n_norm else STATUS_STABLE
        note = {
            STATUS_STABLE: f"the reference model stayed within {thr:.0%} throughout",
            STATUS_NORMALISED: f"the reference model moved up to {max_drift:.0%}; samples were normalised by its drift",
            STATUS_UNCONTROLLED: (
                f"uncontrolled drift: the reference model moved by more than {thr:.0%} within "
                f"{n_unc} of {len(stretches)} stretches even after re-measuring; "
                "treat these numbers as unreliable and measure again on a quiet machine"
            ),
        }[status]
        return DriftRecord(
            status=status,
            controlled=status != STATUS_UNCONTROLLED,
            threshold=thr,
            reference_ms=ref,
            max_drift=max_drift,
            remeasured=sum(s.attempts - 1 for s in stretches),
            normalised=n_norm,
            uncontrolled=n_unc,
            checks=list(self._checks),
            note=note,
        )

    def item(self, name: str) -> ItemTiming:
        if self._pending:
            self.settle()
        ref = self.reference_ms
        raw: list[float] = []
        norm: list[float] = []
        for samples, k in zip(self._raw[name], self._factor_idx[name]):
            st = self._stretches[k][0]
            scale = ref / st.mid_ms if (ref and st.status != STATUS_NO_CANARY and st.mid_ms > 0) else 1.0
            raw += samples
            norm += [x * scale for x in samples]
        b = self._batch[name]
        stats = summarize(norm, batch=b)
        return ItemTiming(
            name=name,
            batch=b,
            samples_ms=norm,
            raw_samples_ms=raw,
            stats=stats,
            raw_stats=summarize(raw, batch=b),
            noisy=stats.cv > self.cfg.cv_threshold,
            estimate_ms=stats.estimate(self.cfg.estimator),
        )

    def finish(self) -> TimingRun:
        self.settle()
        return TimingRun(
            items={n: self.item(n) for n in self._raw},
            drift=self.drift(),
            config=self.cfg,
            wall_s=self.clock() - self._t0,
        )


def _split(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts) if base + (1 if i < extra else 0) > 0]


def time_items(
    items: Sequence[Item],
    *,
    canary: TimedFn | None = None,
    config: TimingConfig | None = None,
    progress: Progress | None = None,
    clock: Callable[[], float] = time.perf_counter,
    canary_burst: Callable[[], list[float]] | None = None,
) -> TimingRun:
    """Time ``items`` interleaved in rounds (A B, then B A, ...), the canary checked between rounds.

    Each round is one stretch: re-measured when the canary moved, normalised by its drift.
    Items whose coefficient of variation stays above ``cv_threshold`` get up to
    ``max_extra_rounds`` more rounds and are then flagged ``noisy``.
    """
    cfg = (config or TimingConfig()).check()
    if not items:
        raise TimingError("nothing to time")
    names = [it.name for it in items]
    if len(set(names)) != len(names):
        raise TimingError(f"item names must be unique: {names}")
    for it in items:
        if (it.fn is None) == (it.burst is None):
            raise TimingError(f"item '{it.name}': give exactly one of fn and burst")
    mon = DriftMonitor(
        canary, TimingConfig(**{**asdict(cfg), "canary_every": 0}), clock=clock, canary_burst=canary_burst
    )
    rounds = cfg.rounds
    if cfg.iterations is not None:
        chunks: list[tuple[int | None, float | None]] = [(n, None) for n in _split(cfg.iterations, rounds)]
    else:
        chunks = [(None, cfg.duration_s / rounds)] * rounds  # type: ignore[operator]
    per_round = chunks[0]
    total = len(chunks) * len(items)
    done = 0

    def one_round(r: int, subset: Sequence[Item], chunk: tuple[int | None, float | None]) -> None:
        nonlocal done
        order = list(subset) if r % 2 == 0 else list(reversed(subset))
        for it in order:
            if it.burst is not None:
                mon.measure_burst(it.name, it.burst, batch=it.batch)
            else:
                mon.measure(it.name, it.fn, iterations=chunk[0], duration_s=chunk[1], batch=it.batch)  # type: ignore[arg-type]
            done += 1
            if progress:
                progress(it.name, done, total)
        mon.settle()

    for r, chunk in enumerate(chunks):
        one_round(r, items, chunk)
    for extra in range(cfg.max_extra_rounds):
        noisy = [it for it in items if mon.item(it.name).stats.cv > cfg.cv_threshold]
        if not noisy:
            break
        total += len(noisy)
        one_round(len(chunks) + extra, noisy, per_round)
    return mon.finish()


def time_callable(
    fn: TimedFn,
    *,
    name: str = "model",
    canary: TimedFn | None = None,
    config: TimingConfig | None = None,
    batch: int = 1,
) -> TimingRun:
    """Time one callable with drift control (``time_items`` with a single item)."""
    return time_items([Item(name, fn, batch)], canary=canary, config=config)


def run_to_dict(run: TimingRun, *, samples: bool = False) -> dict[str, Any]:
    """JSON-ready view of a :class:`TimingRun` (used by the remote agent)."""
    return {
        "items": {n: it.to_dict(samples=samples) for n, it in run.items.items()},
        "drift": run.drift.to_dict(),
        "config": asdict(run.config),
        "wall_s": run.wall_s,
    }
