"""Searchers registered by name with one signature; one options model for the CLI, the YAML and the API."""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _search_fixtures import make_checkpoint  # noqa: E402

from compress.core.errors import UsageError  # noqa: E402
from compress.search.options import SearchOptions  # noqa: E402
from compress.search.searchers import SEARCHERS, SearchTask  # noqa: E402


class BiggerIsBetter:  # injected accuracy: no predictor evaluations, the search itself is real
    def predict_genes(self, genes: np.ndarray) -> np.ndarray:
        return genes.sum(axis=1) / (1.0 + genes.sum(axis=1))


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    return make_checkpoint(tmp_path_factory.mktemp("reg") / "tiny.safetensors", train_steps=0)


def _search(ckpt, tmp_path, **kw):
    from compress.search.api import search

    return search(
        devices=["local-cpu"],
        supernet=ckpt,
        tables=tmp_path,
        accuracy=BiggerIsBetter(),
        **{"refine": 0, "population": 16, "generations": 4, **kw},
    )


def test_builtin_searchers_are_registered():
    assert SEARCHERS.names()[:3] == ["evolution", "nsga2", "random"]
    with pytest.raises(UsageError, match="unknown algorithm 'evolutoin'.*did you mean 'evolution'"):
        SEARCHERS.get("evolutoin")


def test_a_registered_searcher_is_dispatched_by_name(ckpt, tmp_path):
    calls: list[SearchTask] = []
    random_searcher = SEARCHERS.get("random")

    def counting(task: SearchTask):
        calls.append(task)
        return random_searcher(task)

    SEARCHERS.add("counting-random", counting)
    try:
        r = _search(ckpt, tmp_path, latency_ms=50.0, algorithm="counting-random", seed=3)
        ref = _search(ckpt, tmp_path, latency_ms=50.0, algorithm="random", seed=3)
    finally:
        SEARCHERS._items.pop("counting-random")  # the registry is process-wide: leave it as found
    assert len(calls) == 1 and calls[0].seed == 3 and calls[0].stream == 0
    assert calls[0].population == 16 and calls[0].generations == 4 and calls[0].anchors is not None
    assert r.devices[0].algorithm == "counting-random" and r.algorithm == "counting-random"
    # same task, same result: the wrapper sees exactly what the built-in would
    assert r.devices[0].selected.config == ref.devices[0].selected.config


def test_unknown_algorithm_and_bad_option_are_usage_errors(ckpt, tmp_path):
    with pytest.raises(UsageError, match="did you mean 'nsga2'"):
        _search(ckpt, tmp_path, latency_ms=50.0, algorithm="nsga")
    with pytest.raises(UsageError, match="population"):
        _search(ckpt, tmp_path, latency_ms=50.0, population=2)
    with pytest.raises(UsageError, match="unknown key 'generatoins'.*did you mean 'generations'"):
        _search(ckpt, tmp_path, latency_ms=50.0, generatoins=3)


def test_defaults_are_held_once():
    """The CLI's defaults are the options model's; the pipeline's `search:` section is that model."""
    from compress.cli.search import search_cmd
    from compress.pipeline.config import PipelineCfg

    assert PipelineCfg.model_fields["search"].annotation is SearchOptions
    d = SearchOptions()
    params = inspect.signature(search_cmd).parameters
    for name in ("algorithm", "population", "generations", "rerank", "refine", "predictor_samples"):
        assert params[name].default == getattr(d, name), name
    assert params["predictor_calib_images"].default == d.predictor_calib_images
    assert params["predictor_val_images"].default == 0 and d.predictor_val_images is None  # 0: the whole split


def test_pipeline_yaml_validates_against_the_registry(tmp_path):
    from compress.pipeline.config import load_pipeline

    base = "name: t\nsupernet: x.safetensors\ndevices:\n  - {name: local-cpu, budget_ms: 1.0}\n"
    p = tmp_path / "p.yaml"
    p.write_text(base + "search: {algorithm: nsga2, predictor_calib_images: 128}\n")
    cfg = load_pipeline(p)
    assert cfg.search.algorithm == "nsga2" and cfg.search.predictor_calib_images == 128
    p.write_text(base + "search: {algorithm: genetic}\n")
    with pytest.raises(UsageError, match="search.algorithm.*unknown algorithm 'genetic'"):
        load_pipeline(p)
