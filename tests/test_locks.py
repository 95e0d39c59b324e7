"""One writer per run directory and per latency table: a second writer (another process) is refused
at once with the holder named, a SIGKILLed holder's lock is taken over with a warning, a table
writer waits (bounded) for the other, and `compress check` refuses unfinished or mixed-up runs."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from compress.cli.main import app
from compress.core.locks import LockHeld, dir_lock_path, file_lock_path, holder
from compress.core.runs import RunDir, claim_run_dir, release_run_dir, run_dir_lock

pytestmark = pytest.mark.faults
runner = CliRunner()

HOLD = """
import sys, time
from pathlib import Path
kind, path, secs = sys.argv[1], sys.argv[2], float(sys.argv[3])
if kind == "dir":
    from compress.core.runs import claim_run_dir
    claim_run_dir(path, command="holder-cmd --out " + path)
else:
    from compress.latency.store import lock_table
    lock_table(Path(path), tables=str(Path(path).parent.parent), command="holder-profile")
print("ready", flush=True)
time.sleep(secs)
"""


def _hold(kind: str, path: Path, secs: float = 60.0) -> subprocess.Popen:
    """Another process that holds the lock of ``path`` for ``secs`` seconds (ready when this returns)."""
    p = subprocess.Popen(
        [sys.executable, "-c", HOLD, kind, str(path), str(secs)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = p.stdout.readline()  # type: ignore[union-attr]
    assert line.strip() == "ready", p.stderr.read()  # type: ignore[union-attr]
    return p


def _stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.kill()
    p.wait()


def test_second_writer_refused_at_once_naming_the_holder(tmp_path):
    d = tmp_path / "run"
    p = _hold("dir", d)
    try:
        t0 = time.perf_counter()
        with pytest.raises(LockHeld) as ei:
            claim_run_dir(d, command="second")
        took = time.perf_counter() - t0
        msg = str(ei.value)
        assert took < 1.0, f"refusal took {took:.2f} s"
        assert f"run directory {d} is in use by pid {p.pid} on {socket.gethostname()}" in msg
        assert "holder-cmd --out" in msg and "started 20" in msg and "\n" not in msg
        assert ei.value.exit_code == 2
        info = holder(dir_lock_path(d))
        assert info["pid"] == p.pid and info["command"].startswith("holder-cmd")
    finally:
        _stop(p)


@pytest.mark.parametrize(
    "argv",
    [
        ["pipeline", "{yaml}", "--out", "{d}"],
        ["pipeline", "{yaml}", "--out", "{d}", "--resume"],
        ["train", "--family", "tiny-resnet", "--data", "digits", "--epochs", "1", "--out", "{d}"],
        ["train", "--family", "tiny-resnet", "--data", "digits", "--epochs", "1", "--out", "{d}", "--resume"],
        ["search", "--device", "local-cpu", "--out", "{d}"],
        [
            "prune",
            "--method",
            "updp",
            "--model",
            "timm:resnet18",
            "--data",
            "digits",
            "--epochs",
            "1",
            "--blocks",
            "1",
            "--out",
            "{d}",
        ],
        ["export", "timm:resnet18", "--out", "{d}"],
        ["bench", "timm:resnet18", "--out", "{d}"],
    ],
    ids=["pipeline", "pipeline-resume", "train", "train-resume", "search", "prune", "export", "bench"],
)
def test_every_writing_command_is_refused_while_another_holds_the_run_dir(tmp_path, argv):
    from compress.train import net as netapi

    d = tmp_path / "run"
    yaml = tmp_path / "p.yaml"
    yaml.write_text("name: t\nsupernet: default\ndata: {name: digits}\ndevices: [{name: local-cpu}]\n")
    if "train" in argv:
        argv = [a if a != "tiny-resnet" else netapi.family_names()[0] for a in argv]
    p = _hold("dir", d)
    try:
        before = sorted(x.name for x in d.iterdir())
        r = runner.invoke(app, [a.format(yaml=yaml, d=d) for a in argv])
        assert r.exit_code == 2, r.stderr
        errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1 and "is in use by pid" in errors[0] and str(p.pid) in errors[0], r.stderr
        assert "this is a bug" not in r.stderr and "Traceback" not in r.stderr
        assert sorted(x.name for x in d.iterdir()) == before  # nothing written by the refused writer
    finally:
        _stop(p)


def test_killed_holder_is_taken_over_with_a_warning(tmp_path, capfd):
    d = tmp_path / "run"
    p = _hold("dir", d)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert holder(dir_lock_path(d))["pid"] == p.pid  # the dead holder's record stays behind
    t0 = time.perf_counter()
    assert claim_run_dir(d, command="next") is True
    assert time.perf_counter() - t0 < 1.0
    err = capfd.readouterr().err
    assert f"taking over the stale lock on run directory {d} from pid {p.pid}" in err and "which is gone" in err
    assert holder(dir_lock_path(d))["pid"] == os.getpid()
    release_run_dir(d)
    assert holder(dir_lock_path(d)) is None  # a clean release removes the holder record


def test_reentrant_in_one_process_and_released_by_the_outer_holder(tmp_path):
    d = tmp_path / "run"
    with run_dir_lock(d, command="outer"):
        run = RunDir(d, command="inner")  # the same process: no refusal, no extra hold
        run.write_json("x.json", {"a": 1})
        run.save_manifest()
        assert holder(dir_lock_path(d))["command"] == "outer"
        code = f"from compress.core.runs import claim_run_dir; claim_run_dir({str(d)!r}, command='other')"
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert r.returncode != 0 and "LockHeld" in r.stderr
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_a_refused_or_unused_claim_leaves_no_directory(tmp_path):
    d = tmp_path / "never"
    with run_dir_lock(d, command="x"):
        pass
    assert not d.exists()


def test_table_writer_waits_bounded_then_refuses(tmp_path):
    from compress.latency.store import lock_table, release_tables

    table = tmp_path / "tables" / "local-cpu" / "onnxruntime__fp32__b1__s.json"
    p = _hold("table", table)
    try:
        t0 = time.perf_counter()
        with pytest.raises(LockHeld) as ei:
            lock_table(table, tables=tmp_path / "tables", wait=0.5)
        took = time.perf_counter() - t0
        assert 0.5 <= took < 2.0
        assert f"latency table {table} is in use by pid {p.pid}" in str(ei.value)
        assert "holder-profile" in str(ei.value) and "--lock-wait" in str(ei.value)
    finally:
        _stop(p)
    # a holder that finishes within the wait: the second writer gets the table after it
    p = _hold("table", table, secs=1.0)
    try:
        t0 = time.perf_counter()
        assert lock_table(table, tables=tmp_path / "tables", wait=30) is True
        assert 0.3 < time.perf_counter() - t0 < 15
        assert holder(file_lock_path(table))["pid"] == os.getpid()
    finally:
        release_tables()
        _stop(p)


# ---- compress check on unfinished or inconsistent runs -------------------------------------------


def _run_dir(tmp_path: Path, status: str) -> Path:
    from compress.core.runs import sha256_file

    d = tmp_path / "run"
    (d / "stages" / "prune").mkdir(parents=True)
    (d / "summary.json").write_text(
        json.dumps({"schema": 1, "accuracy": {"top1": 90.0, "top1_before": 91.0}, "gates": {"min_top1": 50}})
    )
    (d / "stages" / "prune" / "stage.json").write_text(json.dumps({"key": "k1"}))
    (d / "pipeline.json").write_text(
        json.dumps(
            {
                "status": status,
                "stage": None if status == "done" else "prune",
                "stages": {"prune": {"key": "k1"}},
                "summary_sha256": sha256_file(d / "summary.json"),
            }
        )
    )
    return d


def test_check_refuses_an_unfinished_run(tmp_path):
    d = _run_dir(tmp_path, "running")
    r = runner.invoke(app, ["check", str(d)])
    assert (
        r.exit_code == 2 and "is not a finished pipeline run (status 'running', stopped in stage 'prune')" in r.stderr
    )
    assert "--resume" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_check_refuses_a_summary_that_does_not_match_its_run(tmp_path):
    d = _run_dir(tmp_path, "done")
    assert runner.invoke(app, ["check", str(d)]).exit_code == 0  # finished and consistent: gates evaluated
    (d / "stages" / "prune" / "stage.json").write_text(json.dumps({"key": "k2"}))  # another writer's stage
    r = runner.invoke(app, ["check", str(d)])
    assert r.exit_code == 2 and "stages/prune does not hold the result" in r.stderr
    (d / "stages" / "prune" / "stage.json").write_text(json.dumps({"key": "k1"}))
    (d / "summary.json").write_text(json.dumps({"schema": 1, "accuracy": {"top1": 99.0}, "gates": {"min_top1": 50}}))
    r = runner.invoke(app, ["check", str(d)])
    assert r.exit_code == 2 and "is not the summary its run wrote" in r.stderr


def test_check_refuses_an_unfinished_baseline(tmp_path):
    good = _run_dir(tmp_path / "a", "done")
    bad = _run_dir(tmp_path / "b", "failed")
    r = runner.invoke(app, ["check", str(good), "--baseline", str(bad)])
    assert r.exit_code == 2 and "status 'failed'" in r.stderr


PROFILE = """
import json, sys
sys.path.insert(0, sys.argv[2])
import torch
torch.set_num_threads(1)
from test_latency_profile import tiny_space
from compress.latency.profile import profile_table
print("imported", flush=True)
sys.stdin.readline()  # go
r = profile_table(device="local-cpu", runtime="onnxruntime", supernet=tiny_space(), tables=sys.argv[1], threads=1,
                  iterations=int(sys.argv[3]), warmup=1, calibrate=0, lock_wait=120)
