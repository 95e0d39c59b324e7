"""Caches keyed on the supernet checkpoint miss cleanly when the checkpoint changes (issue #20).

When the embedded default supernet is replaced (a retrained ``compress/supernet/default/``), nothing
computed from the old weights may be reused: the search's (subnet, top-1) pairs and fitted
predictors, the pipeline stages that read the checkpoint, and a search's selected subnet (refused, not rebuilt). The default path is pointed at a copy
(then at the same copy with one tensor perturbed, at the *same path*) - the real checkpoint, real
Fashion-MNIST evaluation, a small search. Latency tables are keyed on the search space, not the
weights (a weight change keeps the latency of every subnet): they must be kept for a weight change
and never found for another space.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import compress.supernet.checkpoint as ckmod
from compress.search.api import search


def _perturbed_copy(src: Path, dst: Path, *, tensor: str | None = None) -> str:
    """``src`` with one float tensor changed (header and every other tensor kept); returns its name."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(src), "pt") as f:
        meta = f.metadata()
    tensors = load_file(str(src))
    name = tensor or next(k for k in sorted(tensors) if k.endswith(".weight") and tensors[k].ndim > 1)
    t = tensors[name].float()
    tensors[name] = (t + 0.5 * t.std() * np.sign(np.random.default_rng(0).standard_normal(1)).item()).to(
        tensors[name].dtype
    )
    tmp = dst.with_name(dst.name + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(dst)
    return name


class MacsLatency:
    """Latency injected into the search (no table needed): MACs-proportional, marked estimated."""

    source = "estimated"

    def __init__(self, space) -> None:
        from compress.latency.space_cost import SpaceCost

        self.cost = SpaceCost(space)

    def predict_genes(self, genes):
        return np.asarray(self.cost.macs_genes(genes), dtype=np.float64) * 1e-7


@pytest.fixture
def default_dir(tmp_path, monkeypatch):
    """The default checkpoint path points at a copy of the embedded one; the user cache is private.

    The accuracy predictor is fitted as ridge only (the MLP ensemble's fit takes most of a search's
    time and plays no part in what is cached under which key).
    """
    from compress.search import predictor

    real = predictor.fit_predictor
    monkeypatch.setattr(predictor, "fit_predictor", lambda *a, **k: real(*a, **{**k, "kinds": ("ridge",)}))
    d = tmp_path / "pkg" / "default"
    d.mkdir(parents=True)
    shutil.copy2(ckmod.default_checkpoint_path(), d / ckmod.DEFAULT_NAME)
    monkeypatch.setattr(ckmod, "DEFAULT_DIR", d)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return d


def _search(space, out=None):
    return search(
        out=out,
        devices=["local-cpu"],
        latency_ms=None,
        supernet=None,  # the default checkpoint
        population=8,
        generations=2,
        refine=0,
        predictor_samples=10,
        predictor_val_images=96,
        predictor_calib_images=64,
        calib_images=64,
        val_images=96,
        latency={"local-cpu": MacsLatency(space)},
    )


def test_search_cache_misses_when_the_default_checkpoint_changes_in_place(default_dir) -> None:
    from compress.supernet import SearchSpace, default_checkpoint_path
    from compress.supernet.checkpoint import read_checkpoint_header

    ckpt = default_checkpoint_path()
    assert ckpt.parent == default_dir
    space = SearchSpace.from_dict(read_checkpoint_header(ckpt)["space"])

    first = _search(space, out=default_dir.parent / "search1")
    again = _search(space)  # same checkpoint: pairs and predictor come from the cache
    assert first.predictor["cached"] is False and again.predictor["cached"] is True
    assert again.predictor["cache"] == first.predictor["cache"]

    _perturbed_copy(ckpt, ckpt)  # the shipped file replaced at the same path
    changed = _search(space)
    assert changed.supernet["sha256"] != first.supernet["sha256"]
    assert changed.predictor["cached"] is False  # refitted, not the old predictor
    old_dir, new_dir = Path(first.predictor["cache"]).parent, Path(changed.predictor["cache"]).parent
    assert old_dir != new_dir and changed.supernet["sha256"][:16] == new_dir.name
    # the pairs were measured again on the new weights: a fresh pair file, the old one untouched
    old_pairs = json.loads(next(old_dir.glob("pairs-*.json")).read_text())["rows"]
    new_pairs = json.loads(next(new_dir.glob("pairs-*.json")).read_text())["rows"]
    assert [r["genes"] for r in old_pairs] == [r["genes"] for r in new_pairs]
    assert [r["top1"] for r in old_pairs] != [r["top1"] for r in new_pairs]
    # the subnet the first search selected is refused, not rebuilt from the new weights
    from compress.core.errors import UsageError
    from compress.search.source import load_selected

    with pytest.raises(UsageError, match="changed since the search"):
        load_selected(default_dir.parent / "search1" / "subnet.json")


def test_pipeline_stages_reading_the_checkpoint_get_new_keys(default_dir, tmp_path) -> None:
    from compress.pipeline.cache import stage_key
    from compress.pipeline.config import load_pipeline
    from compress.pipeline.stages import Context, ProfileStage, SearchStage

    cfg = load_pipeline(Path(__file__).resolve().parent.parent / "examples" / "demo.yaml")
    ctx = Context(cfg=cfg, run_dir=tmp_path / "run", stage_dir=lambda n: tmp_path / "run" / "stages" / n)

    def keys() -> dict[str, str]:
        return {s.name: stage_key(s.name, 1, s.config(cfg), {}, s.inputs(ctx)) for s in (ProfileStage(), SearchStage())}

    before, same = keys(), keys()
    assert before == same
    _perturbed_copy(ckmod.default_checkpoint_path(), ckmod.default_checkpoint_path())
    after = keys()
    assert all(after[k] != before[k] for k in before)


def test_latency_tables_follow_the_space_not_the_weights(default_dir, tmp_path) -> None:
    from compress.latency.spaces import space_label
    from compress.supernet import SearchSpace, get_space
    from compress.supernet.checkpoint import read_checkpoint_header

    ckpt = ckmod.default_checkpoint_path()
    label = space_label(SearchSpace.from_dict(read_checkpoint_header(ckpt)["space"]))
    _perturbed_copy(ckpt, ckpt)
    # same space, new weights: every subnet's latency is unchanged, so its table is still the right one
    assert space_label(SearchSpace.from_dict(read_checkpoint_header(ckpt)["space"])) == label
    # another space (a retrained default with other choices, or of another family) never reads it
    d = read_checkpoint_header(ckpt)["space"]
    d["stages"] = [dict(st, kernels=st["kernels"][-1:]) for st in d["stages"]]
    assert space_label(SearchSpace.from_dict(d)) != label
    other = "convnext-small-input" if d["family"] != "convnext-small-input" else "mbv3-small-input"
    assert space_label(get_space(other)) != label
