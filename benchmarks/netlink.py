"""A real slow link for distributed-training benchmarks: network namespaces joined by veth pairs.

Why namespaces: on one machine, gloo's ranks talk over loopback at memory speed, so a benchmark
of "IST vs DDP over a slow link" measures nothing about the link. Here every rank runs in its own
network namespace (``ip netns exec``) with one interface ``eth0`` (10.231.0.<rank+1>/24, a private
address that exists only inside these namespaces); each ``eth0`` is one end of a veth pair whose
other end is a port of a bridge in a hub namespace (a switch). Both ends of every pair are shaped
to ``rate`` (and ``delay``, split half per end), so each rank has a full-duplex link of that rate
to the switch, as machines on a switched Ethernet do. Nothing is created in the caller's own
namespace: the host's interfaces, routes and qdiscs are never touched.

Shaping: ``tc qdisc ... netem rate R delay D`` where the kernel has sch_netem; where it does not
(this machine's kernel: ``CONFIG_NET_SCH_NETEM is not set``) the rate is enforced by a token
bucket (``tbf``) and the delay cannot be added: :attr:`SlowNet.delay_applied_ms` is then 0 and
:attr:`SlowNet.shaper` says ``tbf`` (callers must report that, never the requested delay).

Cleanup is guaranteed as far as a process can guarantee it: :class:`SlowNet` is a context
manager; SIGINT/SIGTERM raise inside the ``with`` block (so ``__exit__`` runs); creation that
fails half way is undone; an ``atexit`` hook runs too. Closing kills the processes started in the
namespaces (by their process group, then anything left inside the namespace) and deletes the
namespaces, which destroys their veth pairs, bridge and qdiscs. A SIGKILLed owner cannot clean
up, so every namespace carries its owner's pid in its name (``cmpnl<pid>-...``) and
:func:`cleanup_stale` (run on every entry) deletes those whose owner is gone.

Needs root (CAP_NET_ADMIN + CAP_SYS_ADMIN) and iproute2 (``apt-get install iproute2``);
:func:`available` says why not otherwise, and the benchmark and tests skip with that reason.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

PREFIX = "cmpnl"
SUBNET = "10.231.0"  # private (RFC 1918), only inside our own namespaces


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def list_namespaces(prefix: str = PREFIX) -> list[str]:
    """Names of the network namespaces whose name starts with ``prefix``."""
    if shutil.which("ip") is None:
        return []
    res = _ip("netns", "list", check=False)
    return [ln.split()[0] for ln in res.stdout.splitlines() if ln.strip() and ln.split()[0].startswith(prefix)]


def _kill_inside(ns: str) -> None:
    """SIGKILL every process still inside namespace ``ns`` (only ours: we created the namespace)."""
    res = _ip("netns", "pids", ns, check=False)
    for tok in res.stdout.split():
        if tok.isdigit() and int(tok) != os.getpid():
            try:
                os.kill(int(tok), signal.SIGKILL)
            except ProcessLookupError:
                pass


def delete_namespace(ns: str) -> None:
    _kill_inside(ns)
    _ip("netns", "delete", ns, check=False)


def _owner(ns: str, prefix: str) -> int | None:
    head = ns[len(prefix) :].split("-", 1)[0]
    return int(head) if head.isdigit() else None


def cleanup_stale(prefix: str = PREFIX) -> list[str]:
    """Delete the namespaces named ``<prefix><pid>-...`` whose owner process is gone; returns them."""
    gone = []
    for ns in list_namespaces(prefix):
        pid = _owner(ns, prefix)
        if pid is None or not _pid_alive(pid):
            delete_namespace(ns)
            gone.append(ns)
    return gone


def available() -> tuple[bool, str]:
    """(True, "") when namespaces and a shaped link can be created here, else (False, why)."""
    if sys.platform != "linux":
        return False, "network namespaces need Linux"
    if shutil.which("ip") is None or shutil.which("tc") is None:
        return False, "iproute2 (ip, tc) is not installed: apt-get install iproute2"
    if os.geteuid() != 0:
        return False, "creating network namespaces needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN)"
    probe = f"{PREFIX}{os.getpid()}-probe"
    res = _ip("netns", "add", probe, check=False)
    if res.returncode != 0:
        return False, f"cannot create a network namespace: {res.stderr.strip()}"
    try:
        r = subprocess.run(
            [
                "tc",
                "-n",
                probe,
                "qdisc",
                "add",
                "dev",
                "lo",
                "root",
                "tbf",
                "rate",
                "100mbit",
                "burst",
                "32kb",
                "latency",
                "50ms",
            ],
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            return False, f"cannot shape a link (tc tbf): {r.stderr.strip()}"
    finally:
        delete_namespace(probe)
    return True, ""


@dataclass
class SlowNet:
    """``n`` rank namespaces on a switch whose every port is shaped to ``rate_mbit`` / ``delay_ms``.

    Use as ``with SlowNet(n=2, rate_mbit=100, delay_ms=2) as net: net.popen(0, argv)``.
    """

    n: int
    rate_mbit: float
    delay_ms: float = 0.0
    prefix: str = PREFIX
    shaper: str = ""  # "netem" or "tbf" once created
    delay_applied_ms: float = 0.0
    procs: list[subprocess.Popen] = field(default_factory=list)
    _created: list[str] = field(default_factory=list)
    _old_handlers: dict = field(default_factory=dict)
    _closed: bool = False

    # names ---------------------------------------------------------------------------------
    @property
    def tag(self) -> str:
        return f"{self.prefix}{os.getpid()}-{id(self) % 100000}"

    @property
    def hub(self) -> str:
        return f"{self.tag}-hub"

    def ns(self, i: int) -> str:
        return f"{self.tag}-r{i}"

    def addr(self, i: int) -> str:
        return f"{SUBNET}.{i + 1}"

    # lifecycle -----------------------------------------------------------------------------
    def __enter__(self) -> SlowNet:
        cleanup_stale(self.prefix)
        self._install_signals()
        atexit.register(self.close)
        try:
            self._create()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def raise_in_main(signum, frame):  # run __exit__ / finally blocks, then die of the signal's code
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            raise SystemExit(128 + signum)

        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old_handlers[sig] = signal.signal(sig, raise_in_main)

    def _run(self, *args: str) -> None:
        res = subprocess.run(list(args), capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"{' '.join(args)}: {res.stderr.strip()}")

    def _create(self) -> None:
        if self.n < 2:
            raise ValueError("a link needs at least 2 namespaces")
        if self.rate_mbit <= 0 or self.delay_ms < 0:
            raise ValueError(f"rate must be > 0 and delay >= 0 (got {self.rate_mbit} Mbit/s, {self.delay_ms} ms)")
        hub = self.hub
        self._run("ip", "netns", "add", hub)
        self._created.append(hub)
        self._run("ip", "-n", hub, "link", "add", "br0", "type", "bridge")
        self._run("ip", "-n", hub, "link", "set", "br0", "up")
        for i in range(self.n):
            ns = self.ns(i)
            self._run("ip", "netns", "add", ns)
            self._created.append(ns)
            self._run("ip", "-n", hub, "link", "add", f"p{i}", "type", "veth", "peer", "name", "eth0", "netns", ns)
            self._run("ip", "-n", hub, "link", "set", f"p{i}", "master", "br0")
            self._run("ip", "-n", hub, "link", "set", f"p{i}", "up")
            self._run("ip", "-n", ns, "addr", "add", f"{self.addr(i)}/24", "dev", "eth0")
            self._run("ip", "-n", ns, "link", "set", "eth0", "up")
            self._run("ip", "-n", ns, "link", "set", "lo", "up")
            self._shape(ns, "eth0")
            self._shape(hub, f"p{i}")

    def _shape(self, ns: str, dev: str) -> None:
        rate = f"{self.rate_mbit:g}mbit"
        half = self.delay_ms / 2
        if self.shaper in ("", "netem"):
            # limit: packets queued; large enough for a bandwidth-delay product at 10 Gbit/s
            res = subprocess.run(
                [
                    "tc",
                    "-n",
                    ns,
                    "qdisc",
                    "add",
                    "dev",
                    dev,
                    "root",
                    "netem",
                    "rate",
                    rate,
                    "delay",
                    f"{half:g}ms",
                    "limit",
                    "100000",
                ],
                capture_output=True,
                text=True,
            )
            if res.returncode == 0:
                self.shaper, self.delay_applied_ms = "netem", self.delay_ms
                return
            if "unknown" not in res.stderr.lower() or self.shaper == "netem":
                raise RuntimeError(f"tc netem on {ns}/{dev}: {res.stderr.strip()}")
        # no sch_netem in this kernel: a token bucket enforces the rate; no added delay
        self.shaper, self.delay_applied_ms = "tbf", 0.0
        rate_bytes = self.rate_mbit * 1e6 / 8
        burst = int(max(16_000, rate_bytes * 0.002))  # 2 ms of traffic (>= rate / HZ)
        self._run(
            "tc",
            "-n",
            ns,
            "qdisc",
            "add",
            "dev",
            dev,
            "root",
            "tbf",
            "rate",
            rate,
            "burst",
            str(burst),
            "latency",
            "100ms",
        )

    def close(self) -> None:
        """Kill what runs inside, delete the namespaces (and so their links and qdiscs). Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            for p in self.procs:
                if p.poll() is None:
                    try:
                        os.killpg(p.pid, signal.SIGTERM)
                    except ProcessLookupError:
                        pass
            deadline = time.monotonic() + 3
            for p in self.procs:
                try:
                    p.wait(timeout=max(0.05, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    try:
                        os.killpg(p.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    p.wait()
        finally:
            for ns in reversed(self._created):
                delete_namespace(ns)
            self._created.clear()
            for sig, h in self._old_handlers.items():
                signal.signal(sig, h)
            self._old_handlers.clear()
            atexit.unregister(self.close)

    # running things inside -----------------------------------------------------------------
    def command(self, i: int, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns(i), *argv]

    def popen(self, i: int, argv: list[str], **kw) -> subprocess.Popen:
        """Start ``argv`` in rank ``i``'s namespace, in its own process group (killed on close)."""
        p = subprocess.Popen(self.command(i, argv), start_new_session=True, **kw)
        self.procs.append(p)
        return p

    def gloo_env(self, i: int, *, port: int, base: dict | None = None) -> dict:
        """torch.distributed environment for rank ``i`` (rank 0 hosts the TCP store)."""
        e = dict(os.environ if base is None else base)
        e.update(
            RANK=str(i),
            WORLD_SIZE=str(self.n),
            LOCAL_RANK="0",
            LOCAL_WORLD_SIZE="1",
            MASTER_ADDR=self.addr(0),
            MASTER_PORT=str(port),
            GLOO_SOCKET_IFNAME="eth0",
        )
        return e


def measure_throughput(
    net: SlowNet, nbytes: int = 2_000_000, *, src: int = 1, dst: int = 0, timeout: float = 60.0
) -> float:
    """Send ``nbytes`` over TCP from namespace ``src`` to ``dst``; returns the measured Mbit/s.

    Timed at the receiver, from the first byte to the last (connection set-up excluded).
    """
    port = 29400
    server = (
        "import socket,time,sys\n"
        "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        f"s.bind(('{net.addr(dst)}',{port})); s.listen(1); print('ready', flush=True)\n"
        "c,_=s.accept(); n=0; t0=None\n"
        "while True:\n"
        "    b=c.recv(1<<20)\n"
        "    if not b: break\n"
        "    if t0 is None: t0=time.perf_counter()\n"
        "    n+=len(b)\n"
        "print(n, time.perf_counter()-t0, flush=True)\n"
    )
    client = (
        "import socket,sys\n"
        f"c=socket.create_connection(('{net.addr(dst)}',{port}), timeout={timeout})\n"
        f"c.sendall(b'x'*{nbytes}); c.close()\n"
    )
    srv = net.popen(dst, [sys.executable, "-c", server], stdout=subprocess.PIPE, text=True)
    assert srv.stdout is not None
    if srv.stdout.readline().strip() != "ready":
        raise RuntimeError("throughput server did not start")
    subprocess.run(net.command(src, [sys.executable, "-c", client]), check=True, timeout=timeout)
    out, _ = srv.communicate(timeout=timeout)
    n, secs = out.split()
    return int(n) * 8 / float(secs) / 1e6


def free_port() -> int:
    """A port number for the rank-0 store (inside the namespaces every port is free; any will do)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return 29500 + s.getsockname()[1] % 1000


if __name__ == "__main__":  # python benchmarks/netlink.py RATE_MBIT: create, measure, remove
    ok, why = available()
    if not ok:
        raise SystemExit(f"skipped: {why}")
    with SlowNet(n=2, rate_mbit=float(sys.argv[1]) if len(sys.argv) > 1 else 20) as net:
        mbit = measure_throughput(net)
        print(
            f"{net.shaper}: asked {net.rate_mbit:g} Mbit/s, measured {mbit:.1f} Mbit/s, "
            f"delay applied {net.delay_applied_ms:g} ms"
        )
    print("left:", list_namespaces())
