"""Shared pytest fixtures.

``sshd``: a real OpenSSH server on 127.0.0.1 (free high port, throwaway host and client keys in a
temp dir, minimal sshd_config), with an ``ssh_config`` for the client. Tests that use it skip with
a clear reason where ``/usr/sbin/sshd`` or ``ssh-keygen`` is missing (``make setup`` installs
``openssh-server``).
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

SSHD = "/usr/sbin/sshd"


@dataclass
class SshServer:
    host: str  # the Host alias in ``ssh_config``
    user: str
    port: int
    ssh_config: Path  # pass as RemoteHost(ssh_config=...) or COMPRESS_SSH_CONFIG
    key: Path  # client private key
    root: Path  # temp dir holding keys and configs

    @property
    def target(self) -> str:
        return f"{self.user}@{self.host}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited with code {proc.returncode}: {proc.stderr.read().decode()[-500:]}")  # type: ignore[union-attr]
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError("sshd did not start listening within 10 s")


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> SshServer:
    """A real sshd on 127.0.0.1 for remote-device tests (session-scoped; stopped at the end)."""
    keygen = shutil.which("ssh-keygen")
    if not os.path.exists(SSHD) or keygen is None or shutil.which("ssh") is None:
        pytest.skip(
            "OpenSSH server/client not installed (/usr/sbin/sshd, ssh, ssh-keygen): "
            "apt-get install openssh-server openssh-client, or `make setup`"
        )
    root = tmp_path_factory.mktemp("sshd")
    os.chmod(root, 0o700)
    for name in ("host_key", "client_key"):
        subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(root / name)], check=True)
    auth = root / "authorized_keys"
    auth.write_text((root / "client_key.pub").read_text())
    auth.chmod(0o600)
    port = _free_port()
    user = getpass.getuser()
    cfg = root / "sshd_config"
    cfg.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {root / 'host_key'}",
                f"PidFile {root / 'sshd.pid'}",
                f"AuthorizedKeysFile {auth}",
                "UsePAM no",
                "StrictModes no",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PubkeyAuthentication yes",
                "PermitRootLogin yes",
                "AllowTcpForwarding no",
                "X11Forwarding no",
                "PrintMotd no",
                "LogLevel ERROR",
                "Subsystem sftp internal-sftp",
                "",
            ]
        )
    )
    known = root / "known_hosts"
    ktype, kdata = (root / "host_key.pub").read_text().split()[:2]
    known.write_text(f"127.0.0.1,[127.0.0.1]:{port} {ktype} {kdata}\n")
    client = root / "ssh_config"
    client.write_text(
        "\n".join(
            [
                "Host compress-test-device",
                "  HostName 127.0.0.1",
                f"  Port {port}",
                f"  User {user}",
                f"  IdentityFile {root / 'client_key'}",
                "  IdentitiesOnly yes",
                f"  UserKnownHostsFile {known}",
                "  StrictHostKeyChecking yes",
                "  HostKeyAlias 127.0.0.1",
                "  LogLevel ERROR",
                "",
            ]
        )
    )
    os.makedirs("/run/sshd", exist_ok=True)  # privilege-separation dir some builds insist on
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_port(port, proc)
    except RuntimeError as err:
        proc.kill()
        pytest.skip(f"could not start a test sshd: {err}")
    yield SshServer(
        host="compress-test-device", user=user, port=port, ssh_config=client, key=root / "client_key", root=root
    )
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()


def make_tiny_onnx(path: Path, *, hw: int = 32, channels: int = 8, seed: int = 0, batch: int | str = 1) -> Path:
    """A tiny single-input conv net (Conv-Relu-GAP-Gemm) as ONNX, deterministic for ``seed``."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((channels, 3, 3, 3)) * 0.2).astype(np.float32)
    wf = (rng.standard_normal((10, channels)) * 0.2).astype(np.float32)
    inits = [
        numpy_helper.from_array(w, "w"),
        numpy_helper.from_array(np.zeros(channels, np.float32), "b"),
        numpy_helper.from_array(wf, "wf"),
        numpy_helper.from_array(np.zeros(10, np.float32), "bf"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "w", "b"], ["c"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, hw, hw])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny ONNX model (1x3x32x32 -> 1x10) shared by runtime tests."""
    return make_tiny_onnx(tmp_path_factory.mktemp("tiny") / "tiny.onnx")
