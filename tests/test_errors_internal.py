"""Internal errors (broken invariants) vs user errors: class, CLI report and exit code by type."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

import compress.supernet.checkpoint as ckpt_mod
from compress.cli.main import app
from compress.core.errors import (
    CompressError,
    Failure,
    InternalError,
    MissingDependency,
    UsageError,
    exit_code_for,
)

runner = CliRunner()


def test_exit_codes_by_type():
    assert exit_code_for(UsageError("x")) == 2
    assert exit_code_for(Failure("x")) == 1
    assert exit_code_for(MissingDependency("x")) == 1
    assert exit_code_for(InternalError("x")) == 1
    assert exit_code_for(KeyboardInterrupt()) == 130
    assert exit_code_for(ValueError("x")) == 1
    assert not issubclass(InternalError, CompressError)  # never shown as the user's to fix


@pytest.mark.parametrize(
    ("err", "code", "bug"),
    [(InternalError("table index out of step"), 1, True), (UsageError("bad name"), 2, False)],
)
def test_cli_reports_internal_error_as_bug(monkeypatch, tmp_path, err, code, bug):
    def boom(path):
        raise err

    monkeypatch.setattr(ckpt_mod, "checkpoint_info", boom)
    r = runner.invoke(app, ["info", str(tmp_path / "x.safetensors")])
    assert r.exit_code == code
    line = r.output.strip().splitlines()[-1]
    assert line.startswith("error: ")
    assert str(err) in line
    assert ("this is a bug; rerun with --debug for the traceback" in line) is bug
    assert ("InternalError: " in line) is bug


def test_space_cost_mismatch_is_internal(monkeypatch):
    """The vectorised-cost self-check is an invariant of ours: an InternalError, not a Failure."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from _search_fixtures import tiny_space

    from compress.latency.space_cost import SpaceCost
    from compress.supernet import SearchSpace
    from compress.supernet.specs import Cost

    space = tiny_space()
    SpaceCost(space, verify=2)  # consistent: no error
    real = SearchSpace.count

    def off_by_one(self, cfg):
        c = real(self, cfg)
        return Cost(params=c.params + 1, macs=c.macs)

    monkeypatch.setattr(SearchSpace, "count", off_by_one)
    with pytest.raises(InternalError, match="vectorised cost disagrees"):
        SpaceCost(space, verify=2)
