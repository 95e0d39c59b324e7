"""Top-1 accuracy, the one implementation (issue #29).

Every caller gets a fraction in [0, 1]; code that shows or reports percent multiplies by 100 at
that edge. The model runs in eval mode without gradients, batch by batch on the model's device, and
its previous train/eval mode is restored afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

Transform = Callable[[Any], Any]


def top1(
    model: Any,
    images: Any,
    labels: Any,
    *,
    batch_size: int = 256,
    transform: Transform | None = None,
) -> float:
    """Top-1 accuracy (fraction) of ``model`` on ``images`` / ``labels`` (torch tensors).

    ``transform`` is applied to each input batch before the forward pass (e.g. resizing to a
    subnet's resolution). The batch size only changes memory use, not which samples count.
    """
    import torch

    was = model.training
    model.eval()
    dev = _device(model)
    correct = 0
    n = len(labels)
    try:
        with torch.no_grad():
            for i in range(0, n, batch_size):
                x = images[i : i + batch_size].to(dev)
                if transform is not None:
                    x = transform(x)
                pred = model(x).argmax(1)
                correct += int((pred == labels[i : i + batch_size].to(pred.device)).sum())
    finally:
        model.train(was)
    return correct / max(1, n)


def top1_of_logits(logits: Any, labels: Any) -> float:
    """Top-1 accuracy (fraction) of precomputed ``logits`` (numpy arrays or tensors; one row per sample)."""
    pred = np.asarray(logits).argmax(1)
    lab = np.asarray(labels)
    return int((pred == lab).sum()) / max(1, len(lab))


def _device(model: Any) -> Any:
    import torch

    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")
