"""benchmarks/netlink.py: shaped namespaces really are slow, and are always removed (signals, errors, SIGKILL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import netlink  # noqa: E402

OK, WHY = netlink.available()
pytestmark = pytest.mark.skipif(not OK, reason=f"cannot create shaped network namespaces here: {WHY}")

OWNER = f"""
import subprocess, sys, time
sys.path.insert(0, {str(BENCH)!r})
import netlink
with netlink.SlowNet(n=2, rate_mbit=50) as net:
    p = net.popen(1, ["sleep", "60"])
    print(net.tag, p.pid, flush=True)
    time.sleep(60)
"""


def _start_owner():
    p = subprocess.Popen([sys.executable, "-c", OWNER], stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline().split()
    assert len(line) == 2, "the owner process did not create its namespaces"
    tag, child = line[0], int(line[1])
    assert len(netlink.list_namespaces(tag)) == 3  # hub + 2 ranks
    return p, tag, child


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # a zombie of an exited parent is reaped by init soon; read its state
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_removes_namespaces_and_processes(sig):
    p, tag, child = _start_owner()
    p.send_signal(sig)
    rc = p.wait(timeout=20)
    assert rc != 0
    assert netlink.list_namespaces(tag) == []
    deadline = time.monotonic() + 5
    while not _gone(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(child), "the process started inside the namespace survived"


def test_sigkilled_owner_leaves_stale_namespaces_that_the_next_run_removes():
    p, tag, _ = _start_owner()
    p.kill()
    p.wait(timeout=10)
    assert len(netlink.list_namespaces(tag)) == 3  # SIGKILL cannot be handled ...
    removed = netlink.cleanup_stale()  # ... so the next SlowNet's entry removes them
    assert set(netlink.list_namespaces(tag)) == set()
    assert len([n for n in removed if n.startswith(tag)]) == 3


def test_error_inside_the_block_removes_everything():
    with pytest.raises(RuntimeError, match="boom"):
        with netlink.SlowNet(n=3, rate_mbit=100) as net:
            tag = net.tag
            assert len(netlink.list_namespaces(tag)) == 4
            raise RuntimeError("boom")
    assert netlink.list_namespaces(tag) == []


def test_shaped_link_delivers_its_rate_not_loopback_speed():
    with netlink.SlowNet(n=2, rate_mbit=20) as net:
        mbit = netlink.measure_throughput(net, 1_000_000)
        tag = net.tag
    # a token bucket/netem at 20 Mbit/s: 1 MB takes ~0.4 s; loopback/veth unshaped does > 1 Gbit/s
    assert 10 <= mbit <= 20 * 1.15, f"measured {mbit:.1f} Mbit/s over a 20 Mbit/s link"
    assert netlink.list_namespaces(tag) == []
