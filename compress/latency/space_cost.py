"""Vectorised params, MACs and channel-multiple checks over gene rows of a supernet search space.

It lives in the latency layer, where both the latency tables (calibration choices in
:mod:`compress.latency.profile`) and search can use it. Reuses the compiled space
(:func:`compress.latency.compiled.compiled_space`: per layer, a lookup array from the genes it
depends on to its shape signature), so params and MACs of
100,000 configs cost a few integer gathers. Each signature's cost comes from the supernet's own
analytic counter (:func:`compress.supernet.layout.spec_cost`), and :class:`SpaceCost` checks itself
against ``space.count(cfg)`` on random configs when built.

Channel multiples (e.g. 8 for tensor cores): every channel count a config chooses (layer input and
output channels, expanded/hidden channels, SE channels) must be a multiple; the image channels of
the stem input and the class count of the classifier output are fixed by the task and not checked.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from compress.core.errors import InternalError


class SpaceCost:
    """``params_genes``, ``macs_genes`` and ``channel_violations_genes`` for one search space."""

    def __init__(self, space: Any, *, verify: int = 16, seed: int = 0) -> None:
        from compress.latency.compiled import compiled_space
        from compress.supernet.layout import spec_cost
        from compress.supernet.space import BlockSpec

        self.space = space
        self.comp = compiled_space(space)
        sigs = self.comp.signatures
        cost = np.zeros((len(sigs) + 1, 2), dtype=np.int64)  # last row: absent layer (-1)
        self._sig_specs = []
        for i, s in enumerate(sigs):
            spec = BlockSpec(
                name="_",
                **{k: getattr(s, k) for k in BlockSpec.__dataclass_fields__ if k not in ("name", "stage", "slot")},
            )
            self._sig_specs.append(spec)
            cost[i] = spec_cost(spec)
        self._params = cost[:, 0]
        self._macs = cost[:, 1]
        self._channel_cache: dict[int, np.ndarray] = {}
        if verify:
            g = space.sample_genes(np.random.default_rng(seed), verify)
            g = np.concatenate([g, space.to_genes(space.min_config())[None], space.to_genes(space.max_config())[None]])
            p, m = self.params_genes(g), self.macs_genes(g)
            for row, pp, mm in zip(g, p, m):
                c = space.count(space.from_genes(row))
                if c.params != pp or c.macs != mm:
                    raise InternalError(
                        f"vectorised cost disagrees with space.count for {space.from_genes(row)}: "
                        f"params {pp} vs {c.params}, MACs {mm} vs {c.macs}"
                    )

    def _sum(self, per_sig: np.ndarray, genes: np.ndarray) -> np.ndarray:
        g = np.atleast_2d(np.asarray(genes, dtype=np.int64))
        ids = self.comp.layer_sig_ids(g)  # (N, layers), -1 where absent -> last row
        return per_sig[ids].sum(axis=1)

    def params_genes(self, genes: np.ndarray) -> np.ndarray:
        return self._sum(self._params, genes)

    def macs_genes(self, genes: np.ndarray) -> np.ndarray:
        return self._sum(self._macs, genes)

    def channel_violations_genes(self, genes: np.ndarray, multiple: int) -> np.ndarray:
        """Number of chosen channel counts that are not a multiple of ``multiple`` (0 = feasible)."""
        if multiple <= 1:
            return np.zeros(np.atleast_2d(genes).shape[0])
        per = self._channel_cache.get(multiple)
        if per is None:
            per = np.zeros(len(self._sig_specs) + 1, dtype=np.int64)
            img_ch, n_cls = self.space.in_channels, self.space.num_classes
            for i, s in enumerate(self._sig_specs):
                dims = []
                if not (s.kind == "conv" and s.in_ch == img_ch):
                    dims.append(s.in_ch)
                if not (s.kind == "linear" and s.out_ch == n_cls):
                    dims.append(s.out_ch)
                if s.mid:
                    dims.append(s.mid)
                if s.se and s.se_mid:
                    dims.append(s.se_mid)
                per[i] = sum(1 for d in dims if d % multiple)
            self._channel_cache[multiple] = per
        return self._sum(per, genes).astype(np.float64)
