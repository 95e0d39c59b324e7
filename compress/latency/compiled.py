"""Compile a search space into per-layer lookup arrays over the genes each layer depends on.

For every layer (a ``BlockSpec.name``, stable across configs) we find which genes change its
signature or its presence (probing: change one gene at a time around several base configs),
then enumerate every combination of those genes once. The result maps a gene row to the
signature of every layer with pure integer indexing, so a predictor scores 100,000 configs in a
few tens of milliseconds, and the union of the arrays is every distinct signature the space can
produce (what ``compress profile`` measures).

Works with any space object offering ``gene_sizes``, ``from_genes(genes)``, ``to_genes(cfg)``,
``max_config()``, ``min_config()``, ``sample_genes(rng, n)`` and ``block_specs(cfg)`` (a list of
objects with a ``name`` and the signature fields).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from compress.core.errors import Failure
from compress.latency.signature import BlockSignature, signature_of

MAX_COMBOS = 200_000  # per layer; more means the layer depends on too many genes to tabulate


@dataclass
class CompiledSpace:
    """Per-layer gene dependencies and signature ids (``-1``: the layer is absent)."""

    gene_sizes: np.ndarray  # (L,)
    layer_names: list[str]
    deps: list[np.ndarray]  # per layer: gene indices it depends on
    strides: list[np.ndarray]  # per layer: mixed-radix strides over deps
    sig_ids: list[np.ndarray]  # per layer: int32 (prod sizes[deps],), -1 when absent
    signatures: list[BlockSignature]  # unique, sorted

    def flat_index(self, p: int, genes: np.ndarray, *, transposed: bool = False) -> np.ndarray:
        """Index into ``sig_ids[p]`` for each row (``genes`` may be given as (L, N), ``transposed``)."""
        gt = genes if transposed else genes.T
        d = self.deps[p]
        if d.size == 0:
            return np.zeros(gt.shape[1], dtype=np.int64)
        st = self.strides[p]
        idx = gt[d[-1]] * st[-1] if st[-1] != 1 else gt[d[-1]].copy()
        for j, s in zip(d[:-1], st[:-1]):
            idx += gt[j] * s
        return idx

    def layer_sig_ids(self, genes: np.ndarray) -> np.ndarray:
        """(N, layers) signature ids of each gene row (``-1`` where a layer is absent)."""
        g = _check_genes(genes, self.gene_sizes)
        out = np.empty((g.shape[0], len(self.layer_names)), dtype=np.int32)
        gt = np.ascontiguousarray(g.T)
        for p in range(len(self.layer_names)):
            out[:, p] = self.sig_ids[p][self.flat_index(p, gt, transposed=True)]
        return out

    def signatures_of(self, genes: np.ndarray) -> list[list[BlockSignature]]:
        ids = self.layer_sig_ids(genes)
        return [[self.signatures[i] for i in row if i >= 0] for row in ids]


def _check_genes(genes: Any, sizes: np.ndarray) -> np.ndarray:
    g = np.asarray(genes)
    if g.ndim == 1:
        g = g[None, :]
    if g.ndim != 2 or g.shape[1] != sizes.size:
        raise ValueError(f"genes must have shape (N, {sizes.size}), got {np.shape(genes)}")
    g = g.astype(np.int64, copy=False)
    if g.size and ((g < 0).any() or (g >= sizes[None, :]).any()):
        raise ValueError("gene values out of range for this space")
    return g


def _specs(space: Any, genes: np.ndarray, cache: dict[bytes, dict[str, BlockSignature]]) -> dict[str, BlockSignature]:
    key = np.asarray(genes, dtype=np.int64).tobytes()
    got = cache.get(key)
    if got is None:
        cfg = space.from_genes(genes)
        got = {}
        for spec in space.block_specs(cfg):
            name = getattr(spec, "name", None)
            if name is None:
                raise Failure(
                    "the space's block_specs() entries have no 'name'; the latency predictor needs stable layer names"
                )
            if name in got:
                raise Failure(f"layer name '{name}' appears twice in one subnet's block_specs(); names must be unique")
            got[name] = signature_of(spec)
        cache[key] = got
    return got


def compile_space(space: Any, *, probes: int = 2, seed: int = 0, check: int = 32) -> CompiledSpace:
    """Discover per-layer gene dependencies and tabulate signatures (see module docstring).

    ``check`` random subnets are verified against ``block_specs`` directly; a mismatch raises
    :class:`Failure` rather than returning a predictor that is silently wrong.
    """
    sizes = np.asarray(space.gene_sizes, dtype=np.int64)
    rng = np.random.default_rng(seed)
    cache: dict[bytes, dict[str, BlockSignature]] = {}
    gmax = np.asarray(space.to_genes(space.max_config()), dtype=np.int64)
    bases = [gmax, np.asarray(space.to_genes(space.min_config()), dtype=np.int64)]
    bases += list(np.asarray(space.sample_genes(rng, probes), dtype=np.int64))
    deps: dict[str, set[int]] = {}
    order: dict[str, int] = {}
    for b in bases:
        ref = _specs(space, b, cache)
        for n in ref:
            deps.setdefault(n, set())
            order.setdefault(n, len(order))
        for j in range(sizes.size):
            for v in range(int(sizes[j])):
                if v == b[j]:
                    continue
                g = b.copy()
                g[j] = v
                got = _specs(space, g, cache)
                for n in set(ref) | set(got):
                    deps.setdefault(n, set())
                    order.setdefault(n, len(order) + 1000)
                    if ref.get(n) != got.get(n):
                        deps[n].add(j)
    names = sorted(deps, key=lambda n: order[n])
    sig_index: dict[BlockSignature, int] = {}
    raw_ids: list[np.ndarray] = []
    dep_arrs: list[np.ndarray] = []
    stride_arrs: list[np.ndarray] = []
    combos: list[np.ndarray] = []
    for n in names:
        d = np.asarray(sorted(deps[n]), dtype=np.int64)
        dsz = sizes[d]
        total = int(np.prod(dsz)) if d.size else 1
        if total > MAX_COMBOS:
            raise Failure(f"layer '{n}' depends on {d.size} genes ({total} combinations); too many to tabulate")
        strides = np.ones(d.size, dtype=np.int64)
        for i in range(d.size - 2, -1, -1):
            strides[i] = strides[i + 1] * dsz[i + 1]
        raw_ids.append(np.full(total, -2, dtype=np.int64))
        dep_arrs.append(d)
        stride_arrs.append(strides)
        combos.append(np.asarray(list(np.ndindex(*dsz)), dtype=np.int64).reshape(total, d.size))
    # Pack the (layer, combination) tasks: one block_specs() call serves every layer whose next
    # combination agrees with the genes already set for that call (layers of different stages
    # share only resolution/width, enumerated in the same order, so most calls serve many layers).
    nxt = [0] * len(names)
    while True:
        assigned: dict[int, int] = {}
        served: list[int] = []
        for p in range(len(names)):
            if nxt[p] >= len(raw_ids[p]):
                continue
            c = combos[p][nxt[p]]
            if all(assigned.get(int(j), int(v)) == int(v) for j, v in zip(dep_arrs[p], c)):
                assigned.update({int(j): int(v) for j, v in zip(dep_arrs[p], c)})
                served.append(p)
        if not served:
            break
        g = gmax.copy()
        for j, v in assigned.items():
            g[j] = v
        got = _specs(space, g, cache)
        for p in served:
            sig = got.get(names[p])
            raw_ids[p][nxt[p]] = -1 if sig is None else sig_index.setdefault(sig, len(sig_index))
            nxt[p] += 1
    # renumber signatures in sorted order (stable across runs)
    sigs = sorted(sig_index)
    remap = np.empty(len(sig_index) + 1, dtype=np.int32)
    remap[-1] = -1
    pos = {s: i for i, s in enumerate(sigs)}
    for s, old in sig_index.items():
        remap[old] = pos[s]
    sig_ids = [remap[ids].astype(np.int32) for ids in raw_ids]
    comp = CompiledSpace(
        gene_sizes=sizes, layer_names=names, deps=dep_arrs, strides=stride_arrs, sig_ids=sig_ids, signatures=sigs
    )
    if check:
        verify(comp, space, n=check, seed=seed + 1, cache=cache)
    return comp


def verify(
    comp: CompiledSpace,
    space: Any,
    *,
    n: int,
    seed: int = 1,
    cache: dict[bytes, dict[str, BlockSignature]] | None = None,
) -> None:
    """Check the compiled arrays against ``block_specs`` on ``n`` random subnets (raise on mismatch)."""
    rng = np.random.default_rng(seed)
    genes = np.asarray(space.sample_genes(rng, n), dtype=np.int64)
    got = comp.signatures_of(genes)
    cache = {} if cache is None else cache
    for g, sigs in zip(genes, got):
        want = list(_specs(space, g, cache).values())
        if sorted(want) != sorted(sigs):
            raise Failure(
                "the compiled latency lookup disagrees with block_specs() for config "
                f"{space.from_genes(g)}; a layer depends on genes in a way probing missed"
            )


# ---- caching (in-process and on disk; numpy .npz without pickle) --------------------------------

# In-process memo of compiled spaces, keyed by the space's hash. Bounded (least recently used
# dropped first): a long-lived process that walks many spaces (a notebook, a sweep) keeps at most
# MEMO_SIZE of them; a dropped one is rebuilt, or read back from ``cache_dir``. The memoised arrays
# are shared by every caller, so they are made read-only. clear_memo() empties it.
MEMO_SIZE = 8
_MEMO: OrderedDict[str, CompiledSpace] = OrderedDict()


def clear_memo() -> None:
    """Forget every compiled space of this process (the on-disk caches stay)."""
    _MEMO.clear()


def _remember(key: str, comp: CompiledSpace) -> CompiledSpace:
    for a in (comp.gene_sizes, *comp.deps, *comp.strides, *comp.sig_ids):
        a.setflags(write=False)
    _MEMO[key] = comp
    _MEMO.move_to_end(key)
    while len(_MEMO) > MEMO_SIZE:
        _MEMO.popitem(last=False)
    return comp


def _space_key(space: Any) -> str | None:
    h = getattr(space, "hash", None)
    return h() if callable(h) else None


def save_compiled(comp: CompiledSpace, path: Any) -> None:
    from compress.core.runs import atomic_path

    arrays: dict[str, np.ndarray] = {
        "gene_sizes": comp.gene_sizes,
        "names": np.asarray(comp.layer_names, dtype=str),
        "sigs": np.asarray([s.key() for s in comp.signatures], dtype=str),
    }
    for i in range(len(comp.layer_names)):
        arrays[f"deps{i}"], arrays[f"strides{i}"], arrays[f"ids{i}"] = comp.deps[i], comp.strides[i], comp.sig_ids[i]
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def load_compiled(path: Any) -> CompiledSpace:
    with np.load(path, allow_pickle=False) as z:
        names = [str(x) for x in z["names"]]
        return CompiledSpace(
            gene_sizes=z["gene_sizes"].astype(np.int64),
            layer_names=names,
            deps=[z[f"deps{i}"].astype(np.int64) for i in range(len(names))],
            strides=[z[f"strides{i}"].astype(np.int64) for i in range(len(names))],
            sig_ids=[z[f"ids{i}"].astype(np.int32) for i in range(len(names))],
            signatures=[BlockSignature.from_key(str(k)) for k in z["sigs"]],
        )


def compiled_space(space: Any, *, cache_dir: Any = None) -> CompiledSpace:
    """:func:`compile_space` memoised per space hash (in this process, the last :data:`MEMO_SIZE`
    spaces, read-only; and in ``cache_dir`` if given)."""
    from pathlib import Path

    key = _space_key(space)
    if key is None:
        return compile_space(space)
    if key in _MEMO:
        _MEMO.move_to_end(key)
        return _MEMO[key]
    path = Path(cache_dir) / f"compiled-{key}-v1.npz" if cache_dir else None
    comp = None
    if path is not None and path.is_file():
        try:
            comp = load_compiled(path)
            verify(comp, space, n=8)
        except Exception:  # noqa: BLE001 - a stale or damaged cache is rebuilt
            comp = None
    if comp is None:
        comp = compile_space(space)
        if path is not None:
            try:
                save_compiled(comp, path)
            except OSError:
                pass
    return _remember(key, comp)
