"""Resolve what the latency tools measure: a search space (no torch) or a supernet (torch).

``supernet`` may be ``None`` (the embedded default checkpoint, else the default family with
random weights: random weights serve for latency), a family name, a checkpoint path, a
``SearchSpace`` or a ``Supernet``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from compress.core.errors import UsageError

DEFAULT_FAMILY = "convnext-small-input"


def _default_checkpoint() -> Path | None:
    from compress.supernet import default_checkpoint_path

    try:
        return default_checkpoint_path()
    except UsageError:
        return None


def resolve_space(supernet: Any = None) -> Any:
    """The ``SearchSpace`` of ``supernet`` (see module docstring)."""
    from compress.supernet import SearchSpace, family_names, get_space

    if supernet is None:
        ckpt = _default_checkpoint()
        return resolve_space(ckpt) if ckpt else get_space(DEFAULT_FAMILY)
    if isinstance(supernet, SearchSpace):
        return supernet
    if hasattr(supernet, "space") and isinstance(supernet.space, SearchSpace):
        return supernet.space
    s = str(supernet)
    if s in family_names():
        return get_space(s)
    p = Path(s).expanduser()
    if p.is_file():
        from compress.supernet import read_checkpoint_header

        return SearchSpace.from_dict(read_checkpoint_header(p)["space"], source=f"{p}: space")
    raise UsageError(f"'{s}' is neither a supernet checkpoint file nor a family ({', '.join(family_names())})")


def resolve_supernet(supernet: Any = None, *, seed: int = 0) -> Any:
    """A torch ``Supernet`` (eval mode): the checkpoint's, or a freshly built one (random weights)."""
    from compress.supernet import SearchSpace, build_supernet, family_names, load_checkpoint

    if supernet is None:
        ckpt = _default_checkpoint()
        return resolve_supernet(ckpt if ckpt else DEFAULT_FAMILY, seed=seed)
    if isinstance(supernet, SearchSpace):
        return build_supernet(supernet, seed=seed).eval()
    if hasattr(supernet, "export_active"):
        return supernet.eval()
    s = str(supernet)
    if s in family_names():
        return build_supernet(s, seed=seed).eval()
    p = Path(s).expanduser()
    if p.is_file():
        return load_checkpoint(p).eval()
    raise UsageError(f"'{s}' is neither a supernet checkpoint file nor a family ({', '.join(family_names())})")


def space_label(space: Any) -> str:
    """Name of the space in table file names: the family, plus a hash when it differs from the
    family's default space (so a customised space never reads another space's table)."""
    from compress.supernet import family_names, get_space

    fam = str(space.family)
    if fam in family_names():
        try:
            if get_space(fam).hash() == space.hash():
                return fam
        except UsageError:
            pass
    return f"{fam}-{space.hash()[:8]}"
