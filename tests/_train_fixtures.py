"""Tiny configs shared by the training tests (digits, 8x8, a two-stage ConvNeXt space)."""

from __future__ import annotations

TINY_SPACE = {
    "resolutions": [8],
    "width_mults": [1.0],
    "stem": {"channels": 8, "kernel": 3, "stride": 1, "act": "none"},
    "stages": [
        {"width": 8, "depths": [1, 2], "kernels": [3, 5], "expands": [2, 3, 4], "stride": 1, "act": "gelu"},
        {"width": 16, "depths": [1, 2], "kernels": [3, 5], "expands": [2, 3, 4], "stride": 2, "act": "gelu"},
    ],
}


def tiny(out, **kw):
    from compress.train.config import TrainConfig

    base = dict(
        family="convnext-small-input",
        data="digits",
        out=str(out),
        epochs=4,
        batch_size=32,
        image_size=8,
        train_limit=256,
        space=TINY_SPACE,
        shrink_start=2,
        ramp_epochs=1,
        base_lr=0.05,
        checkpoint_every=5,
        log_every=1,
        eval_every_epochs=0,
        calib_size=128,
    )
    base.update(kw)
    return TrainConfig(**base)


def tiny_args(out, **kw) -> list[str]:
    """The same tiny run as CLI options (for torchrun / subprocess tests), via a YAML config file."""
    import json

    cfg = tiny(out, **kw)
    path = __import__("pathlib").Path(str(out) + ".yaml")
    path.parent.mkdir(parents=True, exist_ok=True)
    d = cfg.model_dump(mode="json")
    for k in ("out", "family", "data", "epochs", "seed", "nproc", "recipe", "strategy"):
        d.pop(k, None)
    path.write_text(json.dumps(d))
    return [
        "--config",
        str(path),
        "--family",
        cfg.family,
        "--data",
        cfg.data,
        "--epochs",
        str(cfg.epochs),
        "--out",
        str(out),
        "--recipe",
        cfg.recipe,
        "--strategy",
        cfg.strategy,
    ]


def load_state(path):
    """A saved supernet's tensors (safetensors), for comparing runs."""
    from safetensors.torch import load_file

    return load_file(str(path))
