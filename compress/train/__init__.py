"""Supernet training: DεpS (default), OFA progressive shrinking and BigNAS recipes, data-parallel
(torchrun; gloo on CPU, NCCL on GPU) or Independent Subnet Training, with exact resume.

>>> from compress.train import TrainConfig, train           # doctest: +SKIP
>>> train(TrainConfig(family="convnext-small-input", data="fashion-mnist", out="runs/t", epochs=4))

``train`` behaves as ``compress train``: with ``nproc > 1`` it starts the torchrun workers itself,
and it writes the run's ``manifest.json`` (:func:`compress.train.launch.train`).
"""

from __future__ import annotations

from compress.train.config import TrainConfig
from compress.train.launch import train

__all__ = ["TrainConfig", "train"]
