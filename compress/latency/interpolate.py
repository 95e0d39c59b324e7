"""Fill entries a table lacks from measured neighbours (flagged ``interpolated``).

A neighbour agrees with the missing signature on every categorical field (kind, kernel, stride,
SE, activation, residual, ...) and differs only in sizes (feature map, channels, mid channels).

1. **Bracketing** - two measured neighbours that differ from the target in exactly one numeric
   field, one below and one above it: linear interpolation along that field.
2. **Scaled neighbours** - otherwise the ``k`` nearest compatible neighbours (log-size distance),
   each scaled by the ratio of roofline costs target/neighbour, combined by geometric mean.
3. With no compatible neighbour the value is the roofline estimate scaled by the table's median
   measured/roofline ratio for the same kind (or overall); it is flagged ``estimated``.

>>> from compress.latency.signature import BlockSignature as B
>>> ms = {B("linear", 1, 64, 1, 10): 1.0, B("linear", 1, 128, 1, 10): 2.0}
>>> round(interpolate_one(B("linear", 1, 96, 1, 10), ms)[0], 3)
1.5
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from compress.latency.roofline import block_cost
from compress.latency.signature import CATEGORICAL, NUMERIC, BlockSignature


def _cat(sig: BlockSignature) -> tuple:
    return tuple(getattr(sig, f) for f in CATEGORICAL)


def _num(sig: BlockSignature) -> tuple[int, ...]:
    return tuple(getattr(sig, f) for f in NUMERIC)


def _cost(sig: BlockSignature) -> float:
    flops, nbytes, layers = block_cost(sig)
    # a rough CPU-ish time model used only for ratios between near neighbours
    return flops / 20e9 + nbytes / 10e9 + layers * 5e-6


def interpolate_one(
    sig: BlockSignature, measured: Mapping[BlockSignature, float], *, k: int = 3
) -> tuple[float, str, str]:
    """``(ms, source, note)`` for one signature from ``measured`` (signature -> ms)."""
    cat = _cat(sig)
    tnum = _num(sig)
    compat = [(s, v) for s, v in measured.items() if _cat(s) == cat]
    # 1. bracketing along a single field
    best: tuple[float, float, str] | None = None
    for i, fname in enumerate(NUMERIC):
        lo = hi = None
        for s, v in compat:
            n = _num(s)
            if all(n[j] == tnum[j] for j in range(len(n)) if j != i):
                if n[i] < tnum[i] and (lo is None or n[i] > lo[0]):
                    lo = (n[i], v)
                elif n[i] > tnum[i] and (hi is None or n[i] < hi[0]):
                    hi = (n[i], v)
        if lo and hi:
            w = (tnum[i] - lo[0]) / (hi[0] - lo[0])
            span = (hi[0] - lo[0]) / max(tnum[i], 1)
            val = lo[1] + w * (hi[1] - lo[1])
            if best is None or span < best[1]:
                best = (val, span, f"linear in {fname} between {lo[0]} and {hi[0]}")
    if best is not None:
        return best[0], "interpolated", best[2]
    # 2. nearest compatible neighbours scaled by roofline cost ratios
    if compat:

        def dist(s: BlockSignature) -> float:
            return sum(abs(math.log1p(a) - math.log1p(b)) for a, b in zip(_num(s), tnum))

        near = sorted(compat, key=lambda sv: (dist(sv[0]), sv[0]))[:k]
        c_t = _cost(sig)
        logs = [math.log(max(v, 1e-9) * c_t / _cost(s)) for s, v in near]
        val = math.exp(sum(logs) / len(logs))
        return val, "interpolated", f"scaled from {len(near)} nearest measured neighbour(s) by cost ratio"
    # 3. no neighbour: cost model scaled by the table's own measured/cost ratio
    same_kind = [v / _cost(s) for s, v in measured.items() if s.kind == sig.kind and v > 0]
    ratios = same_kind or [v / _cost(s) for s, v in measured.items() if v > 0]
    if ratios:
        ratios.sort()
        r = ratios[len(ratios) // 2]
        return (
            _cost(sig) * r,
            "estimated",
            "cost model scaled by the table's measured/cost ratio" + (" for this kind" if same_kind else ""),
        )
    return _cost(sig) * 1000.0, "estimated", "cost model only (the table has no measured entries)"


def fill_missing(
    sigs: list[BlockSignature] | set[BlockSignature], measured: Mapping[BlockSignature, float]
) -> dict[BlockSignature, tuple[float, str, str]]:
    """Interpolate every signature of ``sigs`` that ``measured`` lacks."""
    return {s: interpolate_one(s, measured) for s in sorted(set(sigs)) if s not in measured}
