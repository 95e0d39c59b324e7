"""The SSH remote layer and ``compress bench --remote`` against a real sshd on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from compress.bench.timing import TimingConfig
from compress.cli.main import app
from compress.core.errors import Failure, UsageError
from compress.remote import RemoteHost, parse_remote, quote_command
from compress.remote.agent import agent_bundle, run_agent
from compress.remote.ssh import TEMP_PREFIX

pytestmark = pytest.mark.ssh
QUICK = TimingConfig(warmup=2, iterations=10, rounds=2, canary_iterations=3, max_extra_rounds=0)


def _temp_dirs() -> set[str]:
    return {p.name for p in Path("/tmp").glob(f"{TEMP_PREFIX}*")}


@pytest.fixture
def host(sshd):
    # the "device" python is this venv's: it has numpy and the runtimes, like a prepared device
    return RemoteHost(sshd.host, ssh_config=sshd.ssh_config, python=sys.executable, connect_timeout=5)


def test_run_put_get_and_cleanup(host, tmp_path):
    before = _temp_dirs()
    src = tmp_path / "in file.txt"
    src.write_text("payload")
    with host.tempdir() as rdir:
        assert rdir.startswith(f"/tmp/{TEMP_PREFIX}") and Path(rdir).is_dir()
        host.put({"sub dir/it's here.txt": src}, rdir)
        got = host.get(f"{rdir}/sub dir/it's here.txt", tmp_path / "back.txt")
        assert got.read_text() == "payload"
        assert host.exists(f"{rdir}/sub dir")
    assert not Path(rdir).exists()
    assert _temp_dirs() == before


def test_injection_attempts_are_inert(host, tmp_path):
    marker = tmp_path / "pwned"
    evil = [
        f"x; touch {marker}",
        f"$(touch {marker})",
        f"`touch {marker}`",
        f"a' ; touch {marker}; echo '",
        f'" && touch {marker} && "',
        f"| touch {marker}",
    ]
    out = host.run(["printf", "%s\\n", *evil]).stdout.decode()
    assert out.splitlines() == evil
    assert not marker.exists()
    assert quote_command(["it's"]) == "'it'\"'\"'s'"


def test_remote_agent_run_with_hostile_names_and_cleanup(host, tmp_path):
    from conftest import make_tiny_onnx

    marker = tmp_path / "pwned"
    art = make_tiny_onnx(tmp_path / f"my model's $(touch {marker}); v1.onnx")
    from compress.bench.canary import canary_onnx

    before = _temp_dirs()
    res = run_agent(
        host,
        items=[{"name": f"n'; touch {marker}", "artifact": art, "runtime": "onnxruntime", "threads": 1}],
        timing=QUICK,
        canary=canary_onnx(tmp_path),
        canary_runtime="onnxruntime",
    )
    assert not marker.exists()
    assert _temp_dirs() == before, "the remote temp dir must be removed"
    item = res["timing"]["items"][f"n'; touch {marker}"]
    assert item["stats"]["n"] == 10 and item["stats"]["median_ms"] > 0
    assert res["items"][f"n'; touch {marker}"]["runner"] == "compress.export.runtimes"
    assert res["canary"]["kind"] == "model" and res["timing"]["drift"]["checks"]
    assert res["device_state_before"]["cpu"]["model"]


def test_remote_agent_error_is_one_line_and_cleaned(host, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not onnx")
    before = _temp_dirs()
    with pytest.raises(Failure, match=r"on compress-test-device: onnxruntime cannot load bad.onnx"):
        run_agent(host, items=[{"name": "bad", "artifact": bad, "runtime": "onnxruntime"}], timing=QUICK)
    assert _temp_dirs() == before


def test_bench_cli_remote(sshd, tmp_path, monkeypatch):
    from conftest import make_tiny_onnx

    art = make_tiny_onnx(tmp_path / "remote model.onnx")
    monkeypatch.setenv("COMPRESS_SSH_CONFIG", str(sshd.ssh_config))
    before = _temp_dirs()
    r = CliRunner().invoke(
        app,
        [
            "bench",
            str(art),
            "--remote",
            sshd.target,
            "--remote-python",
            sys.executable,
            "-n",
            "10",
            "--rounds",
            "2",
            "--threads",
            "1",
            "--json",
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["remote"] == sshd.target and data["runtime"] == "onnxruntime" and data["iterations"] >= 10
    assert data["device_state"]["cpu"]["usable_cores"] >= 1
    assert (tmp_path / "o" / "bench.json").is_file()
    assert _temp_dirs() == before


def test_unanswering_host_times_out_clearly():
    """A TCP listener that never speaks SSH: ConnectTimeout must end the wait with one clear line."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(5)
    port = srv.getsockname()[1]
    conns: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conns.append(srv.accept()[0])
            except OSError:
                pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        h = RemoteHost(
            "nobody@127.0.0.1",
            port=port,
            connect_timeout=2,
            options=["StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null"],
        )
        t0 = time.monotonic()
        with pytest.raises(Failure, match=r"cannot reach nobody@127.0.0.1 over SSH|did not finish within"):
            h.check()
        assert time.monotonic() - t0 < 20
    finally:
        stop.set()
        t.join(timeout=2)
        for c in conns:
            c.close()
        srv.close()


