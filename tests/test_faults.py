"""Fault injection: storage faults (read-only output and cache, a full file system) give one-line
errors with the right exit code and leave nothing half-written; SIGKILL at seeded random moments of
`profile`, `train`, `export` and `pipeline`, then the next run, leaves whole outputs and no temp files.

Read-only and full file systems are real tmpfs mounts (`mount -t tmpfs`; CI runs as root): the tests
skip, saying why, where mounting is not allowed. The SIGKILL cases are `slow` (whole processes are
started, killed and run again); docs/run-directories.md lists what runs where.
"""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
import _export_helpers  # noqa: E402,F401 - registers exporttest:NAME

from compress.cli.main import app  # noqa: E402
from compress.core.runs import is_temp_name  # noqa: E402
from compress.core.storage import StorageError, describe, mark_user_path  # noqa: E402

pytestmark = pytest.mark.faults
runner = CliRunner()
COMPRESS = str(Path(sys.executable).parent / "compress")


# ---- helpers -----------------------------------------------------------------------------------


class Mounts:
    """tmpfs mounts made by a test, unmounted at its end."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.points: list[Path] = []

    def tmpfs(self, name: str, *, size: str = "4m", ro: bool = False) -> Path:
        p = self.root / name
        p.mkdir(parents=True, exist_ok=True)
        opts = f"size={size}" + (",ro" if ro else "")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(p)], capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(
                f"cannot mount a tmpfs here ({(r.stderr or r.stdout).strip() or 'mount failed'}); "
                "these storage-fault tests need root (CI runs them as root)"
            )
        self.points.append(p)
        return p

    def remount(self, p: Path, opts: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{opts}", str(p)], check=True)

    def close(self) -> None:
        for p in reversed(self.points):
            subprocess.run(["umount", "-l", str(p)], capture_output=True)


@pytest.fixture
def mounts(tmp_path):
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root); run the storage-fault tests as root")
    m = Mounts(tmp_path / "mnt")
    yield m
    m.close()


def one_error_line(stderr: str) -> str:
    """The single ``error:`` line of a CLI failure (and no traceback, no "this is a bug")."""
    errors = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, stderr
    assert "this is a bug" not in stderr and "Traceback" not in stderr, stderr
    return errors[0]


def temp_leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if is_temp_name(p.name)]


def wide_model():
    """~2 MB of weights: big enough to fill a small tmpfs between the ONNX file and the OpenVINO IR."""
    import torch
    import torch.nn as nn

    from compress.models import LoadedModel

    class Wide(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)
            self.fc = nn.Linear(768, 640)
            self.out = nn.Linear(640, 10)

        def forward(self, x):
            return self.out(torch.relu(self.fc(self.conv(x).flatten(1))))

    torch.manual_seed(0)
    return LoadedModel(module=Wide().eval(), input_shape=(3, 16, 16), num_classes=10, source={"kind": "test-wide"})


# ---- the mapping itself --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code,needle",
    [
        (errno.EROFS, "is on a read-only file system"),
        (errno.EACCES, "permission denied in"),
        (errno.EPERM, "permission denied in"),
        (errno.ENOSPC, "no space left on device writing"),
        (errno.EDQUOT, "disk quota exceeded in"),
    ],
)
def test_every_storage_errno_is_one_line_with_the_right_exit_code(tmp_path, code, needle):
    chosen = tmp_path / "chosen"
    chosen.mkdir()
    mark_user_path(chosen)
    err = OSError(code, os.strerror(code), str(chosen / "f.json"))
    user = describe(err, needed=3 << 20)
    assert isinstance(user, StorageError) and user.exit_code == 2 and needle in str(user)
    assert "\n" not in str(user) and "choose another --out" in str(user)
    other = describe(OSError(code, os.strerror(code), str(tmp_path / "elsewhere" / "f")))
    assert other is not None and other.exit_code == 1 and needle in str(other)
    if code == errno.ENOSPC:
        assert "free" in str(user) and "needs about 3.0 MiB" in str(user)
    assert describe(OSError(errno.ENOENT, "No such file", "x")) is None  # not a storage fault


# ---- read-only output directories and caches -----------------------------------------------------


def _argv(cmd: str, out: Path, tmp_path: Path) -> list[str]:
    yaml = tmp_path / "p.yaml"
    yaml.write_text("name: t\nsupernet: default\ndata: {name: digits}\ndevices: [{name: local-cpu}]\n")
    return {
        "pipeline": ["pipeline", str(yaml), "--out", str(out)],
        "train": ["train", "--family", "convnext-small-input", "--data", "digits", "--epochs", "1", "--out", str(out)],
        "export": ["export", "exporttest:tiny", "--out", str(out)],
        "search": ["search", "--device", "local-cpu", "--out", str(out)],
        "bench": ["bench", "exporttest:tiny", "--out", str(out)],
        "profile": ["profile", "--runtime", "onnxruntime", "--tables", str(out)],
    }[cmd]


CMDS = ["pipeline", "train", "export", "search", "bench", "profile"]


@pytest.mark.parametrize("cmd", CMDS)
def test_read_only_output_directory(mounts, tmp_path, cmd):
    ro = mounts.tmpfs("ro", ro=True, size="1m")
    r = runner.invoke(app, _argv(cmd, ro / "run", tmp_path))
    line = one_error_line(r.stderr)
    assert r.exit_code == 2, r.stderr
    if cmd == "pipeline":  # the pipeline's preflight lists every problem of the YAML, one per line
        assert "read-only file system" in r.stderr.lower() and str(ro) in r.stderr and "--out" in r.stderr
        return
    assert "read-only file system" in line and str(ro) in line
    assert ("--tables" if cmd == "profile" else "--out") in line


def test_read_only_cache_and_temp_dir(mounts, tmp_path, monkeypatch):
    import tempfile

    ro = mounts.tmpfs("ro", ro=True, size="1m")
    monkeypatch.delenv("COMPRESS_TABLES", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(ro))
    r = runner.invoke(app, ["profile", "--runtime", "onnxruntime"])
    line = one_error_line(r.stderr)
    assert r.exit_code == 1 and "read-only file system" in line and "COMPRESS_TABLES" in line, r.stderr
    # a read-only temp directory: the block timer's work directory cannot be made
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(tempfile, "tempdir", str(ro))
    r = runner.invoke(
        app,
        [
            "profile",
            "--runtime",
            "onnxruntime",
            "--tables",
            str(tmp_path / "t"),
            "--supernet",
            "convnext-small-input",
            "--resolution",
            "32",
            "-n",
            "2",
            "--warmup",
            "1",
            "--calibrate",
            "0",
        ],
    )
    line = one_error_line(r.stderr)
    assert r.exit_code == 1 and "read-only file system" in line and "TMPDIR" in line, r.stderr


# ---- a full file system --------------------------------------------------------------------------


def test_full_disk_during_openvino_export_then_the_next_run(mounts):
    """The IR does not fit after the ONNX file: a one-line no-space error (free space and size needed),
    no `openvino/` pair under its final name; with space again, the same command completes and
    leaves no temp file."""
    from compress.export.api import export_model

    fs = mounts.tmpfs("small", size="3m")
    out = fs / "run"
    with pytest.raises(StorageError) as ei:
        export_model(
            wide_model(),
            out=out,
            formats=["onnx", "openvino"],
            samples=4,
            threads=1,
            exporter="legacy",
            parity=False,
            simplify=False,
            preflight=False,
        )
    msg = str(ei.value)
    assert ei.value.exit_code == 2 and "\n" not in msg
    assert msg.startswith(f"no space left on device writing {out / 'openvino' / 'model.bin'}")
    assert "free" in msg and "needs about" in msg and "choose another --out" in msg
    assert not (out / "openvino" / "model.xml").exists() and not (out / "openvino" / "model.bin").exists()
    assert not temp_leftovers(out)
    mounts.remount(fs, "size=16m")
    res = export_model(
        wide_model(),
        out=out,
        formats=["onnx", "openvino"],
        samples=4,
        threads=1,
        exporter="legacy",
        parity=False,
        simplify=False,
        preflight=False,
    )
    assert [f["format"] for f in res.formats] == ["onnx", "openvino"]
    import openvino as ov

    ov.Core().read_model(str(out / "openvino" / "model.xml"))
    assert not temp_leftovers(out)


def test_full_disk_cli_one_line(mounts, tmp_path):
    """Through the CLI: a full file system under --out is exit 2 and one line, never "this is a bug"."""
    fs = mounts.tmpfs("tiny", size="64k")
    (fs / "filler").write_bytes(b"\0" * (60 << 10))
    r = runner.invoke(
        app, ["export", "exporttest:tiny", "--out", str(fs / "run"), "--samples", "4", "--exporter", "legacy"]
    )
    line = one_error_line(r.stderr)
    assert r.exit_code == 2 and "no space left on device" in line and "free" in line, r.stderr


def test_full_disk_during_training_then_resume(mounts, tmp_path):
    """Training into a file system that fills up: one line (exit 2) when a checkpoint no longer fits;
    with space again `--resume` completes, and no checkpoint temp file is left."""
    from _train_fixtures import tiny_args

    fs = mounts.tmpfs("train", size="1m")
    out = fs / "run"
    argv = ["train", *tiny_args(out, epochs=2, checkpoint_every=2)]
    (fs / "filler").write_bytes(b"\0" * (900 << 10))  # room for the small files, not for a checkpoint
    r = runner.invoke(app, argv)
    line = one_error_line(r.stderr)
    assert r.exit_code == 2 and "no space left on device" in line and str(fs) in line, r.stderr
    (fs / "filler").unlink()
    r = runner.invoke(app, [*argv, "--resume"])
    assert r.exit_code == 0, r.stderr
    assert (out / "supernet.safetensors").is_file() and not temp_leftovers(out)


# ---- permission denied (a real EACCES) and a quota (EDQUOT, simulated) ---------------------------

NO_DAC = ["--inh-caps=-dac_override,-dac_read_search", "--bounding-set=-dac_override,-dac_read_search"]


def unprivileged() -> list[str]:
    """A command prefix under which file permissions deny: as root, `setpriv` drops the capabilities
    that override them (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH) while the user stays root, so the
    .venv (which may live under root's home) still runs. A normal user needs no prefix."""
    if os.geteuid() != 0:
        return []
    import shutil

    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv (util-linux): cannot drop CAP_DAC_OVERRIDE, so chmod never denies")
    probe = subprocess.run(["setpriv", *NO_DAC, "--", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"setpriv cannot drop CAP_DAC_OVERRIDE here ({probe.stderr.strip()}); chmod never denies root")
    return ["setpriv", *NO_DAC, "--"]


@pytest.fixture
def locked(tmp_path):
    """A directory nobody may write into (mode 0555), restored at the end so pytest can clean up."""
    d = tmp_path / "locked"
    d.mkdir()
    d.chmod(0o555)
    yield d
    d.chmod(0o755)


DENIED = """
import json, os, sys
import _export_helpers
from typer.testing import CliRunner
from compress.cli.main import app
res = {}
for name, (argv, env) in json.loads(sys.argv[1]).items():
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    r = CliRunner().invoke(app, argv)
    for k, v in saved.items():
        os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    res[name] = [r.exit_code, r.stderr]
print(json.dumps(res))
"""


def test_permission_denied_is_one_line(locked, tmp_path):
    """A real EACCES (no monkeypatching): the commands run without the capability to override file
    permissions. Into a directory they may not write: one line naming it, exit 2, for train, export,
    search, bench, profile --tables and pipeline; the per-user table cache not writable: exit 1,
    naming COMPRESS_TABLES. (One child process runs them all, to import torch once.)"""
    prefix = unprivileged()
    probe = subprocess.run([*prefix, "touch", str(locked / "x")], capture_output=True, text=True)
    assert probe.returncode != 0 and "Permission denied" in probe.stderr  # the set-up denies for real
    cases = {cmd: [_argv(cmd, locked / "run", tmp_path), {}] for cmd in CMDS}
    cases["cache"] = [["profile", "--runtime", "onnxruntime"], {"XDG_CACHE_HOME": str(locked), "COMPRESS_TABLES": ""}]
    env = {k: v for k, v in ENV.items() if k != "COMPRESS_TABLES"}
    r = subprocess.run(
        [*prefix, sys.executable, "-c", DENIED, json.dumps(cases)], capture_output=True, text=True, env=env, timeout=600
    )
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    for cmd in CMDS:
        code, err = got[cmd]
        assert code == 2, (cmd, err)
        if cmd == "pipeline":  # the preflight lists every problem of the YAML, one per line
            assert "permission denied" in err.lower() and str(locked) in err and "this is a bug" not in err, err
            continue
        line = one_error_line(err)
        assert f"permission denied in {locked}" in line, (cmd, line)
        assert ("--tables" if cmd == "profile" else "--out") in line, (cmd, line)
    code, err = got["cache"]
    line = one_error_line(err)
    assert code == 1 and "permission denied" in line and "COMPRESS_TABLES" in line, err
    assert not (locked / "run").exists()


def test_quota_exceeded_while_writing_an_export_is_one_line(tmp_path, monkeypatch):
    """EDQUOT needs a quota-enabled file system, which cannot be set up here: simulated by the OS
    call that fails (the rename of model.onnx into place raises EDQUOT). One line, exit 2, no
    model.onnx under its final name and no temp file."""
    real = os.replace

    def replace(src, dst, *a, **kw):
        if str(dst).endswith("model.onnx"):
            raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT), str(dst))
        return real(src, dst, *a, **kw)

    monkeypatch.setattr(os, "replace", replace)
    out = tmp_path / "run"
    r = runner.invoke(app, ["export", "exporttest:tiny", "--out", str(out), "--samples", "4", "--exporter", "legacy"])
    line = one_error_line(r.stderr)
    assert r.exit_code == 2 and f"disk quota exceeded in {out}" in line and "--out" in line, r.stderr
    assert not (out / "model.onnx").exists() and not temp_leftovers(out)


