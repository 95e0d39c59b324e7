"""Supernet training: DεpS (default), OFA progressive shrinking and BigNAS recipes, data-parallel
(torchrun; gloo on CPU, NCCL on GPU) or Independent Subnet Training, with exact resume.

>>> from compress.train import TrainConfig, train           # doctest: +SKIP
>>> train(TrainConfig(family="convnext-small-input", data="fashion-mnist", out="runs/t", epochs=4))
"""

from __future__ import annotations

from compress.train.config import TrainConfig

__all__ = ["TrainConfig", "train"]


def train(cfg: TrainConfig, **kw):
    """Train a supernet (see :func:`compress.train.loop.train`; IST with ``cfg.strategy == "ist"``)."""
    if cfg.strategy == "ist":
        from compress.train.ist import train_ist

        return train_ist(cfg, **kw)
    from compress.train.loop import train as _train

    return _train(cfg, **kw)
