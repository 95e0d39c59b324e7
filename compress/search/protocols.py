"""The two protocols searchers depend on, plus the gene-space description they mutate.

A *gene array* ``G`` is an ``(N, L)`` integer array; gene ``j`` takes values ``0..sizes[j]-1``
(for supernets: ``SearchSpace.gene_sizes``). Estimators score whole batches at once so that a
search of 100 x 500 candidates costs a few hundred vectorised calls, not 50,000 Python calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class GeneEstimator(Protocol):
    """Anything that maps a batch of gene rows to one number per row."""

    def predict_genes(self, genes: np.ndarray) -> np.ndarray: ...


@runtime_checkable
class LatencyEstimator(GeneEstimator, Protocol):
    """Predicted latency in milliseconds per gene row for one (device, runtime, precision, batch).

    ``source`` is ``"measured"`` (a measured table) or ``"estimated"`` (roofline from datasheets).
    """

    source: str


@runtime_checkable
class AccuracyEstimator(GeneEstimator, Protocol):
    """Predicted top-1 (a fraction in [0, 1]) per gene row."""


@dataclass(frozen=True)
class GeneSpace:
    """The integer genotype searchers operate on.

    ``groups[j]`` names the mutation group of gene ``j``: genes of one group are resampled together
    (OFA resamples a block's kernel and expand ratio with one coin flip). ``mutate_prob`` is the
    per-group probability (a scalar, or one value per group).
    """

    sizes: np.ndarray
    groups: np.ndarray | None = None
    mutate_prob: float | np.ndarray = 0.1
    names: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        sizes = np.asarray(self.sizes, dtype=np.int64)
        if sizes.ndim != 1 or sizes.size == 0 or (sizes < 1).any():
            raise ValueError(f"gene sizes must be a non-empty 1-D array of positive ints, got {self.sizes!r}")
        object.__setattr__(self, "sizes", sizes)
        groups = np.arange(sizes.size) if self.groups is None else np.asarray(self.groups, dtype=np.int64)
        if groups.shape != sizes.shape:
            raise ValueError("groups must have one entry per gene")
        # relabel groups to 0..n_groups-1 in order of first appearance
        _, first, inv = np.unique(groups, return_index=True, return_inverse=True)
        order = np.argsort(np.argsort(first))
        object.__setattr__(self, "groups", order[inv].astype(np.int64))
        p = np.asarray(self.mutate_prob, dtype=np.float64)
        if p.ndim == 0:
            p = np.full(self.n_groups, float(p))
        if p.shape != (self.n_groups,) or (p < 0).any() or (p > 1).any():
            raise ValueError("mutate_prob must be a probability or one probability per group")
        object.__setattr__(self, "mutate_prob", p)

    @property
    def n_genes(self) -> int:
        return int(self.sizes.size)

    @property
    def n_groups(self) -> int:
        return int(self.groups.max()) + 1  # type: ignore[union-attr]

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` uniform random rows, shape (n, L), int64."""
        return np.minimum((rng.random((n, self.n_genes)) * self.sizes).astype(np.int64), self.sizes - 1)

    def check(self, genes: np.ndarray) -> np.ndarray:
        g = np.atleast_2d(np.asarray(genes))
        if g.shape[1] != self.n_genes or (g < 0).any() or (g >= self.sizes).any():
            raise ValueError(f"gene rows must have {self.n_genes} genes within 0..sizes-1")
        return g.astype(np.int64, copy=False)


def gene_space_for(
    space: object, *, mutate_prob: float = 0.1, resolution_mutate_prob: float | None = None
) -> GeneSpace:
    """The :class:`GeneSpace` of a :class:`compress.supernet.space.SearchSpace`.

    Kernel and expand genes of one slot share a mutation group (OFA's ``random_resample``);
    resolution, width and each stage's depth are groups of their own.
    """
    sizes = np.asarray(space.gene_sizes, dtype=np.int64)  # type: ignore[attr-defined]
    names = list(space.gene_names)  # type: ignore[attr-defined]
    n_stages = int(space.num_stages)  # type: ignore[attr-defined]
    n_slots = int(space.num_slots)  # type: ignore[attr-defined]
    base = 2 + n_stages
    groups = np.arange(sizes.size, dtype=np.int64)
    groups[base + n_slots : base + 2 * n_slots] = groups[base : base + n_slots]
    probs = np.full(sizes.size, float(mutate_prob))
    if resolution_mutate_prob is not None:
        probs[0] = float(resolution_mutate_prob)
    gs = GeneSpace(sizes=sizes, groups=groups, mutate_prob=0.0, names=tuple(names))
    per_group = np.zeros(gs.n_groups)
    per_group[gs.groups] = probs  # type: ignore[index]
    return GeneSpace(sizes=sizes, groups=groups, mutate_prob=per_group, names=tuple(names))
