"""prune_updp as named steps (#29): the options model, each default once, and steps run alone."""

from __future__ import annotations

import pytest
import torch

from compress.core.errors import UsageError
from compress.prune.updp import api
from compress.prune.updp.latency import MacsBlockLatency
from compress.prune.updp.options import UpdpOptions, options_from

torch.set_num_threads(1)


def test_options_hold_each_default_once():
    from compress.cli.prune import Selection
    from compress.pipeline.config import PruneCfg

    opts, cfg = UpdpOptions(), PruneCfg()
    for name in ("device", "blocks", "latency_ms", "epochs", "train_limit", "max_steps", "timing_iterations"):
        assert getattr(cfg, name) == getattr(opts, name), name
        assert PruneCfg.model_fields[name].metadata == UpdpOptions.model_fields[name].metadata, name
    with pytest.raises(Exception, match="greater than or equal to 1"):
        PruneCfg(blocks=0)  # the options model's check, in the YAML section
    assert [s.value for s in Selection] == ["proxy", "supernet"]  # the CLI's choices are the model's


def test_options_from_keywords_and_one_line_errors():
    assert options_from(None, {"blocks": 2}).blocks == 2
    base = UpdpOptions(blocks=3, lr=0.01)
    assert options_from(base, {"epochs": 4}).model_dump() == {**base.model_dump(), "epochs": 4}
    with pytest.raises(UsageError, match="unknown option 'block' \\(did you mean 'blocks'"):
        options_from(None, {"block": 2})
    with pytest.raises(UsageError, match="selection"):
        options_from(None, {"selection": "oracle"})
    for bad in ({}, {"blocks": 1, "latency_ms": 2.0}):
        with pytest.raises(UsageError, match="either --blocks K or --latency-ms X"):
            api.check_options(UpdpOptions(**bad))


def test_no_module_state_between_calls():
    assert not hasattr(api, "_T0")  # the timer is per call
    lines: list[str] = []
    log = api._clock(lines.append)
    log("a")
    api._clock(lambda m: None)("another call's clock does not reset this one")
    log("b")
    assert [m.split("]")[0] for m in lines] == ["[   0.0s", "[   0.0s"]


def test_steps_run_alone_up_to_selection():
    run = api.UpdpRun(
        model="timm:test_convnext",
        data="digits",
        seed=3,
        options=UpdpOptions(blocks=2, train_limit=256, score_images=64),
        log=lambda m: None,
    )
    api.load_inputs(run, weights=None, subnet=None)
    assert run.lm.input_shape == (1, 32, 32) and run.cands and run.ds.train.labels.shape[0] == 256
    run.latency = MacsBlockLatency()
    api.decide_blocks(run)
    assert len(run.decisions) == len(run.cands) and run.base_ms > 0
    api.choose_blocks(run, lambda mask: -float(sum(len(n) for n in mask)))  # any score: the step stands alone
    assert len(run.sel.mask) == 2 and all(run.by_name[n].selected for n in run.sel.mask)
    api.check_speedup(run)
    assert run.check["faster"] and set(run.forms) == set(run.sel.mask)
