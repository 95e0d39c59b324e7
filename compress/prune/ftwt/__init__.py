"""FTWT (Fire Together Wire Together): per-input dynamic channel gating with self-supervised
mask predictors (Elkerdawy et al., CVPR 2022; ALGORITHMS.md §4).

Modules, one concept each:

- :mod:`labels` — pure math: peak scores, heatmap-mass ground truth, per-sample conv MACs;
- :mod:`gates` — the gating module (predictor head + hard mask) and the gated Conv-BN-act wrapper;
- :mod:`wrap` — module surgery: find Conv-BN(-act) sites and insert/replay gates;
- :mod:`accounting` — per-sample FLOPs accounting by forward hooks, and how input-dependent the masks are;
- :mod:`train` — the FTWT training loop (CE + BCE mask loss, cooldown, two optimisers, resume);
- :mod:`static_l1` — the static L1-norm filter pruning baseline;
- :mod:`models` — small ResNet/MobileNet/VGG-style models for 28-32 px inputs (paper plans at a width);
- :mod:`deploy` — ONNX export with in-graph gates and parity against PyTorch;
- :mod:`execute` — gather-executed batch-1 inference that skips gated channels, and its latency;
- :mod:`api` — :func:`prune_ftwt`, registered as ``compress.prune.METHODS['ftwt']``.

Nothing here is imported by ``import compress``; torch is imported by the submodules (not by this
file, so the CLI can read :data:`DEFAULT_MASS` cheaply).
"""

DEFAULT_MASS = 0.95  # the heatmap-mass threshold r used when none is given (CLI, API, pipeline, training)