print(json.dumps({"measured_now": r.measured_now, "already": r.already_measured, "signatures": r.signatures}))
"""


def test_concurrent_profiles_of_one_table_wait_and_keep_each_others_entries(tmp_path):
    """Two `profile` runs for the same device table at once: the second waits for the first, then
    measures only what is missing (nothing): every block measured once, no entry lost."""
    from compress.latency.table import LatencyTable

    tables = tmp_path / "tables"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def start(iterations: int) -> subprocess.Popen:
        p = subprocess.Popen(
            [sys.executable, "-c", PROFILE, str(tables), str(Path(__file__).parent), str(iterations)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert p.stdout.readline().strip() == "imported", p.communicate()[1][-800:]  # type: ignore[union-attr]
        return p

    def go(p: subprocess.Popen) -> None:
        p.stdin.write("go\n")  # type: ignore[union-attr]
        p.stdin.flush()  # type: ignore[union-attr]

    procs = [start(20), start(4)]  # both imported: the second starts while the first measures
    go(procs[0])
    deadline = time.time() + 120
    while not list(tables.glob("local-cpu/.*.lock.holder")):  # the first run holds the table's lock
        assert time.time() < deadline and procs[0].poll() is None, procs[0].communicate()[1][-800:]
        time.sleep(0.02)
    go(procs[1])
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-800:] for o in outs]
    res = [json.loads(o[0].strip().splitlines()[-1]) for o in outs]
    n = res[0]["signatures"]
    assert [r["measured_now"] for r in res] == [n, 0]  # the first measured everything, the second reused it
    assert f"waiting up to 120 s for pid {procs[0].pid}" in outs[1][1]
    files = list((tables / "local-cpu").iterdir())
    table = next(f for f in files if f.suffix == ".json" and not f.name.startswith("."))
    assert len(LatencyTable.load(table).measured()) == n
    assert not [f for f in files if f.name.endswith(".tmp")]


def test_a_launcher_shares_its_lock_with_its_workers_only(tmp_path):
    """`compress train --nproc K`: the launcher holds the run directory for its workers; a worker
    writes under it, an unrelated process is still refused."""
    d = tmp_path / "run"
    claim = f"from compress.core.runs import claim_run_dir; print(claim_run_dir({str(d)!r}, command='worker'))"
    launcher = f"""
import subprocess, sys
from compress.core.runs import claim_run_dir
claim_run_dir({str(d)!r}, command="launcher", for_children=True)
r = subprocess.run([sys.executable, "-c", {claim!r}], capture_output=True, text=True)
print(r.returncode, r.stdout.strip(), flush=True)
sys.stdin.readline()
"""
    p = subprocess.Popen(
        [sys.executable, "-c", launcher],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert p.stdout.readline().split() == ["0", "False"], p.stderr.read()  # type: ignore[union-attr]
        r = subprocess.run([sys.executable, "-c", claim], capture_output=True, text=True)
        assert r.returncode != 0 and "is in use by pid" in r.stderr and "launcher" in r.stderr
    finally:
        p.communicate("x\n")
