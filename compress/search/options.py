"""The search's options, each default held once: the CLI, the pipeline YAML and the Python API read them here.

``compress search --population 50``, ``search: {population: 50}`` in a pipeline and
``compress.search(..., population=50)`` all build a :class:`SearchOptions`. :class:`SearchRequest`
adds what one call searches for (devices, budgets, the supernet, the seeds, where tables and profiles
come from); the pipeline fills those from its own sections (``devices``, ``seed``, ``data``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from compress.core.config import StrictModel, validate

# predictor targets: top-1 on the whole validation split after BN recalibration on a calibration
# subset. Scoring only 1,000 images (version 3) left ~0.6 points of sampling noise in each target,
# as much as the spread between subnets, and the search then picked subnets the predictor
# over-rated by 1.2-1.5 points (README `search`, "winner's curse").
PREDICTOR_VAL_IMAGES: int | None = None
PREDICTOR_CALIB_IMAGES = 256


class SearchOptions(StrictModel):
    """How to search: the searcher and its budget, the accuracy predictor, refinement, extra limits."""

    algorithm: str = "evolution"  # a name registered in compress.search.registry.SEARCHERS
    population: int = Field(default=100, ge=4)  # OFA: 100
    generations: int = Field(default=500, ge=1)  # OFA: 500
    rerank: int = Field(default=0, ge=0)  # evaluate the top K for real and choose by measured top-1
    refine: int = Field(default=2, ge=0)  # refinement rounds (score top candidates, refit, search again)
    predictor_samples: int = Field(default=50, ge=10)  # subnets evaluated to fit the accuracy predictor
    predictor_val_images: int | None = Field(default=PREDICTOR_VAL_IMAGES, ge=1)  # None: the whole split
    predictor_calib_images: int | None = Field(default=PREDICTOR_CALIB_IMAGES, ge=1)  # None: all calib images
    calib_images: int = Field(default=512, ge=1)  # BN recalibration images for --rerank evaluations
    val_images: int | None = Field(default=None, ge=1)  # validation images for --rerank (None: all)
    max_params: int | None = None
    max_macs: int | None = None
    channel_multiple: int | None = Field(default=None, ge=1)  # every channel count a multiple of this

    @field_validator("algorithm")
    @classmethod
    def _registered(cls, v: str) -> str:
        from compress.core.errors import UsageError
        from compress.search.searchers import SEARCHERS

        try:
            return SEARCHERS.canonical(v)
        except UsageError as err:  # pydantic reports a ValueError with the field's location
            raise ValueError(str(err)) from None


class SearchRequest(StrictModel):
    """One call of :func:`compress.search.api.search`: what to search for, on which supernet, with which seeds."""

    devices: list[str]
    latency_ms: float | list[float] | None = None  # one budget for all devices or one per device
    pareto: bool = False
    supernet: str | Path | None = None  # None: the embedded default checkpoint
    runtime: str | None = None  # None: each device's first
    precision: str | None = None
    batch: int = Field(default=1, ge=1)
    seed: int = 0
    predictor_seed: int = 0
    dataset: str | None = None  # None: the checkpoint's
    tables: str | Path | None = None
    profiles: str | Path | None = None
    options: SearchOptions = Field(default_factory=SearchOptions)


def request_from(request: SearchRequest | None, fields: dict[str, Any]) -> SearchRequest:
    """``request`` itself, or one built from flat keywords (``population=...`` goes into ``options``).

    Unknown keywords are one-line usage errors with a close match, as in the YAML.
    """
    from compress.core.errors import UsageError, suggest

    if request is not None:
        if fields:
            raise UsageError(f"give either request= or keywords, not both (got {', '.join(sorted(fields))})")
        return request
    known = set(SearchRequest.model_fields) | set(SearchOptions.model_fields)
    for key in fields:
        if key not in known:
            raise UsageError(f"search: unknown key '{key}'{suggest(key, known)}; allowed: {', '.join(sorted(known))}")
    flat = dict(fields)
    opts = flat.pop("options", None)
    knobs = {k: flat.pop(k) for k in list(flat) if k in SearchOptions.model_fields}
    if isinstance(opts, SearchOptions):
        opts = opts.model_dump()
    flat["options"] = {**(opts or {}), **knobs}
    return validate(SearchRequest, flat, source="search")
