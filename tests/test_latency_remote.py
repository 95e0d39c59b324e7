"""`compress profile --remote` against a real sshd on 127.0.0.1 (started by tests/conftest.py)."""

from __future__ import annotations

import glob
import sys

import pytest
from typer.testing import CliRunner

from compress.cli.main import app
from compress.latency.table import LatencyTable

pytestmark = pytest.mark.ssh


def test_remote_profile_over_local_sshd(sshd, tmp_path, monkeypatch) -> None:
    from test_latency_profile import tiny_space

    from compress.latency.profile import profile_table
    from compress.remote.ssh import TEMP_PREFIX

    space = tiny_space()
    before = set(glob.glob(f"/tmp/{TEMP_PREFIX}*"))

    res = profile_table(device="local-cpu", runtime="onnxruntime", supernet=space, tables=tmp_path, threads=1,
                        iterations=4, warmup=1, calibrate=0, remote=sshd.target, ssh_config=sshd.ssh_config,
                        remote_python=sys.executable)
    assert res.remote == sshd.target and res.measured_now == res.signatures >= 8
    t = LatencyTable.load(res.path)
    assert len(t.measured()) == res.signatures and t.meta.remote == sshd.target
    assert all(e.median_ms > 0 for e in t.entries.values())
    assert t.meta.host.get("remote") == sshd.target and t.meta.drift[-1]["status"] and t.meta.runtime_version
    # nothing is left behind on the "device" (the same machine here)
    assert set(glob.glob(f"/tmp/{TEMP_PREFIX}*")) <= before
    # the CLI path: an unreachable device fails with one clear line
    monkeypatch.setenv("COMPRESS_SSH_CONFIG", str(sshd.ssh_config))
    r = CliRunner().invoke(app, ["profile", "--device", "local-cpu", "--runtime", "onnxruntime", "--supernet",
                                 "convnext-small-input", "--remote", "nobody@unreachable.invalid", "--tables",
                                 str(tmp_path), "--json", "--calibrate", "0"])
    assert r.exit_code != 0 and "unreachable.invalid" in r.output
