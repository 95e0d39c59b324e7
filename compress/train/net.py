"""The few supernet operations training needs, over the compress.supernet contract.

Everything that touches the supernet layer goes through here, so the loop and recipes stay
independent of its module layout.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from compress.core.errors import UsageError


def family_names() -> list[str]:
    from compress.supernet import family_names as names

    return list(names())


def get_space(
    family: str, *, num_classes: int, in_channels: int, image_size: int | None, overrides: dict | None = None
):
    """The family's search space adapted to the dataset (classes, channels, resolution)."""
    from compress.supernet import get_space as _get

    space = _get(family)  # raises unknown(...) with suggestions
    d = space.to_dict()
    d.update(overrides or {})
    d["num_classes"] = int(num_classes)
    d["in_channels"] = int(in_channels)
    if image_size is not None and "resolutions" not in (overrides or {}) and image_size not in d["resolutions"]:
        d["resolutions"] = [int(image_size)]
    return type(space).from_dict(d, source=f"{family} search space")


def data_size(space, native: int, requested: int | None) -> int:
    """Image size to load the data at: ``requested``, else the native size if it is a resolution
    choice, else the largest choice. Subnets at other resolutions get resized inputs."""
    if requested:
        return int(requested)
    return native if native in space.resolutions else int(space.resolutions[-1])


def build(space, *, seed: int = 0) -> Any:
    from compress.supernet import build_supernet

    return build_supernet(space, seed=seed)


def forward(net, x):
    """Run the active subnet on ``x`` resized to its resolution (OFA's elastic resolution)."""
    from compress.supernet import resize_input

    return net(resize_input(x, net.active.resolution))


def restricted_sample(
    space,
    rng: np.random.Generator,
    *,
    kernel: str = "all",
    depth: str = "all",
    expand: str = "all",
    resolution: int | None = None,
    width: str = "all",
):
    """Uniform sample with per-dimension restrictions: "all", "max" or "top2" (the two largest)."""

    def pick(choices: list, how: str):
        opts = {"all": choices, "max": choices[-1:], "top2": choices[-2:]}.get(how)
        if opts is None:
            raise UsageError(f"unknown restriction '{how}'; use all, max or top2")
        return opts[int(rng.integers(len(opts)))]

    depths, kernels, expands = [], [], []
    for st in space.stages:
        d = pick(st.depths, depth)
        depths.append(d)
        kernels.append([pick(st.kernels, kernel) for _ in range(d)])
        expands.append([pick(st.expands, expand) for _ in range(d)])
    res = resolution if resolution is not None else pick(space.resolutions, "all")
    return space.config(
        resolution=res, width=pick(space.width_mults, width), depths=depths, kernels=kernels, expands=expands
    )


def min_config(space, *, kernel: str = "all"):
    """Smallest subnet; with ``kernel="max"`` the kernel stays at its largest (DεpS, §2.2)."""
    cfg = space.min_config()
    if kernel == "max":
        cfg = space.config(
            resolution=cfg.resolution,
            width=cfg.width,
            depths=list(cfg.depths),
            kernels=[[st.kernels[-1]] * d for st, d in zip(space.stages, cfg.depths)],
            expands=[list(e) for e in cfg.expands],
        )
    return cfg


def active_masks(net) -> dict[str, Any] | None:
    fn = getattr(net, "active_param_masks", None)
    return fn() if fn is not None else None


def reorganize(net) -> None:
    fn = getattr(net, "reorganize_channels", None)
    if fn is None:
        raise UsageError("this supernet has no reorganize_channels(); pass --no-reorganize")
    fn()


def save(net, path, *, meta: dict, fp16: bool = False):
    """Write the supernet checkpoint (compress.supernet's safetensors + JSON header)."""
    from compress.supernet import save_checkpoint

    return save_checkpoint(
        path,
        net,
        recipe=meta.get("recipe"),
        data=meta.get("data"),
        metrics=meta.get("metrics"),
        fp16=fp16,
        extra={"training": meta.get("training", {})},
    )


def load(path):
    from compress.supernet import load_checkpoint

    return load_checkpoint(path)