# ---- leftovers of a killed run: removed by the next run into the same place, nothing else -------


def test_next_run_removes_only_the_toolkits_temp_files(tmp_path):
    from compress.core.runs import claim_run_dir, release_run_dir

    d = tmp_path / "run"
    ours = [
        d / ".model.onnx.k3j_x9a0.onnx.tmp",
        d / "checkpoints" / ".step-00000005.pt.abcd1234.pt.tmp",
        d / ".manifest.json.zz00yy11.json.tmp",
        d / "stages" / "export.partial" / ".model.onnx.q1w2e3r4.onnx.tmp",
    ]
    ours_dirs = [d / ".openvino.a1b2c3d4.tmpdir", d / ".openvino-abcdefgh", d / "stages" / ".prune.old-4242"]
    mine = [
        d / "model.onnx.tmp",
        d / ".hidden",
        d / "notes.tmp",
        d / ".model.onnx.abc.tmp",
        d / "checkpoints" / "step-00000005.pt",
        d / ".step.pt.ABCDEFGH.tmp",
    ]
    for p in ours + mine:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    for p in ours_dirs:
        p.mkdir(parents=True)
        (p / "model.bin").write_bytes(b"x")
    claim_run_dir(d, command="next run")
    release_run_dir(d)
    assert not [p for p in ours + ours_dirs if p.exists()]
    assert all(p.exists() for p in mine)  # never anything that is not the toolkit's own temp name


