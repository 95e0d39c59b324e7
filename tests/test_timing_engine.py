"""The drift-controlled timing engine: statistics, interleaving, normalisation, re-measuring."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from compress.bench.timing import (
    STATUS_NO_CANARY,
    STATUS_NORMALISED,
    STATUS_STABLE,
    STATUS_UNCONTROLLED,
    DriftMonitor,
    Item,
    TimingConfig,
    TimingError,
    percentile,
    summarize,
    time_callable,
    time_items,
)


def test_summarize_matches_numpy():
    xs = [3.0, 1.0, 4.0, 1.5, 5.0, 9.0, 2.6, 5.3, 5.8, 9.7]
    s = summarize(xs, batch=4)
    a = np.array(xs)
    assert s.n == 10
    assert s.median_ms == pytest.approx(np.median(a))
    assert s.mean_ms == pytest.approx(a.mean())
    assert s.std_ms == pytest.approx(a.std(ddof=1))
    assert s.p90_ms == pytest.approx(np.percentile(a, 90))
    assert s.p99_ms == pytest.approx(np.percentile(a, 99))
    assert s.p10_ms == pytest.approx(np.percentile(a, 10))
    assert (s.min_ms, s.max_ms) == (1.0, 9.7)
    assert s.cv == pytest.approx(a.std(ddof=1) / a.mean())
    assert s.throughput == pytest.approx(4 * 1000 / np.median(a))
    assert percentile([2.0], 99) == 2.0
    with pytest.raises(TimingError):
        summarize([])


def test_sleep_runner_statistics():
    """A known sleep-based fake runner: every sample is at least the sleep, the median close to it."""
    sleep_s = 0.004
    run = time_callable(
        lambda: time.sleep(sleep_s), config=TimingConfig(warmup=1, iterations=20, rounds=2, max_extra_rounds=0)
    )
    it = run.items["model"]
    assert it.stats.n == 20
    assert it.raw_stats.min_ms >= sleep_s * 1000 * 0.98
    # sleep overshoots by scheduler latency; on a busy machine allow generous slack
    assert sleep_s * 1000 <= it.stats.median_ms < sleep_s * 1000 * 3
    assert it.stats.p99_ms >= it.stats.p90_ms >= it.stats.median_ms >= it.stats.min_ms
    assert run.drift.status == STATUS_NO_CANARY and not run.drift.controlled


def test_device_timer_samples_are_used_verbatim():
    vals = iter([2.0, 4.0, 6.0, 8.0] * 10)
    run = time_callable(lambda: next(vals), config=TimingConfig(warmup=0, iterations=4, rounds=1, max_extra_rounds=0))
    assert sorted(run.items["model"].raw_samples_ms) == [2.0, 4.0, 6.0, 8.0]
    assert run.items["model"].stats.median_ms == 5.0


def test_interleaving_alternates_order():
    calls: list[str] = []
    items = [Item(n, (lambda n=n: calls.append(n) or 1.0)) for n in ("A", "B", "C")]
    time_items(items, config=TimingConfig(warmup=0, iterations=3, rounds=3, max_extra_rounds=0))
    # each round times each item once (iterations split over rounds), order reversed every other round
    assert "".join(calls) == "ABC" + "CBA" + "ABC"


class Machine:
    """A deterministic fake machine: every model's latency is multiplied by ``slow`` during a spell."""

    def __init__(self, spell: tuple[int, int] = (0, 0), factor: float = 1.6, toggle_every: int = 0) -> None:
        self.calls = 0
        self.spell = spell
        self.factor = factor
        self.toggle_every = toggle_every

    def slow(self) -> float:
        self.calls += 1
        if self.toggle_every:  # a machine that changes speed every few calls: not controllable
            return self.factor if (self.calls // self.toggle_every) % 2 else 1.0
        return self.factor if self.spell[0] <= self.calls < self.spell[1] else 1.0

    def model(self, ms: float):
        return lambda: ms * self.slow()


def test_slow_spell_is_normalised_and_ratio_holds():
    m = Machine(spell=(40, 10_000))  # slows down after the first round and stays slow
    cfg = TimingConfig(warmup=0, iterations=50, rounds=5, canary_iterations=5, max_remeasure=1, max_extra_rounds=0)
    run = time_items([Item("a", m.model(5.0)), Item("b", m.model(10.0))], canary=m.model(2.0), config=cfg)
    # raw numbers are inflated by the spell, normalised ones are not
    assert run.items["a"].raw_stats.max_ms == pytest.approx(8.0)
    assert run.items["a"].stats.median_ms == pytest.approx(5.0)
    assert run.items["b"].stats.median_ms == pytest.approx(10.0)
    assert run.ratios()["b"] == pytest.approx(2.0)
    d = run.drift
    assert d.status == STATUS_NORMALISED and d.controlled
    assert d.reference_ms == pytest.approx(2.0)
    assert d.max_drift == pytest.approx(0.6)
    assert d.remeasured >= 1 and d.normalised >= 1
    assert len(d.checks) >= cfg.rounds + 1


def test_short_spell_is_remeasured_clean():
    # the spell covers round 2's measurement and the check after it, then ends: re-measuring recovers
    m = Machine(spell=(32, 60))
    cfg = TimingConfig(warmup=0, iterations=40, rounds=4, canary_iterations=4, max_remeasure=2, max_extra_rounds=0)
    run = time_items([Item("a", m.model(5.0)), Item("b", m.model(7.0))], canary=m.model(2.0), config=cfg)
    assert run.drift.remeasured >= 1
    assert run.drift.status == STATUS_STABLE
    assert run.items["a"].raw_stats.max_ms == pytest.approx(5.0)  # spell samples were replaced
    assert run.items["b"].stats.median_ms == pytest.approx(7.0)


def test_uncontrolled_drift_is_flagged():
    m = Machine(factor=1.8, toggle_every=13)  # speed flips once per round + check: never settles
    cfg = TimingConfig(warmup=0, iterations=60, rounds=6, canary_iterations=3, max_remeasure=1, max_extra_rounds=0)
    run = time_items([Item("a", m.model(5.0))], canary=m.model(2.0), config=cfg)
    assert run.drift.status == STATUS_UNCONTROLLED
    assert not run.drift.controlled
    assert run.drift.uncontrolled >= 1
    assert "uncontrolled drift" in run.drift.note


def test_stable_machine_is_clean():
    m = Machine()
    run = time_items(
        [Item("a", m.model(3.0))],
        canary=m.model(2.0),
        config=TimingConfig(warmup=2, iterations=20, rounds=4, max_extra_rounds=0),
    )
    assert run.drift.status == STATUS_STABLE and run.drift.remeasured == 0 and run.drift.max_drift == 0
    assert run.items["a"].stats.median_ms == 3.0 and not run.items["a"].noisy


def test_noisy_items_get_extra_rounds_then_flagged():
    rng = np.random.default_rng(0)
    noisy = lambda: float(rng.choice([1.0, 5.0]))  # noqa: E731 - cv ~ 0.65
    run = time_items([Item("n", noisy)], config=TimingConfig(warmup=0, iterations=10, rounds=2, max_extra_rounds=2))
    assert run.items["n"].stats.n == 20  # 10 + 2 extra rounds of 5
    assert run.items["n"].noisy


def test_streaming_monitor_canary_every():
    m = Machine(spell=(26, 10_000))  # the spell starts at the second canary check
    mon = DriftMonitor(
        m.model(2.0), TimingConfig(warmup=0, iterations=5, canary_every=2, canary_iterations=2, max_remeasure=1)
    )
    for k in range(6):
        mon.measure(f"blk{k}", m.model(1.0 + k))
    run = mon.finish()
    assert [run.items[f"blk{k}"].stats.median_ms for k in range(6)] == pytest.approx([1.0 + k for k in range(6)])
    assert run.drift.status == STATUS_NORMALISED and run.drift.remeasured >= 1
    assert len(run.drift.checks) >= 1 + 3


def test_burst_items_and_canary_burst():
    run = time_items(
        [Item("tool", burst=lambda: [4.0, 4.2])],
        canary_burst=lambda: [2.0, 2.0],
        config=TimingConfig(warmup=0, iterations=10, rounds=3, max_extra_rounds=0),
    )
    assert run.items["tool"].stats.n == 6 and run.drift.status == STATUS_STABLE


@pytest.mark.parametrize(
    "kw",
    [
        dict(iterations=0),
        dict(iterations=None),
        dict(iterations=5, duration_s=1.0),
        dict(drift_threshold=1.5),
        dict(estimator="mode"),
        dict(rounds=0),
    ],
)
def test_bad_config(kw):
    with pytest.raises(TimingError):
        TimingConfig(**kw).check()


def test_duration_mode_and_estimator():
    run = time_callable(
        lambda: 1.0,
        config=TimingConfig(warmup=0, iterations=None, duration_s=0.02, rounds=2, estimator="min", max_extra_rounds=0),
    )
    it = run.items["model"]
    assert it.stats.n >= 2 and it.estimate_ms == it.stats.min_ms == 1.0
    assert not math.isnan(run.wall_s)


def test_duplicate_names_refused():
    with pytest.raises(TimingError):
        time_items([Item("a", lambda: 1.0), Item("a", lambda: 1.0)])