def test_refused_connection_is_one_clear_line(tmp_path):
    from conftest import make_tiny_onnx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    art = make_tiny_onnx(tmp_path / "m.onnx")
    r = CliRunner().invoke(app, ["bench", str(art), "--remote", f"me@127.0.0.1:{port}", "--connect-timeout", "2"])
    assert r.exit_code == 1, r.output
    errors = [ln for ln in r.output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: cannot reach me@127.0.0.1 over SSH")


@pytest.mark.parametrize("target", ["-oProxyCommand=touch /tmp/x", "a b", "user@host;rm", "", "$(id)@h"])
def test_bad_targets_refused(target):
    with pytest.raises(UsageError):
        RemoteHost(target)


def test_parse_remote_port():
    h = parse_remote("me@dev.local:2222")
    assert (h.target, h.port) == ("me@dev.local", 2222)
    assert "-p" in h.ssh_argv() and h.ssh_argv()[-2:] == ["--", "me@dev.local"]


def test_agent_bundle_is_dependency_light(tmp_path):
    """The shipped bundle imports with the standard library + numpy only (no torch, pydantic, compress extras)."""
    import subprocess

    files = agent_bundle(tmp_path)
    root = tmp_path / "remote"
    for rel, src in files.items():
        dst = root / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(Path(src).read_bytes())
    code = (
        "import sys, compress.bench.agent, compress.export.runtimes; "
        "bad = [m for m in ('torch', 'pydantic', 'onnx', 'typer', 'rich', 'yaml') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    res = subprocess.run(
        [sys.executable, "-S", "-c", f"import site; site.main(); {code}"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(root / "pkg"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_remote_stream_mode_for_latency_tables(host, tmp_path):
    """Stream mode (many blocks, canary every K items) with one broken item skipped and reported."""
    from conftest import make_tiny_onnx

    from compress.bench.canary import canary_onnx

    arts = [make_tiny_onnx(tmp_path / f"blk{k}.onnx", channels=4 * (k + 1), seed=k) for k in range(3)]
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"nope")
    items = [{"name": f"blk{k}", "artifact": a, "runtime": "onnxruntime", "threads": 1} for k, a in enumerate(arts)]
    items.insert(1, {"name": "broken", "artifact": bad, "runtime": "onnxruntime"})
    cfg = TimingConfig(warmup=1, iterations=5, canary_every=2, canary_iterations=3, max_remeasure=0)
    res = run_agent(host, items=items, timing=cfg, canary=canary_onnx(tmp_path), mode="stream", skip_errors=True)
    assert sorted(res["timing"]["items"]) == ["blk0", "blk1", "blk2"]
    assert "broken" in res["errors"] and "cannot load" in res["errors"]["broken"]
    assert len(res["timing"]["drift"]["checks"]) >= 3  # start + one per 2 items + the last stretch