def test_a_crash_inside_a_directory_swap_is_undone(tmp_path):
    """Killed between the two renames of atomic_dir: no `openvino/`, a complete `.openvino.*.old`;
    the next run puts the old pair back (whole) before it writes."""
    from compress.core.runs import atomic_dir, claim_run_dir, release_run_dir

    d = tmp_path / "run"
    with atomic_dir(d / "openvino") as t:
        (t / "model.xml").write_text("old xml")
        (t / "model.bin").write_bytes(b"old bin")
    os.replace(d / "openvino", d / ".openvino.abcd1234.old")
    claim_run_dir(d, command="next run")
    release_run_dir(d)
    assert (d / "openvino" / "model.xml").read_text() == "old xml" and (d / "openvino" / "model.bin").exists()


def test_atomic_dir_keeps_the_old_set_when_writing_fails(tmp_path):
    from compress.core.runs import atomic_dir

    target = tmp_path / "bundle"
    with atomic_dir(target) as t:
        (t / "a").write_text("1")
        (t / "b").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as t:
            (t / "a").write_text("2")
            raise RuntimeError("killed halfway")
    assert (target / "a").read_text() == "1" and (target / "b").read_text() == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_tensorrt_bundle_is_replaced_as_a_unit(tmp_path, monkeypatch):
    import numpy as np

    import compress.export.tensorrt as trt
    from compress.core.errors import UsageError
    from compress.export.api import export_model

    export_model(
        "exporttest:tiny",
        out=tmp_path / "src",
        formats=["onnx"],
        parity=False,
        preflight=False,
        simplify=False,
        exporter="legacy",
    )
    onnx = tmp_path / "src" / "model.onnx"
    out = tmp_path / "b"
    kw = dict(precision="fp32", input_shape=(1, 3, 16, 16), dynamic=False)
    first = trt.write_bundle(onnx, out, **kw)
    (out / "timing.cache").write_bytes(b"gpu timings")  # what a build on the device adds
    before = (out / "bundle.json").read_text()
    monkeypatch.setattr(trt, "_readme", lambda cfg: (_ for _ in ()).throw(RuntimeError("killed")))
    with pytest.raises(RuntimeError):
        trt.write_bundle(
            onnx,
            out,
            **kw,
            parity_inputs=np.zeros((1, 3, 16, 16), np.float32),
            parity_reference=np.zeros((1, 5), np.float32),
        )
    assert (out / "bundle.json").read_text() == before and not (out / "parity_inputs.npy").exists()
    assert not temp_leftovers(tmp_path)
    monkeypatch.undo()
    second = trt.write_bundle(
        onnx,
        out,
        **kw,
        parity_inputs=np.zeros((1, 3, 16, 16), np.float32),
        parity_reference=np.zeros((1, 5), np.float32),
    )
    assert (out / "parity_inputs.npy").exists() and (out / "timing.cache").read_bytes() == b"gpu timings"
    assert {p.name for p in second["files"]} >= {p.name for p in first["files"]}
    (out / "mine.txt").write_text("user file")
    with pytest.raises(UsageError, match="holds other files"):
        trt.write_bundle(onnx, out, **kw)


