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

    res = profile_table(
        device="local-cpu",
        runtime="onnxruntime",
        supernet=space,
        tables=tmp_path,
        threads=1,
        iterations=4,
        warmup=1,
        calibrate=0,
        remote=sshd.target,
        ssh_config=sshd.ssh_config,
        remote_python=sys.executable,
    )
    assert res.remote == sshd.target and res.measured_now == res.signatures >= 8
    t = LatencyTable.load(res.path)
    assert len(t.measured()) == res.signatures and t.meta.remote == sshd.target
    assert all(e.median_ms > 0 for e in t.entries.values())
    assert t.meta.host.get("remote") == sshd.target and t.meta.drift[-1]["status"] and t.meta.runtime_version
    # nothing is left behind on the "device" (the same machine here)
    assert set(glob.glob(f"/tmp/{TEMP_PREFIX}*")) <= before
    # the CLI path: an unreachable device fails with one clear line
    monkeypatch.setenv("COMPRESS_SSH_CONFIG", str(sshd.ssh_config))
    r = CliRunner().invoke(
        app,
        [
            "profile",
            "--device",
            "local-cpu",
            "--runtime",
            "onnxruntime",
            "--supernet",
            "convnext-small-input",
            "--remote",
            "nobody@unreachable.invalid",
            "--tables",
            str(tmp_path),
            "--json",
            "--calibrate",
            "0",
        ],
    )
    assert r.exit_code != 0 and "unreachable.invalid" in r.output


def test_updp_for_a_remote_device_uses_the_table_measured_there(sshd, tmp_path) -> None:
    """The whole path for another device: `compress profile --merged --remote` measures the subnet space's
    blocks and their merged forms over SSH (this machine plays an x86 AVX-512 box), then UPDP for that
    device prices every block and merged form from the measured entries, with no timing here."""
    from _search_fixtures import make_checkpoint

    from compress.latency.profile import profile_table
    from compress.prune.updp.api import prune_updp

    ckpt = make_checkpoint(tmp_path / "tiny.safetensors")
    res = profile_table(
        device="x86-avx512-cpu",
        runtime="onnxruntime",
        supernet=str(ckpt),
        tables=tmp_path / "t",
        resolutions=[16],
        merged=True,
        threads=1,
        iterations=4,
        warmup=1,
        calibrate=0,
        remote=sshd.target,
        ssh_config=sshd.ssh_config,
        remote_python=sys.executable,
    )
    kinds = {s.kind for s in LatencyTable.load(res.path).measured()}
    assert {"merged_dense", "mbconv"} <= kinds
    r = prune_updp(
        model=str(ckpt),
        subnet="max",
        data="digits",
        epochs=0,
        blocks=1,
        device="x86-avx512-cpu",
        runtime="onnxruntime",
        tables=tmp_path / "t",
        progress=False,
        train_limit=128,
        score_images=64,
    )
    assert r["latency_source"] == "table:x86-avx512-cpu/onnxruntime/fp32" and r["measured_latency"] is None
    blocks = {k: v for k, v in r["latency_entry_sources"].items() if k != "__model__"}
    assert blocks and set(blocks.values()) == {"measured"}
    assert len(r["pruned_blocks"]) == 1 and r["predicted_latency_ms_after"] < r["predicted_latency_ms_before"]
