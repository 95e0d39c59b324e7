"""Tiny supernets for the search tests: built (random weights) and optionally trained in seconds on digits."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def tiny_space(family: str = "mbv3-small-input"):
    from compress.supernet import SearchSpace, get_space

    d = get_space(family, num_classes=10, in_channels=1).to_dict()
    d["resolutions"] = [12, 16]
    d["width_mults"] = [1.0]
    d["stem"]["channels"] = 8
    d["first_block"]["channels"] = 8
    d["stages"] = [
        {**d["stages"][0], "width": 16, "depths": [1, 2], "kernels": [3, 5], "expands": [2.0, 3.0], "stride": 2},
        {**d["stages"][1], "width": 24, "depths": [1, 2], "kernels": [3, 5], "expands": [2.0, 3.0], "stride": 2},
    ]
    d["head"] = {**d["head"], "final_expand": 32, "feature_mix": 48}
    return SearchSpace.from_dict(d)


def make_checkpoint(path: Path, *, train_steps: int = 0, seed: int = 0, space=None) -> Path:
    """A supernet checkpoint (default: the tiny space) whose header records the digits dataset.

    ``space``: another SearchSpace (e.g. the full ``mbv3-small-input`` for benchmarks); digits are
    resized to its largest resolution.
    """
    import torch

    from compress.data import load_dataset
    from compress.supernet import build_supernet, resize_input, save_checkpoint

    torch.set_num_threads(1)
    space = space or tiny_space()
    net = build_supernet(space, seed=seed)
    data = load_dataset("digits", image_size=max(space.resolutions), channels=1, seed=0, calib_size=256)
    if train_steps:
        opt = torch.optim.Adam(net.parameters(), lr=3e-3)
        rng = np.random.default_rng(seed)
        g = torch.Generator().manual_seed(seed)
        net.train()
        for step in range(train_steps):
            cfg = net.max_config() if step % 2 == 0 else net.sample(rng)
            net.set_active(cfg)
            idx = torch.randint(0, len(data.train), (64,), generator=g)
            x = resize_input(data.train.images[idx], cfg.resolution)
            loss = torch.nn.functional.cross_entropy(net(x), data.train.labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        net.eval()
    return save_checkpoint(path, net, data=data.meta, recipe={"test": True, "steps": train_steps})