def test_temp_dirs_of_dead_processes_are_removed(tmp_path, monkeypatch):
    import tempfile

    from compress.core.runs import temp_workdir

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    gone = tmp_path / f"compress-latency-{dead_pid}-abcd1234"
    alive = tmp_path / f"compress-latency-{os.getppid()}-abcd1234"
    legacy = tmp_path / "compress-latency-x1y2z3w4"  # no pid in the name: cannot tell, kept
    for p in (gone, alive, legacy):
        p.mkdir()
    with temp_workdir("compress-latency-") as td:
        assert Path(td).name.startswith(f"compress-latency-{os.getpid()}-")
    assert not gone.exists() and alive.exists() and legacy.exists()


# ---- SIGKILL at seeded random moments, then the next run (slow) ----------------------------------

TESTS = Path(__file__).parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(TESTS), str(TESTS.parent)])}
# `compress` with the tests' exporttest:NAME models registered
CLI = [sys.executable, "-c", "import _export_helpers; from compress.cli.main import main; main()"]


def run_killed(argv: list[str], *, at: float, cwd: Path | None = None) -> subprocess.CompletedProcess | None:
    """Start ``argv``; SIGKILL it ``at`` seconds later. None if killed, else the finished process."""
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=cwd)
    try:
        out, err = p.communicate(timeout=at)
        return subprocess.CompletedProcess(argv, p.returncode, out, err)
    except subprocess.TimeoutExpired:
        os.kill(p.pid, signal.SIGKILL)
        p.communicate()
        return None


