"""Named offline datasets with deterministic splits (train / val / test / calib).

>>> from compress.data import load_dataset
>>> ds = load_dataset("digits", image_size=16)  # doctest: +SKIP
>>> ds.train.images.shape  # doctest: +SKIP
torch.Size([1077, 1, 16, 16])
"""

from compress.data.datasets import (
    DATASETS,
    Batches,
    DatasetInfo,
    LoadedDataset,
    Split,
    dataset_info,
    dataset_names,
    load_dataset,
)

__all__ = [
    "DATASETS",
    "Batches",
    "DatasetInfo",
    "LoadedDataset",
    "Split",
    "dataset_info",
    "dataset_names",
    "load_dataset",
]
