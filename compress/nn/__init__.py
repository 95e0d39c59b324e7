"""Torch primitives every trainer and evaluator shares, written once.

- :mod:`compress.nn.evaluate`: top-1 accuracy (a fraction in [0, 1]; percent is for display only);
- :mod:`compress.nn.bn`: BatchNorm recalibration (reset, then a cumulative average over images).

The learning-rate schedules are plain math without torch and live in
:mod:`compress.train.schedule`. This package sits just above ``compress.core``: it imports nothing
else from ``compress``, so the supernet, search, prune, train and pipeline layers all use it.
"""