def timed(argv: list[str]) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.perf_counter()
    r = subprocess.run(argv, capture_output=True, text=True, env=ENV, timeout=900)
    return r, time.perf_counter() - t0


def assert_final_names_load(out: Path) -> None:
    """Every artefact under its final name loads (a kill never leaves half a file or half a pair)."""
    import onnx

    for p in out.rglob("*"):
        if is_temp_name(p.name) or any(is_temp_name(q.name) for q in p.parents):
            continue
        if p.suffix == ".onnx":
            onnx.load(str(p))
        elif p.suffix == ".json":
            json.loads(p.read_text())
        elif p.name == "model.xml":
            import openvino as ov

            assert (p.parent / "model.bin").is_file(), f"{p} without its model.bin"
            ov.Core().read_model(str(p))
        elif p.name == "model.bin":
            assert (p.parent / "model.xml").is_file(), f"{p} without its model.xml"


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_export_killed_at_a_random_moment_then_rerun(tmp_path, seed):
    out = tmp_path / "run"

    def argv_for(d: Path) -> list[str]:
        return [
            *CLI,
            "export",
            "exporttest:digits",
            "--format",
            "onnx,openvino",
            "--out",
            str(d),
            "--samples",
            "8",
            "--threads",
            "1",
            "--exporter",
            "legacy",
            "--json",
        ]

    argv = argv_for(out)
    ref, wall = timed(argv_for(tmp_path / "ref"))
    assert ref.returncode == 0, ref.stderr[-2000:]
    at = random.Random(seed).uniform(0.3, 0.95) * wall
    killed = run_killed(argv, at=at)
    if out.exists():
        assert_final_names_load(out)
    r = subprocess.run(argv, capture_output=True, text=True, env=ENV, timeout=900)
    assert r.returncode == 0, (killed, r.stderr[-2000:])
    assert json.loads(r.stdout)["passed"] is True
    assert not temp_leftovers(out)
    assert_final_names_load(out)
    # deterministic: the same ONNX bytes as the uninterrupted run
    assert (out / "model.onnx").read_bytes() == (tmp_path / "ref" / "model.onnx").read_bytes()


