"""Tiny models for the export tests, and an ``exporttest:NAME`` model reference for CLI tests."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from compress.models import RESOLVERS, LoadedModel


class TinyNet(nn.Module):
    """Conv-BN-ReLU, Conv-ReLU, global pool, Linear: exports to plain ops every target runs."""

    def __init__(self, in_ch: int = 3, classes: int = 5) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_ch, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.block = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=2), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.block(self.stem(x))).flatten(1))


class Spectral(nn.Module):
    """|rfft2(x)|: exports to ONNX DFT, which TensorRT's ONNX parser does not support."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fft.rfft2(x).abs()


class FftNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.spectral = Spectral()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.spectral(self.conv(x))).flatten(1))


def tiny_model(
    *, in_ch: int = 3, size: int = 16, classes: int = 5, seed: int = 0, dataset: str | None = None
) -> LoadedModel:
    torch.manual_seed(seed)
    m = TinyNet(in_ch, classes).eval()
    with torch.no_grad():  # non-trivial BN statistics so the folded conv differs from the raw one
        m.stem[1].running_mean.uniform_(-0.5, 0.5)
        m.stem[1].running_var.uniform_(0.5, 2.0)
    return LoadedModel(
        module=m,
        input_shape=(in_ch, size, size),
        num_classes=classes,
        source={"kind": "exporttest", "name": "tiny", "seed": seed},
        dataset=dataset,
        predictions={"local-cpu": {"onnxruntime": {"latency_ms": 0.5}}},
    )


def fft_model() -> LoadedModel:
    torch.manual_seed(0)
    return LoadedModel(
        module=FftNet().eval(), input_shape=(1, 8, 8), num_classes=3, source={"kind": "exporttest", "name": "fft"}
    )


class _Resolver:
    def matches(self, ref: str) -> bool:
        return ref.startswith("exporttest:")

    def load(self, ref: str, **opts: Any) -> LoadedModel:
        name = ref.split(":", 1)[1]
        if name == "fft":
            return fft_model()
        if name == "digits":
            return tiny_model(in_ch=1, size=8, classes=10, dataset="digits")
        return tiny_model()


if "exporttest" not in RESOLVERS:
    RESOLVERS.add("exporttest", _Resolver())
