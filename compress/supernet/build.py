"""Build a supernet from a family name or a search space."""

from __future__ import annotations

from typing import Any

import torch

from compress.supernet.base import Supernet
from compress.supernet.families import get_space
from compress.supernet.space import SearchSpace


def build_supernet(family_or_space: str | SearchSpace, *, seed: int = 0, **options: Any) -> Supernet:
    """A randomly initialised supernet (deterministic for ``seed``)."""
    space = family_or_space if isinstance(family_or_space, SearchSpace) else get_space(family_or_space, **options)
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        return Supernet(space)
    finally:
        torch.random.set_rng_state(gen_state)