TRAIN = """
import sys
from _train_fixtures import tiny_args
from compress.cli.main import main
sys.argv = ["compress", "train", *tiny_args(sys.argv[1], epochs=6), *sys.argv[2:]]
main()
"""


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_train_killed_at_a_random_moment_resumes_bit_identically(tmp_path, seed):
    from _train_fixtures import load_state

    ref, wall = timed([sys.executable, "-c", TRAIN, str(tmp_path / "ref")])
    assert ref.returncode == 0, ref.stderr[-2000:]
    out = tmp_path / "run"
    at = random.Random(seed).uniform(0.4, 0.9) * wall
    run_killed([sys.executable, "-c", TRAIN, str(out)], at=at)  # killed, or finished first: either way resumable
    r = subprocess.run(
        [sys.executable, "-c", TRAIN, str(out), "--resume", "--json"],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    a, b = load_state(tmp_path / "ref" / "supernet.safetensors"), load_state(out / "supernet.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a), f"killed at {at:.1f} s: weights differ"
    assert not temp_leftovers(out)
    assert json.loads(r.stdout)["steps"] == json.loads(ref.stdout)["steps"] if ref.stdout.strip() else True


PROFILE_RUN = """
import json, sys
import torch
torch.set_num_threads(1)
from test_latency_profile import tiny_space
from compress.latency.profile import profile_table
r = profile_table(device="local-cpu", runtime="onnxruntime", supernet=tiny_space(), tables=sys.argv[1], threads=1,
                  iterations=40, warmup=2, calibrate=0)
print(json.dumps({"measured_now": r.measured_now, "already": r.already_measured, "signatures": r.signatures,
                  "path": r.path}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_profile_killed_at_a_random_moment_then_completed(tmp_path, seed, monkeypatch):
    from compress.latency.table import LatencyTable

    ref, wall = timed([sys.executable, "-c", PROFILE_RUN, str(tmp_path / "ref")])
    assert ref.returncode == 0, ref.stderr[-2000:]
    want = json.loads(ref.stdout.strip().splitlines()[-1])
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    ENV["TMPDIR"] = str(tmpdir)
    try:
        at = random.Random(seed).uniform(0.4, 0.95) * wall
        killed = run_killed([sys.executable, "-c", PROFILE_RUN, str(tmp_path / "t")], at=at)
        table_dir = tmp_path / "t" / "local-cpu"
        if table_dir.is_dir():
            for f in table_dir.glob("[!.]*.json"):
                LatencyTable.load(f)  # the table under its final name always loads
        r = subprocess.run(
            [sys.executable, "-c", PROFILE_RUN, str(tmp_path / "t")],
            capture_output=True,
            text=True,
            env=ENV,
            timeout=900,
        )
    finally:
        ENV.pop("TMPDIR")
    assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["signatures"] == want["signatures"] == got["measured_now"] + got["already"]
    if killed is not None:  # it finished before the kill: nothing left to measure
        assert got["measured_now"] == 0
    table = LatencyTable.load(got["path"])
    assert set(table.measured()) == set(LatencyTable.load(want["path"]).measured())  # the same blocks, all measured
    assert not temp_leftovers(tmp_path / "t")
    assert not list(tmpdir.glob("compress-latency-*"))  # the killed run's work dir went with the next run


PIPE_YAML = """
name: faults
seed: 0
supernet: {ckpt}
data: {{name: digits}}
devices:
  - {{name: local-cpu, profile: true, budget_ms: 5}}
profiling: {{iterations: 2, warmup: 1, calibrate: 0, threads: 1, resolutions: [12]}}
search: {{population: 8, generations: 3, predictor_samples: 10, calib_images: 32, val_images: 60}}
prune: {{method: updp, blocks: 1, epochs: 1, max_steps: 2, train_limit: 256, latency: macs-estimate}}
export: {{formats: [onnx, openvino], samples: 8}}
bench: {{runtimes: [onnxruntime], iterations: 5, warmup: 1, rounds: 1, threads: 1}}
gates: {{min_top1: 1, max_parity_err: 1.0e-3}}
"""


def _verdicts(run: Path) -> dict:
    s = json.loads((run / "summary.json").read_text())
    chk = json.loads((run / "stages" / "check" / "stage.json").read_text())["result"]
    return {
        "search": {d: v["config"] for d, v in s["search"].items()},
        "top1": s["accuracy"].get("top1"),
        "gates": [(g["name"], g["passed"]) for g in chk["gates"]],
    }


@pytest.mark.slow
def test_pipeline_killed_at_random_moments_resumes_to_the_same_result(tmp_path):
    from _search_fixtures import make_checkpoint

    ckpt = make_checkpoint(tmp_path / "tiny.safetensors", train_steps=10)
    y = tmp_path / "p.yaml"
    y.write_text(PIPE_YAML.format(ckpt=ckpt))
    ref, wall = timed([COMPRESS, "pipeline", str(y), "--out", str(tmp_path / "ref")])
    assert ref.returncode == 0, ref.stderr[-2000:]
    out = tmp_path / "run"
    rng = random.Random(0)
    killed = run_killed([COMPRESS, "pipeline", str(y), "--out", str(out)], at=rng.uniform(0.2, 0.9) * wall)
    if killed is None:  # killed: never reported done, `compress check` refuses it, a plain rerun asks for --resume
        assert json.loads((out / "pipeline.json").read_text())["status"] != "done"
        r = subprocess.run([COMPRESS, "check", str(out)], capture_output=True, text=True, env=ENV)
        assert r.returncode == 2 and "not a finished pipeline run" in r.stderr
        killed = run_killed(
            [COMPRESS, "pipeline", str(y), "--out", str(out), "--resume"], at=rng.uniform(0.1, 0.6) * wall
        )
    r = subprocess.run(
        [COMPRESS, "pipeline", str(y), "--out", str(out), "--resume"],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=1800,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert _verdicts(out) == _verdicts(tmp_path / "ref")
    assert not temp_leftovers(out)
    assert_final_names_load(out / "stages")
    r = subprocess.run([COMPRESS, "check", str(out)], capture_output=True, text=True, env=ENV)
    assert r.returncode == 0, r.stderr


TRAIN_GO = """
import sys
from _train_fixtures import tiny_args
import torch
from compress.cli.main import main
import compress.train.loop
from compress.cli.train import train_cmd
from compress.data import dataset_info
dataset_info("digits")  # what the command checks before it locks: imported and warm
print("imported", flush=True)
sys.stdin.readline()
sys.argv = ["compress", "train", *tiny_args(sys.argv[1], epochs=6)]
main()
"""


@pytest.mark.slow
def test_two_trainings_into_one_directory_one_is_refused_at_once(tmp_path):
    """Two `train` runs into one directory: the second (started while the first trains) is refused
    in under a second with one line naming the first; the first finishes undisturbed."""
    out = tmp_path / "run"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", TRAIN_GO, str(out)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        for _ in range(2)
    ]
    for p in procs:
        assert p.stdout.readline().strip() == "imported"  # type: ignore[union-attr]
    procs[0].stdin.write("go\n")  # type: ignore[union-attr]
    procs[0].stdin.flush()  # type: ignore[union-attr]
    deadline = time.time() + 120
    while not (out / ".compress.lock.holder").is_file():
        assert time.time() < deadline and procs[0].poll() is None
        time.sleep(0.02)
    t0 = time.perf_counter()
    procs[1].stdin.write("go\n")  # type: ignore[union-attr]
    procs[1].stdin.flush()  # type: ignore[union-attr]
    first = procs[1].stderr.readline()  # type: ignore[union-attr]  # the refusal, as the user sees it
    took = time.perf_counter() - t0
    err = first + procs[1].stderr.read()  # type: ignore[union-attr]
    code = procs[1].wait(timeout=60)
    assert code == 2 and first.startswith("error:") and f"is in use by pid {procs[0].pid}" in first, err[-1500:]
    one_error_line(err)
    assert took < 1.0, f"the second writer was refused after {took:.2f} s"
    assert procs[0].poll() is None  # still training: the refusal came while it ran
    assert procs[0].wait(timeout=900) == 0, procs[0].stderr.read()[-1500:]  # type: ignore[union-attr]
    assert not temp_leftovers(out) and (out / "supernet.safetensors").is_file()
