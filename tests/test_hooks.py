"""Test seams (compress.core.hooks): empty by default, installed only by tests; no fault switch in the library."""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from compress.core import hooks

pytestmark = pytest.mark.faults
ROOT = Path(__file__).resolve().parents[1]
SEAMS = ROOT / "tests" / "seams"


def test_fire_without_callbacks_does_nothing_and_installed_removes_its_callback():
    seen = []
    hooks.fire("train.step", step=1, rank=0, restart=0)  # nothing installed: no effect
    with hooks.installed("train.step", lambda **kw: seen.append(kw)):
        hooks.fire("train.step", step=2, rank=0, restart=0)
    hooks.fire("train.step", step=3, rank=0, restart=0)
    assert seen == [{"step": 2, "rank": 0, "restart": 0}]
    with pytest.raises(ValueError, match="unknown hook point 'train.stpe'"):
        hooks.add("train.stpe", lambda **_: None)


def test_the_library_never_kills_itself_nor_reads_a_fault_variable():
    """No library module sends a signal to its own pid or reads an environment variable named *FAULT*."""
    bad = []
    for root in (ROOT / "compress", ROOT / "export"):
        for f in root.rglob("*.py"):
            src = f.read_text(encoding="utf-8")
            if "FAULT" in src.replace("DEFAULT", ""):
                bad.append(f"{f}: mentions FAULT")
            for node in ast.walk(ast.parse(src)):
                if isinstance(node, ast.Call) and ast.unparse(node.func) == "os.kill":
                    if "getpid" in ast.unparse(node.args[0]):
                        bad.append(f"{f}:{node.lineno}: os.kill(os.getpid(), ...)")
    assert not bad, bad


def _seam_run(spec: dict | None, code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SEAMS), str(ROOT)]))
    env.pop("COMPRESS_TEST_FAULT", None)
    if spec is not None:
        env["COMPRESS_TEST_FAULT"] = json.dumps(spec)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)


def test_subprocess_seam_kills_exactly_at_the_named_moment():
    """tests/seams/sitecustomize.py installs the callback in a child process (as in torchrun workers)."""
    code = (
        "from compress.core import hooks\n"
        "for step in range(5):\n"
        "    print(step, flush=True)\n"
        "    hooks.fire('train.step', step=step, rank=1, restart=0)\n"
    )
    spec = {"point": "train.step", "when": {"step": 3, "rank": 1, "restart": 0}, "do": "kill"}
    res = _seam_run(spec, code)
    assert res.returncode == -signal.SIGKILL and res.stdout.split() == ["0", "1", "2", "3"]
    other_rank = {**spec, "when": {"step": 3, "rank": 0}}
    assert _seam_run(other_rank, code).returncode == 0
    assert _seam_run(None, code).stdout.split() == ["0", "1", "2", "3", "4"]  # no variable: no seam
    raised = _seam_run({**spec, "do": "raise"}, code)
    assert raised.returncode == 1 and "injected fault at train.step" in raised.stderr
