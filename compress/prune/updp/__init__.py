"""UPDP: depth pruning that merges blocks by re-parameterisation (ALGORITHMS.md §1).

Modules: ``reparam`` (pure merge algebra), ``linearize`` (pruned blocks: φ_λ, LN→BN, border
handling), ``candidates`` (which blocks can be merged), ``forms`` (merged forms per block kind),
``surgery`` (module replacement), ``latency`` (block latency protocol), ``select`` (decisions and
block selection), ``progressive`` (λ schedule + KD training), ``api`` (:func:`prune_updp`).
"""
