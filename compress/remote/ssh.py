"""A remote device reached with the OpenSSH client (the user's ``~/.ssh/config`` and keys).

Every command is an argument list; each remote word goes through :func:`shlex.quote` before the
remote shell sees it, so names with spaces, quotes, ``;`` or ``$(...)`` are inert. Files travel as
a tar stream over the same SSH connection settings (no ``scp`` path quoting pitfalls).

>>> h = RemoteHost("me@jetson.local")               # doctest: +SKIP
>>> with h.tempdir() as rdir:                        # doctest: +SKIP
...     h.put({"model.onnx": Path("model.onnx")}, rdir)
...     print(h.run(["ls", rdir]).stdout)
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import shutil
import subprocess
import tarfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from compress.core.errors import Failure, MissingDependency, UsageError
from compress.core.runs import atomic_path

TEMP_PREFIX = "compress-remote."
_TARGET = re.compile(r"^(?:[A-Za-z0-9._%+\-]+@)?[A-Za-z0-9._\-:\[\]]+$")
# ssh's own exit code for connection-level failures
SSH_ERROR = 255


def quote_command(argv: Sequence[str]) -> str:
    """The remote command line: every word quoted for a POSIX shell.

    >>> quote_command(["ls", "my model's dir; rm -rf ~"])
    'ls \\'my model\\'"\\'"\\'s dir; rm -rf ~\\''
    """
    if not argv:
        raise UsageError("empty remote command")
    return " ".join(shlex.quote(str(a)) for a in argv)


class RemoteHost:
    """One SSH destination. ``target`` is ``[user@]host`` or a ``Host`` alias of the ssh config.

    ``connect_timeout`` bounds the TCP connect and the SSH handshake (``ConnectTimeout``);
    ``BatchMode`` is on, so a missing key fails at once instead of prompting for a password.
    """

    def __init__(
        self,
        target: str,
        *,
        ssh_config: str | Path | None = None,
        port: int | None = None,
        identity: str | Path | None = None,
        connect_timeout: float = 10.0,
        python: str = "python3",
        options: Sequence[str] = (),
    ) -> None:
        target = target.strip()
        if not target or target.startswith("-") or not _TARGET.match(target):
            raise UsageError(f"invalid remote '{target}': expected user@host or an ssh config Host alias")
        if port is not None and not 0 < int(port) < 65536:
            raise UsageError(f"invalid SSH port {port}")
        if ssh_config is not None and not Path(ssh_config).expanduser().is_file():
            raise UsageError(f"ssh config not found: {ssh_config}")
        if identity is not None and not Path(identity).expanduser().is_file():
            raise UsageError(f"SSH identity file not found: {identity}")
        if connect_timeout <= 0:
            raise UsageError(f"connect timeout must be > 0 s, got {connect_timeout}")
        self.target = target
        self.ssh_config = Path(ssh_config).expanduser() if ssh_config else None
        self.port = port
        self.identity = Path(identity).expanduser() if identity else None
        self.connect_timeout = float(connect_timeout)
        self.python = python
        self.options = list(options)

    def __repr__(self) -> str:
        return f"RemoteHost({self.target!r})"

    # -- plumbing ---------------------------------------------------------------------------
    def ssh_argv(self) -> list[str]:
        """``ssh`` and its options, up to and including the destination."""
        exe = shutil.which("ssh")
        if exe is None:
            raise MissingDependency("the OpenSSH client 'ssh' is not installed; install openssh-client")
        argv = [exe]
        if self.ssh_config:
            argv += ["-F", str(self.ssh_config)]
        argv += [
            "-o",
            "BatchMode=yes",
            "-o",
            f"ConnectTimeout={max(1, round(self.connect_timeout))}",
            "-o",
            "ServerAliveInterval=15",
            "-o",
            "ServerAliveCountMax=4",
        ]
        if self.port:
            argv += ["-p", str(int(self.port))]
        if self.identity:
            argv += ["-i", str(self.identity)]
        for opt in self.options:
            argv += ["-o", opt]
        return [*argv, "--", self.target]

    def _fail(self, res: subprocess.CompletedProcess[bytes], what: str) -> Failure:
        err = res.stderr.decode(errors="replace").strip().splitlines()
        last = err[-1] if err else f"exit code {res.returncode}"
        if res.returncode == SSH_ERROR:
            return Failure(
                f"cannot reach {self.target} over SSH: {last}; check the host name, that the device "
                "is on and reachable, and your ~/.ssh/config and keys (BatchMode: no password prompts)"
            )
        return Failure(f"{what} failed on {self.target} (exit {res.returncode}): {last}")

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float | None = 600.0,
        check: bool = True,
        input: bytes | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run ``argv`` on the device (words quoted); ``env`` is set with ``env NAME=VALUE ...``."""
        words = list(argv)
        if env:
            for k in env:
                if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", k):
                    raise UsageError(f"invalid environment variable name {k!r}")
            words = ["env", *[f"{k}={v}" for k, v in env.items()], *words]
        cmd = [*self.ssh_argv(), quote_command(words)]
        limit = None if timeout is None else timeout + self.connect_timeout
        try:
            res = subprocess.run(
                cmd,
                input=input,
                capture_output=True,
                timeout=limit,
                check=False,
                stdin=None if input is not None else subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise Failure(
                f"{self.target}: '{words[0]}' did not finish within {limit:.0f} s "
                "(the device stopped answering, or the job is too long; raise the timeout)"
            ) from None
        if check and res.returncode != 0:
            raise self._fail(res, f"'{words[0]}'")
        return res

    def check(self) -> None:
        """Fail with one clear line when the device cannot be reached or refuses the key."""
        self.run(["true"], timeout=self.connect_timeout + 5)

    # -- files --------------------------------------------------------------------------------
    @contextlib.contextmanager
    def tempdir(self, *, keep: bool = False) -> Iterator[str]:
        """A fresh directory on the device (``mktemp -d``), removed on exit unless ``keep``."""
        res = self.run(["mktemp", "-d", f"/tmp/{TEMP_PREFIX}XXXXXXXX"], timeout=60)
        path = res.stdout.decode().strip()
        if not path.startswith(f"/tmp/{TEMP_PREFIX}") or "\n" in path:
            raise Failure(f"{self.target}: mktemp returned an unexpected path {path!r}")
        try:
            yield path
        finally:
            if not keep:
                self.remove(path)

    def remove(self, path: str) -> None:
        """Remove a directory this layer created (refuses anything outside its temp prefix)."""
        if not path.startswith(f"/tmp/{TEMP_PREFIX}") or "/../" in path or path.endswith("/.."):
            raise UsageError(f"refusing to remove {path!r} on {self.target}: not a compress temp directory")
        self.run(["rm", "-rf", "--", path], timeout=120, check=False)

    def put(self, files: Mapping[str, str | Path], remote_dir: str, *, timeout: float = 600.0) -> None:
        """Copy local files to ``remote_dir``; keys are the relative names they get there."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for arcname, local in files.items():
                rel = Path(arcname)
                if rel.is_absolute() or ".." in rel.parts:
                    raise UsageError(f"remote file name must be relative without '..': {arcname!r}")
                p = Path(local)
                if not p.is_file():
                    raise UsageError(f"file to copy not found: {p}")
                tar.add(str(p), arcname=rel.as_posix(), recursive=False)
        self.run(["tar", "-x", "-m", "-f", "-", "-C", remote_dir], input=buf.getvalue(), timeout=timeout)

    def read(self, remote_path: str, *, timeout: float = 600.0) -> bytes:
        return self.run(["cat", "--", remote_path], timeout=timeout).stdout

    def get(self, remote_path: str, local: str | Path, *, timeout: float = 600.0) -> Path:
        """Copy one remote file to ``local`` (written atomically)."""
        data = self.read(remote_path, timeout=timeout)
        local = Path(local)
        with atomic_path(local) as tmp:
            tmp.write_bytes(data)
        return local

    def exists(self, remote_path: str) -> bool:
        return self.run(["test", "-e", remote_path], timeout=60, check=False).returncode == 0


def parse_remote(spec: str, **kwargs: object) -> RemoteHost:
    """``user@host[:port]`` (or an ssh config alias) -> :class:`RemoteHost`."""
    m = re.match(r"^(.*?):(\d+)$", spec.strip())
    if m and "[" not in spec:
        return RemoteHost(m.group(1), port=int(m.group(2)), **kwargs)  # type: ignore[arg-type]
    return RemoteHost(spec, **kwargs)  # type: ignore[arg-type]


def env_ssh_config() -> str | None:
    """``COMPRESS_SSH_CONFIG``: an ssh config file used instead of the default one (tests, CI)."""
    return os.environ.get("COMPRESS_SSH_CONFIG") or None
